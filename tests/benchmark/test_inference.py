"""shared_kd.benchmark.inference: a trained detector's cost (parameters, GFLOPs, latency, peak
memory) and the table that compares models.

The equality of parameters and GFLOPs with detectron2's tools/analyze_model.py and the tool
itself are in tests/test_cost.py (slow).
"""

import pytest
import torch.nn as nn

from shared_kd.benchmark.inference import compare_costs, costs_markdown, inference_cost


def test_ratios_and_table():
    a = {"params": 10, "gflops": {"mean": 2.0, "std": 0.0, "images": 1}, "peak_memory_bytes": 4}
    a["latency_ms"] = {"median": 8.0, "p25": 7.0, "p75": 9.0, "runs": 3}
    b = {**a, "params": 5, "gflops": {"mean": 0.5, "std": 0.0, "images": 1}}
    b["latency_ms"] = {"median": 2.0, "p25": 1.0, "p75": 3.0, "runs": 3}
    rows = compare_costs({"teacher": a, "student": b}, "teacher")
    assert rows[1]["ratios"] == {"params": 0.5, "gflops": 0.25, "latency": 0.25, "peak_memory": 1.0}
    table = costs_markdown(rows)
    assert "| student | 0.00 | 0.50 | 2.0 [1.0, 3.0] | 0 | 0.50x | 0.25x | 0.25x |" in table


def _cost(params, gflops, median, peak, **extra):
    latency = {"median": median, "p25": median, "p75": median, "runs": 2}
    gflops = {"mean": gflops, "std": 0.0, "images": 2}
    return {
        "params": params,
        "gflops": gflops,
        "latency_ms": latency,
        "peak_memory_bytes": peak,
        **extra,
    }


def test_rows_without_a_reference_have_no_ratios():
    costs = {"a": _cost(4, 1.0, 2.0, None), "b": _cost(2, 0.5, 1.0, 8)}
    rows = compare_costs(costs)
    assert [r["model"] for r in rows] == ["a", "b"]
    assert all("ratios" not in r and "reference" not in r for r in rows)
    assert rows[1]["params"] == 2
    with pytest.raises(ValueError, match=r"No model named 'c' to compare with: \['a', 'b'\]"):
        compare_costs(costs, "c")


def test_a_ratio_of_something_unmeasured_is_none():
    rows = compare_costs({"t": _cost(4, 1.0, 2.0, None), "s": _cost(2, 0.5, None, 8)}, "t")
    assert rows[0]["ratios"] == {"params": 1.0, "gflops": 1.0, "latency": 1.0, "peak_memory": None}
    assert rows[1]["ratios"] == {"params": 0.5, "gflops": 0.5, "latency": None, "peak_memory": None}
    assert rows[1]["reference"] == "t"


def test_the_table_without_a_reference_names_the_machine_and_the_images():
    cost = _cost(
        2_500_000,
        1.25,
        12.34,
        3 * 2**20,
        device="cpu",
        threads=2,
        memory_kind="cpu_peak_rss",
        synthetic=[800, 1333],
    )
    lines = costs_markdown(compare_costs({"student": cost})).splitlines()
    assert lines[0] == (
        "| model | params (M) | GFLOPs | latency (ms): median [p25, p75] | peak memory (MB) |"
    )
    assert lines[2] == "| student | 2.50 | 1.25 | 12.3 [12.3, 12.3] | 3 |"
    assert lines[4] == (
        "Batch 1 on cpu, 2 threads; GFLOPs as detectron2's tools/analyze_model.py counts them, "
        "mean over 2 random 800x1333 images; latency over 2 warm runs; peak memory: cpu_peak_rss "
        "of the first forward."
    )


def test_inference_cost_needs_an_image():
    with pytest.raises(ValueError, match="needs at least one image"):
        inference_cost(nn.Linear(1, 1), [])
