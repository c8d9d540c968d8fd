"""shared_kd.benchmark and tools/benchmark.py: structure of the result, on tiny random models."""

import importlib.util
import json
import os

import pytest
import torch

from shared_kd.benchmark import (
    LOSS_SHARE_TARGET,
    MEASUREMENTS,
    OVERHEAD_TARGET,
    format_report,
    judge_targets,
    run_benchmark,
)
from shared_kd.utils.testing import get_tiny_cfg, random_batch

from .conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # times training steps, some in fresh processes


def _distill_cfg(tmp_path, family="faster_rcnn", losses=("SharedKDLoss",), assistants=0):
    """A tiny distillation config whose guides exist only as config files (no weights)."""
    teacher = tmp_path / "teacher.yaml"
    teacher.write_text(get_tiny_cfg(family, fpn_channels=64).dump())
    cfg = get_tiny_cfg(family, fpn_channels=32)
    cfg.MODEL.DISTILL.STUDENT_META_ARCHITECTURE = cfg.MODEL.META_ARCHITECTURE
    cfg.MODEL.META_ARCHITECTURE = "DistillationDetector"
    cfg.MODEL.DISTILL.LOSSES = list(losses)
    cfg.MODEL.DISTILL.TEACHER.CONFIG_FILE = str(teacher)
    cfg.MODEL.DISTILL.TEACHER.WEIGHTS = str(tmp_path / "not_trained.pth")
    if assistants:
        ta = tmp_path / "ta.yaml"
        ta.write_text(get_tiny_cfg(family, fpn_channels=64).dump())
        cfg.MODEL.DISTILL.ASSISTANTS.CONFIG_FILES = [str(ta)] * assistants
        cfg.MODEL.DISTILL.ASSISTANTS.WEIGHTS = [str(tmp_path / "ta.pth")] * assistants
    cfg.SOLVER.IMS_PER_BATCH = 2
    return cfg


def _check_result(result, guides_read=1):
    assert json.loads(json.dumps(result)) == result  # JSON as it is
    assert set(result["timings"]) == set(MEASUREMENTS)
    for name, t in result["timings"].items():
        assert t["count"] == result["iters"] == len(t["samples_s"]), name
        assert 0 < t["min_s"] <= t["median_s"] <= t["max_s"], name
    assert result["guides_read"] == guides_read
    for target in result["targets"].values():
        assert target["value"] > 0 and target["paired_median"] > 0
        assert isinstance(target["passed"], bool)
    assert all(torch.isfinite(torch.tensor(v)) for v in result["final_losses"].values())
    report = format_report(result)
    assert all(label in report for label in MEASUREMENTS.values())
    assert "PASS" in report or "FAIL" in report


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


def test_shared_kd_random_teacher(tmp_path):
    cfg = _distill_cfg(tmp_path)
    result = run_benchmark(
        cfg, iters=2, warmup=1, random_teacher=True, memory=False, batch=random_batch(2)
    )
    _check_result(result)
    assert result["memory"] == {"student_step": None, "distill_step": None}
    assert result["device"] == "cpu" and result["random_teacher"]


def test_mkd_with_logits_assistant_and_autoencoder(tmp_path):
    # Soft targets read the R-CNN tap (the guides score the student's proposals), a TA is a
    # second guide, inherit/explore needs an auto-encoder of the (random) teacher.
    losses = ("SoftTargetKDLoss", "AttentionTransferLoss", "InheritExploreLoss")
    cfg = _distill_cfg(tmp_path, losses=losses, assistants=1)
    result = run_benchmark(
        cfg, iters=1, warmup=1, random_teacher=True, memory=False, batch=random_batch(2)
    )
    _check_result(result, guides_read=2)


def test_no_guide_read(tmp_path):
    cfg = _distill_cfg(tmp_path)
    cfg.MODEL.DISTILL.SHARED_KD.IDENTICAL = False  # the cross-layer term reads no guide
    result = run_benchmark(
        cfg, iters=1, warmup=0, random_teacher=True, memory=False, batch=random_batch(2)
    )
    assert result["guides_read"] == 0 and result["timings"]["teacher_forward"]["count"] == 0
    assert result["timings"]["distill_losses"]["median_s"] > 0
    json.dumps(result)
    format_report(result)


def test_untrained_teacher_is_an_error_without_random_teacher(tmp_path):
    with pytest.raises(FileNotFoundError, match="MODEL.DISTILL.TEACHER.WEIGHTS"):
        run_benchmark(_distill_cfg(tmp_path), iters=1, memory=False, batch=random_batch(2))


def test_not_a_distillation_config():
    with pytest.raises(ValueError, match="needs a distillation config"):
        run_benchmark(get_tiny_cfg(), iters=1, memory=False, batch=random_batch(2))


def test_peak_memory_in_fresh_processes(tmp_path):
    cfg = _distill_cfg(tmp_path)
    result = run_benchmark(
        cfg, iters=1, warmup=0, random_teacher=True, memory=True, batch=random_batch(2)
    )
    _check_result(result)
    for mem in result["memory"].values():
        assert mem["kind"] == "cpu_peak_rss"
        assert mem["peak_bytes"] > mem["baseline_bytes"] > 0
    assert "RSS (+" in format_report(result)


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        "benchmark_tool", os.path.join(REPO_ROOT, "tools", "benchmark.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_writes_json(tmp_path, capsys, monkeypatch):
    cfg = _distill_cfg(tmp_path)
    cfg.DATASETS.TRAIN = ("shapes_train",)
    cfg.INPUT.MIN_SIZE_TRAIN = (64,)
    cfg.INPUT.MAX_SIZE_TRAIN = 64
    config = tmp_path / "distill.yaml"
    config.write_text(cfg.dump())
    out = tmp_path / "bench" / "result.json"
    monkeypatch.chdir(REPO_ROOT)  # the shapes dataset lives under ./datasets
    _load_tool().main(
        ["--config-file", str(config), "--iters", "1", "--warmup", "0", "--random-teacher"]
        + ["--no-memory", "--output", str(out), "SOLVER.BASE_LR", "0.001"]
    )
    result = json.loads(out.read_text())
    assert result["opts"] == ["SOLVER.BASE_LR", "0.001"] and result["config_file"] == str(config)
    assert result["ims_per_batch"] == 2 and result["timings"]["distill_step"]["median_s"] > 0
    assert "| target |" in capsys.readouterr().out
