"""A distillation run killed between checkpoints, then resumed, ends as an uninterrupted one."""

import os
import subprocess
import sys

import pytest
import torch

from ..conftest import REPO_ROOT, run_script

pytestmark = pytest.mark.slow  # runs train_net.py

CONFIG = os.path.join(
    REPO_ROOT, "configs", "shapes", "sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.yaml"
)


def _opts(teacher, out):
    # In-process data loading (NUM_WORKERS 0): augmentation then draws from the generators
    # that ReseedHook re-seeds, which makes the resumed run bit-identical (see docs/TRAINING.md).
    return [
        "MODEL.DISTILL.TEACHER.WEIGHTS",
        teacher,
        "SOLVER.MAX_ITER",
        "6",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "SOLVER.IMS_PER_BATCH",
        "2",
        "SOLVER.WARMUP_ITERS",
        "2",
        "DATALOADER.NUM_WORKERS",
        "0",
        "TEST.EVAL_PERIOD",
        "0",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        out,
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, random_teacher):
    root = tmp_path_factory.mktemp("resume")
    whole, killed = str(root / "whole"), str(root / "killed")
    run_script("train_net.py", "--config-file", CONFIG, *_opts(random_teacher, whole))
    # Checkpoints follow iterations 1, 3, 5; the kill comes after iteration 4 was trained.
    res = subprocess.run(
        [sys.executable, "tests/engine/train_and_kill.py", "--kill-at", "5", "--config-file"]
        + [CONFIG, *_opts(random_teacher, killed)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == -9, res.stderr[-3000:]
    with open(os.path.join(killed, "last_checkpoint")) as f:
        killed_at = f.read()
    resumed_log = run_script(
        "train_net.py", "--config-file", CONFIG, "--resume", *_opts(random_teacher, killed)
    )
    return whole, killed, killed_at, resumed_log


def _load(folder, name="model_final.pth"):
    return torch.load(os.path.join(folder, name), weights_only=True)


def test_the_kill_left_the_last_periodic_checkpoint(runs):
    _, _, killed_at, log = runs
    assert killed_at == "model_0000003.pth"
    assert "Resumed the training data stream at iteration 4" in log


def test_resumed_run_reaches_the_uninterrupted_weights_exactly(runs):
    whole, killed, _, _ = runs
    a, b = _load(whole), _load(killed)
    assert a["iteration"] == b["iteration"] == 5
    assert a["model"].keys() == b["model"].keys()
    assert any(k.startswith("losses.") for k in a["model"])  # the TSM is trained and resumed
    assert not any(k.startswith("teacher") for k in a["model"])
    different = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert different == []


def test_resumed_run_has_the_same_optimizer_and_scheduler_state(runs):
    whole, killed, _, _ = runs
    a, b = _load(whole)["trainer"], _load(killed)["trainer"]
    sa, sb = a["_trainer"]["optimizer"]["state"], b["_trainer"]["optimizer"]["state"]
    assert sa and sa.keys() == sb.keys()
    assert all(torch.equal(sa[i]["momentum_buffer"], sb[i]["momentum_buffer"]) for i in sa)
    assert a["hooks"]["LRScheduler"] == b["hooks"]["LRScheduler"]
