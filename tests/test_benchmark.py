"""shared_kd.benchmark and tools/benchmark.py: structure of the result, on tiny random models."""

import importlib.util
import json
import os

import pytest
import torch

from shared_kd.benchmark import (
    MEASUREMENTS,
    format_report,
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
