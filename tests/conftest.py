import contextlib
import multiprocessing
import os
import subprocess
import sys

import pytest
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n N` (make test): the N workers share the cores, so each computes on one thread,
    # as do the processes it starts (train_net.py runs read OMP_NUM_THREADS).
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# ---- the `slow` marker: tests that train or start processes -----------------------------------
# `make test-fast` (pytest -m "not slow") leaves them out. A test without the mark that starts a
# process (subprocess, multiprocessing: train_net.py runs, DDP, data-loader workers), in its
# fixtures or its body, fails and says so, so the fast loop stays fast as tests are added.


@contextlib.contextmanager
def _no_processes_unless_slow(item):
    if item.get_closest_marker("slow") is not None:
        yield
        return

    def refuse(*args, **kwargs):
        raise RuntimeError(
            f"{item.nodeid} starts a process: mark it (or its module) @pytest.mark.slow"
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", refuse)
        patch.setattr(multiprocessing.Process, "start", refuse)
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _no_processes_unless_slow(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _no_processes_unless_slow(item):
        yield


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


def run_script(script, *args, timeout=900):
    """Run a repository script (e.g. train_net.py) from the repository root; return its output."""
    res = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, script), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


@pytest.fixture(scope="session")
def random_teacher(tmp_path_factory):
    """A checkpoint of the tiny R34 Faster R-CNN teacher with random weights (no training)."""
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from shared_kd.checkpoint import SafeCheckpointer
    from shared_kd.config import add_sharedkd_config

    cfg = get_cfg()
    add_sharedkd_config(cfg)
    cfg.merge_from_file(
        os.path.join(REPO_ROOT, "configs", "shapes", "faster_rcnn_R34_FPN_tiny_teacher.yaml")
    )
    cfg.MODEL.DEVICE = "cpu"
    out = tmp_path_factory.mktemp("random_teacher")
    SafeCheckpointer(build_model(cfg), save_dir=str(out)).save("model_final")
    return str(out / "model_final.pth")
