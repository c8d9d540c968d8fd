"""A run never trains over another run's results without --resume or --overwrite."""

import os
import subprocess
import sys

import pytest

from shared_kd.engine import OutputDirInUseError, check_output_dir

from ..conftest import REPO_ROOT


@pytest.mark.parametrize("name", ["last_checkpoint", "model_0004999.pth", "metrics.json"])
def test_a_previous_run_is_refused(tmp_path, name):
    (tmp_path / name).write_text("x")
    with pytest.raises(OutputDirInUseError, match="--resume .* --overwrite"):
        check_output_dir(str(tmp_path), resume=False, overwrite=False)
    check_output_dir(str(tmp_path), resume=True, overwrite=False)
    check_output_dir(str(tmp_path), resume=False, overwrite=True)


def test_new_or_config_only_folders_are_fine(tmp_path):
    check_output_dir(str(tmp_path / "missing"), resume=False, overwrite=False)
    (tmp_path / "config.yaml").write_text("x")  # written by default_setup before training
    (tmp_path / "log.txt").write_text("x")
    check_output_dir(str(tmp_path), resume=False, overwrite=False)


@pytest.mark.slow
def test_train_net_stops_before_touching_the_folder(tmp_path):
    (tmp_path / "model_final.pth").write_bytes(b"the user's weights")
    (tmp_path / "last_checkpoint").write_text("model_final.pth")
    cfg = os.path.join(REPO_ROOT, "configs", "shapes", "faster_rcnn_R18_FPN_tiny.yaml")
    res = subprocess.run(
        [sys.executable, "train_net.py", "--config-file", cfg, "OUTPUT_DIR", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode != 0
    assert "OutputDirInUseError: OUTPUT_DIR" in res.stderr
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_final.pth"]
    assert (tmp_path / "model_final.pth").read_bytes() == b"the user's weights"
