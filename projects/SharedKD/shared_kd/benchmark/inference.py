"""
What a trained detector costs at inference: parameters, GFLOPs, latency and peak memory, so that
a distilled student is read beside its teacher ("38 AP at 0.4x the teacher's FLOPs").

Parameters and FLOPs are counted as detectron2's ``tools/analyze_model.py`` counts them
(``detectron2.utils.analysis``: fvcore's ``parameter_count`` and ``FlopCountAnalysis`` on the
model's own eval forward, averaged over real test images read by the config's test mapper).
Latency is the wall time of that forward at batch 1 after warm-up runs, median and spread over
the timed runs, with the thread count and device named (CUDA synchronised around each run).
Peak memory is the rise of the device's high-water mark over the model's first forward (before
any other, so that nothing is served from memory its allocator already holds): CUDA's
``max_memory_allocated``, the CPU's peak RSS (``VmHWM``) above the RSS before it. Measure each
model in a process of its own for a clean CPU figure (``tools/cost_report.py`` does).
"""

import concurrent.futures
import copy
import json
import multiprocessing
import os
import statistics
import time
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from detectron2.data import DatasetCatalog
from detectron2.utils.analysis import FlopCountAnalysis, parameter_count

from ..analysis.common import load_detector
from ..detector_config import DetectorConfig
from ..utils.io import atomic_write
from .memory import proc_status_bytes, reset_peak_rss

__all__ = [
    "compare_costs",
    "costs_markdown",
    "inference_cost",
    "load_test_images",
    "measure_detector",
    "measure_in_fresh_process",
    "write_cost_report",
]


def load_test_images(config: DetectorConfig, num_images: int, dataset: Optional[str] = None):
    """
    The first ``num_images`` of the config's first test dataset (or ``dataset``), read and
    resized by its test-time mapper: model inputs, as evaluation feeds them.
    """
    name = dataset or (config.test_datasets or [None])[0]
    if name is None:
        raise ValueError(f"{config.source} names no test dataset: give one to measure on")
    mapper = config.test_mapper()
    return [mapper(copy.deepcopy(d)) for d in DatasetCatalog.get(name)[:num_images]]


def _device(model: nn.Module) -> torch.device:
    device = getattr(model, "device", None)
    return torch.device(device) if device is not None else next(model.parameters()).device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def inference_cost(
    model: nn.Module,
    images: Sequence[dict],
    *,
    latency_runs: int = 20,
    warmup: int = 3,
) -> Dict[str, object]:
    """
    Args:
        model: a detectron2 detector (a distillation model measures as its student: that is
            its eval forward); put in eval mode here.
        images: model inputs (``load_test_images``), at least one; FLOPs are averaged over them
            and the timed runs cycle through them.
        latency_runs, warmup: timed and untimed forwards at batch 1.

    Returns:
        dict: ``params``; ``gflops`` (``mean``, ``std`` over the images, ``images``);
        ``latency_ms`` (``median``, ``p25``, ``p75``, ``min``, ``max``, ``runs``); ``device``,
        ``threads``; ``peak_memory_bytes`` and ``memory_kind``
        ("cuda_max_memory_allocated" or "cpu_peak_rss"; None where it cannot be read).
    """
    if not images:
        raise ValueError("inference_cost needs at least one image")
    model = getattr(model, "student", model)  # a distillation model costs its student
    model.eval()
    device = _device(model)
    params = parameter_count(model)[""]
    # Memory first, over one forward of a model that has run none yet: later runs reuse what
    # the allocator already holds, and the process's high-water mark would not rise.
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        before = reset_peak_rss()
    model([images[0]])
    _sync(device)
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device) - before, "cuda_max_memory_allocated"
    else:
        high = proc_status_bytes("VmHWM")
        peak = None if before is None or high is None else high[0] - before
        kind = "cpu_peak_rss"
    flops = []
    for i, image in enumerate(images):
        analysis = FlopCountAnalysis(model, [image])
        if i > 0:  # as analyze_model.py: the first image's warnings are enough
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops.append(analysis.total())
    for i in range(warmup):
        model([images[i % len(images)]])
    _sync(device)
    times = []
    for i in range(latency_runs):
        image = images[i % len(images)]
        start = time.perf_counter()
        model([image])
        _sync(device)
        times.append((time.perf_counter() - start) * 1000.0)
    q = np.percentile(times, [25, 75]) if times else [None, None]
    return {
        "params": int(params),
        "gflops": {
            "mean": float(np.mean(flops)) / 1e9,
            "std": float(np.std(flops)) / 1e9,
            "images": len(flops),
        },
        "latency_ms": {
            "median": statistics.median(times) if times else None,
            "p25": float(q[0]) if times else None,
            "p75": float(q[1]) if times else None,
            "min": min(times) if times else None,
            "max": max(times) if times else None,
            "runs": len(times),
        },
        "device": str(device)
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "threads": torch.get_num_threads(),
        "peak_memory_bytes": peak,
        "memory_kind": kind,
    }


def measure_detector(
    config_file: str,
    weights: Optional[str],
    opts: Sequence[str] = (),
    device: Optional[str] = None,
    num_images: int = 5,
    latency_runs: int = 20,
    warmup: int = 3,
    dataset: Optional[str] = None,
    threads: Optional[int] = None,
    synthetic: Optional[Sequence[int]] = None,
) -> Dict[str, object]:
    """
    :func:`inference_cost` of a detector given as config (yaml or ``.py``; a distillation
    config measures its student) and checkpoint (None: random weights), on the first
    ``num_images`` of its test set, or on ``num_images`` random images of ``synthetic``
    (H, W) pixels where the test set is not at hand (e.g. COCO's 800 x 1333 on a laptop).
    """
    if threads:
        torch.set_num_threads(threads)
    model, config = load_detector(config_file, weights, opts, device, weights_flag="weights")
    if synthetic is not None:
        g = torch.Generator().manual_seed(0)
        shape = (3, int(synthetic[0]), int(synthetic[1]))
        images = [
            {"image": torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)}
            for _ in range(num_images)
        ]
    else:
        images = load_test_images(config, num_images, dataset)
    cost = inference_cost(model, images, latency_runs=latency_runs, warmup=warmup)
    cost.update(config=config_file, weights=weights, synthetic=list(synthetic or []) or None)
    return cost


def measure_in_fresh_process(**kwargs) -> Dict[str, object]:
    """:func:`measure_detector` in a spawned process of its own (this one's thread count), so
    that the peak memory counts that model alone."""
    kwargs.setdefault("threads", torch.get_num_threads())
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(measure_detector, **kwargs).result()


def write_cost_report(
    model: nn.Module,
    config: DetectorConfig,
    output_dir: str,
    num_images: int = 3,
    latency_runs: int = 10,
) -> Dict[str, object]:
    """
    :func:`inference_cost` of an evaluated model, written beside its metrics as
    ``output_dir/cost.json`` and ``cost.md`` (what ``train_net.py --eval-only`` does).
    """
    cost = inference_cost(model, load_test_images(config, num_images), latency_runs=latency_runs)
    cost["config"] = config.source
    rows = compare_costs({"model": cost})
    os.makedirs(output_dir, exist_ok=True)
    atomic_write(
        os.path.join(output_dir, "cost.json"), lambda p: _write(p, json.dumps(cost, indent=2))
    )
    atomic_write(
        os.path.join(output_dir, "cost.md"), lambda p: _write(p, costs_markdown(rows) + "\n")
    )
    return cost


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def compare_costs(costs: Mapping[str, dict], reference: Optional[str] = None) -> List[dict]:
    """
    Rows of ``{"model": name, **cost}``, each with ``ratios`` to the ``reference`` model (the
    teacher): params, GFLOPs, median latency and peak memory as fractions of its own.
    """
    rows = [{"model": name, **cost} for name, cost in costs.items()]
    if reference is None:
        return rows
    if reference not in costs:
        raise ValueError(f"No model named {reference!r} to compare with: {list(costs)}")
    ref = costs[reference]

    def ratio(a, b):
        return None if a is None or not b else a / b

    for row in rows:
        row["ratios"] = {
            "params": ratio(row["params"], ref["params"]),
            "gflops": ratio(row["gflops"]["mean"], ref["gflops"]["mean"]),
            "latency": ratio(row["latency_ms"]["median"], ref["latency_ms"]["median"]),
            "peak_memory": ratio(row["peak_memory_bytes"], ref["peak_memory_bytes"]),
        }
        row["reference"] = reference
    return rows


def _fmt(value, spec="{:.1f}"):
    return "-" if value is None else spec.format(value)


def costs_markdown(rows: Sequence[dict]) -> str:
    """The rows of :func:`compare_costs` as a markdown table, with the machine they ran on."""
    reference = next((r.get("reference") for r in rows if r.get("reference")), None)
    head = "| model | params (M) | GFLOPs | latency (ms): median [p25, p75] | peak memory (MB) |"
    rule = "|---|---:|---:|---:|---:|"
    if reference:
        head += f" params / {reference} | GFLOPs / {reference} | latency / {reference} |"
        rule += "---:|---:|---:|"
    lines = [head, rule]
    for r in rows:
        lat = r["latency_ms"]
        mem = r["peak_memory_bytes"]
        line = (
            f"| {r['model']} | {r['params'] / 1e6:.2f} | {r['gflops']['mean']:.2f} | "
            f"{_fmt(lat['median'])} [{_fmt(lat['p25'])}, {_fmt(lat['p75'])}] | "
            f"{_fmt(None if mem is None else mem / 2**20, '{:.0f}')} |"
        )
        if reference:
            q = {k: _fmt(v, "{:.2f}x") for k, v in r["ratios"].items()}
            line += f" {q['params']} | {q['gflops']} | {q['latency']} |"
        lines.append(line)
    first = rows[0] if rows else {}
    size = first.get("synthetic")
    images = f"random {size[0]}x{size[1]} images" if size else "test images"
    lines += [
        "",
        f"Batch 1 on {first.get('device')}, {first.get('threads')} threads; GFLOPs as detectron2's "
        f"tools/analyze_model.py counts them, mean over {first.get('gflops', {}).get('images')} "
        f"{images}; latency over {first.get('latency_ms', {}).get('runs')} warm runs; peak "
        f"memory: {first.get('memory_kind')} of the first forward.",
    ]
    return "\n".join(lines)
