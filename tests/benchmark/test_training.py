"""shared_kd.benchmark.training: the helpers of the training-cost benchmark, by hand.

Runs of the benchmark itself (random tiny models, peak memory in fresh processes, the tool) are
in tests/test_benchmark.py (slow).
"""

import json

import pytest
import torch
from detectron2.modeling import build_model
from torch.nn import functional as F

from shared_kd.benchmark.training import (
    LOSS_SHARE_TARGET,
    MEASUREMENTS,
    OVERHEAD_TARGET,
    _Measurement,
    _summary,
    _time_interleaved,
    calibrate_frozen_bn,
    format_report,
    judge_targets,
    synthetic_batch,
)
from shared_kd.utils.testing import get_tiny_cfg, random_batch


def test_targets_by_hand():
    # Three rounds, in ms (only ratios come out): medians a 2, b 1, c 3, d 0.75.
    samples = {
        "student_step": [1.0, 2.0, 3.0],
        "teacher_forward": [1.0, 1.0, 1.0],
        "distill_step": [3.0, 3.0, 6.0],
        "distill_losses": [0.375, 0.75, 0.75],
    }
    targets = judge_targets(samples)
    overhead, share = targets["overhead"], targets["loss_share"]
    assert overhead["value"] == 1.0  # 3 / (2 + 1)
    assert overhead["paired_median"] == 1.5  # median(3 / 2, 3 / 3, 6 / 4)
    assert overhead["limit"] == OVERHEAD_TARGET == 1.02 and overhead["passed"] is True
    assert share["value"] == 0.25  # 0.75 / 3
    assert share["paired_median"] == 0.125  # median(0.375 / 3, 0.75 / 3, 0.75 / 6)
    assert share["limit"] == LOSS_SHARE_TARGET == 0.02 and share["passed"] is False
    assert overhead["definition"] == "(c) <= 1.02 x ((a) + (b))"
    assert share["definition"] == "(d) <= 2% of (c)"
    assert json.loads(json.dumps(targets)) == targets


def test_targets_by_hand_edges():
    # (b) not measured (no loss reads a guide): 0 in every round.
    samples = {
        "student_step": [4.0, 2.0],
        "teacher_forward": [],
        "distill_step": [4.2, 2.5],
        "distill_losses": [0.0625, 0.03125],
    }
    targets = judge_targets(samples)
    # medians: a 3, c 3.35 (even count: the mean of the middle two), d 0.046875
    assert targets["overhead"]["value"] == 3.35 / 3.0
    assert targets["overhead"]["paired_median"] == (4.2 / 4.0 + 2.5 / 2.0) / 2
    assert targets["overhead"]["passed"] is False  # 1.1167 > 1.02
    assert targets["loss_share"]["value"] == 0.046875 / 3.35
    assert targets["loss_share"]["paired_median"] == (0.0625 / 4.2 + 0.03125 / 2.5) / 2
    assert targets["loss_share"]["passed"] is True  # 0.014 <= 0.02
    # exactly at the limits passes
    at_limit = {
        "student_step": [1.0],
        "teacher_forward": [1.0],
        "distill_step": [2.0 * OVERHEAD_TARGET],
        "distill_losses": [2.0 * OVERHEAD_TARGET * LOSS_SHARE_TARGET],
    }
    targets = judge_targets(at_limit)
    assert targets["overhead"]["value"] == OVERHEAD_TARGET and targets["overhead"]["passed"]
    assert targets["loss_share"]["value"] == pytest.approx(LOSS_SHARE_TARGET)
    # unequal rounds, no rounds, a missing measurement
    for bad in (
        dict(samples, distill_step=[1.0]),
        {name: [] for name in MEASUREMENTS},
        {k: v for k, v in samples.items() if k != "distill_losses"},
    ):
        with pytest.raises(ValueError, match="Need samples of each of"):
            judge_targets(bad)


def test_summary_by_hand():
    s = _summary([0.3, 0.1, 0.2, 0.6])
    assert s["median_s"] == pytest.approx(0.25) and s["mean_s"] == pytest.approx(0.3)
    assert (s["min_s"], s["max_s"], s["count"]) == (0.1, 0.6, 4)
    assert s["samples_s"] == [0.3, 0.1, 0.2, 0.6]
    assert _summary([]) == {
        "median_s": 0.0,
        "mean_s": 0.0,
        "min_s": 0.0,
        "max_s": 0.0,
        "count": 0,
        "samples_s": [],
    }


def test_measurements_run_interleaved_after_warmup():
    calls = []
    measurements = [
        _Measurement("a", lambda: calls.append("a"), prepare=lambda: calls.append("prep")),
        _Measurement("b", lambda: calls.append("b")),
    ]
    samples = _time_interleaved(measurements, iters=2, warmup=1, device=torch.device("cpu"))
    assert calls == ["prep", "a", "b"] * 3  # one of each per round; prepare before its run
    assert {name: len(v) for name, v in samples.items()} == {"a": 2, "b": 2}  # warm-up untimed
    assert all(t >= 0 for v in samples.values() for t in v)


def test_synthetic_batch():
    cfg = get_tiny_cfg("mask_rcnn", num_classes=3)
    batch = synthetic_batch(cfg, 48, 80, num_images=3, seed=1)
    assert len(batch) == 3
    for x in batch:
        assert x["image"].shape == (3, 48, 80) and (x["height"], x["width"]) == (48, 80)
        assert 0 <= float(x["image"].min()) and float(x["image"].max()) <= 255
        inst = x["instances"]
        boxes = inst.gt_boxes.tensor
        assert inst.image_size == (48, 80) and 2 <= len(inst) <= 12
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 80).all() and (boxes[:, 3] <= 48).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        assert set(inst.gt_classes.tolist()) <= {0, 1, 2}
        assert len(inst.gt_masks) == len(inst)  # MASK_ON: a box-shaped polygon each
    again = synthetic_batch(cfg, 48, 80, num_images=3, seed=1)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(batch, again))
    assert not torch.equal(synthetic_batch(cfg, 48, 80, 1, seed=2)[0]["image"], batch[0]["image"])
    assert not synthetic_batch(get_tiny_cfg("retinanet"), 32, 32, 1)[0]["instances"].has("gt_masks")
    cfg.MODEL.META_ARCHITECTURE = "SemanticSegmentor"
    with pytest.raises(ValueError, match="'SemanticSegmentor' is of none"):
        synthetic_batch(cfg, 32, 32, 1)


def test_calibrate_frozen_bn_sets_the_batch_statistics():
    cfg = get_tiny_cfg("faster_rcnn")
    assert calibrate_frozen_bn(build_model(cfg), random_batch(1)) == 0  # GroupNorm: no-op
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = random_batch(2, size=64)
    assert calibrate_frozen_bn(model, batch) == 20  # stem 1 + 8 blocks x 2 + 3 shortcuts (R18)
    assert model.backbone.training  # the mode is restored
    conv1 = model.backbone.bottom_up.stem.conv1
    with torch.no_grad():
        x = F.conv2d(
            model.preprocess_image(batch).tensor, conv1.weight, None, conv1.stride, conv1.padding
        )
    torch.testing.assert_close(conv1.norm.running_mean, x.mean((0, 2, 3)))
    torch.testing.assert_close(conv1.norm.running_var, x.var((0, 2, 3)))


def _timing(median_ms, min_ms, max_ms, count=3):
    return {
        "median_s": median_ms / 1e3,
        "min_s": min_ms / 1e3,
        "max_s": max_ms / 1e3,
        "count": count,
    }


def test_format_report_by_hand():
    samples = {
        "student_step": [1.0, 2.0, 3.0],
        "teacher_forward": [1.0, 1.0, 1.0],
        "distill_step": [3.0, 3.0, 6.0],
        "distill_losses": [0.375, 0.75, 0.75],
    }
    mib = 2**20
    result = {
        "config_file": "c.yaml",
        "device": "cpu",
        "device_name": "x86_64",
        "torch_num_threads": 2,
        "torch": "2.x",
        "detectron2": "0.6",
        "ims_per_batch": 2,
        "warmup": 1,
        "iters": 3,
        "random_teacher": True,
        "timings": {
            "student_step": _timing(2.0, 1.0, 3.0),
            "teacher_forward": _timing(1.0, 1.0, 1.0),
            "distill_step": _timing(3.0, 3.0, 6.0),
            "distill_losses": _timing(0.75, 0.375, 0.75),
        },
        "memory": {
            "student_step": {
                "kind": "cpu_peak_rss",
                "peak_bytes": 100 * mib,
                "baseline_bytes": 40 * mib,
            },
            "distill_step": {"kind": "cuda_max_memory_allocated", "peak_bytes": 300 * mib},
        },
        "targets": judge_targets(samples),
    }
    lines = format_report(result).splitlines()
    assert lines[0] == (
        "Config: `c.yaml`; device cpu (x86_64, 2 threads); torch 2.x, detectron2 0.6; batch of 2; "
        "1 warm-up + 3 timed rounds; random guides; guides in float32"
    )
    assert (
        "| (a) student alone: train step | 2.0 | 1.0 | 3.0 | 3 | 100 MiB RSS (+60 MiB) |" in lines
    )
    assert "| (b) guides' forward (no_grad) | 1.0 | 1.0 | 1.0 | 3 | - |" in lines
    assert "| (c) distillation: train step | 3.0 | 3.0 | 6.0 | 3 | 300 MiB |" in lines
    assert "| (c) <= 1.02 x ((a) + (b)) | 1.000 x | 1.02 x | PASS | 1.500 x |" in lines
    assert "| (d) <= 2% of (c) | 25.0% | 2% | FAIL | 12.5% |" in lines
    assert not any("fp32" in line for line in lines)  # no fp32 reference row unless timed
