import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
