"""
The inference cost report (shared_kd.benchmark.inference, tools/cost_report.py).

Equality with detectron2's tools/analyze_model.py (read upstream, facebookresearch/detectron2
main): its `--tasks parameter` prints `parameter_count_table(model)`, whose total is
`fvcore.nn.parameter_count(model)[""]`; its `--tasks flop` builds
`build_detection_test_loader(cfg, cfg.DATASETS.TEST[0])`, runs
`FlopCountAnalysis(model, data).total()` on each of the first `--num-inputs` batches and prints
their mean. The test below does exactly that with detectron2's own functions and compares the
numbers with the report's for the same config and images.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.data import build_detection_test_loader
from detectron2.modeling import build_model
from detectron2.utils.analysis import FlopCountAnalysis, parameter_count

from shared_kd.benchmark import measure_detector
from shared_kd.config import load_config

from .conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # runs the cost tool and exports in processes

CONFIG = os.path.join(REPO_ROOT, "configs", "shapes", "faster_rcnn_R18_FPN_tiny.yaml")
TEACHER = os.path.join(REPO_ROOT, "configs", "shapes", "faster_rcnn_R34_FPN_tiny_teacher.py")


def test_params_and_flops_are_analyze_models():
    torch.manual_seed(0)
    report = measure_detector(CONFIG, None, num_images=2, latency_runs=2, warmup=1)
    # analyze_model.py's way, on the same config and images
    cfg = load_config(CONFIG)
    model = build_model(cfg).eval()
    loader = build_detection_test_loader(cfg, cfg.DATASETS.TEST[0])
    totals = []
    for _, data in zip(range(2), loader):
        totals.append(FlopCountAnalysis(model, data).total())
    assert report["params"] == parameter_count(model)[""]
    assert report["gflops"]["mean"] * 1e9 == np.mean(totals)
    assert report["gflops"]["images"] == 2 and report["latency_ms"]["runs"] == 2


def test_the_tool_measures_each_model_in_a_process_of_its_own(tmp_path):
    res = subprocess.run(
        [sys.executable, "tools/cost_report.py", "--model", "teacher", TEACHER, "-"]
        + ["--model", "student", CONFIG, "-", "--num-images", "1", "--latency-runs", "2"]
        + ["--output-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads((tmp_path / "cost.json").read_text())
    assert [r["model"] for r in rows] == ["teacher", "student"]
    assert rows[1]["ratios"]["params"] < 1 and rows[1]["ratios"]["gflops"] < 1  # smaller
    assert rows[0]["config"] == TEACHER  # a .py teacher and a yaml student
    assert "params / teacher" in (tmp_path / "cost.md").read_text()
