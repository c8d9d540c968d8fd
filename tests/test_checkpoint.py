"""SafeCheckpointer: a save interrupted at any moment loses nothing; loads are weights_only."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn

from shared_kd.checkpoint import CheckpointReadError, SafeCheckpointer


def _checkpointer(folder, value):
    model = nn.Linear(3, 2)
    nn.init.constant_(model.weight, value)
    return SafeCheckpointer(model, save_dir=str(folder))


def test_save_replaces_files_whole_and_tags_the_last(tmp_path):
    _checkpointer(tmp_path, 1.0).save("model_0000001", iteration=1)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]
    mode = os.stat(tmp_path / "model_0000001.pth").st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # not the 0600 of a bare temporary file


def test_an_exception_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    _checkpointer(tmp_path, 1.0).save("model_0000001", iteration=1)

    def torch_save_then_fail(obj, path):
        with open(path, "wb") as f:
            f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of writing

    monkeypatch.setattr(torch, "save", torch_save_then_fail)
    with pytest.raises(KeyboardInterrupt):
        _checkpointer(tmp_path, 2.0).save("model_0000003", iteration=3)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"


@pytest.mark.slow
def test_a_process_killed_during_save_leaves_a_resumable_folder(tmp_path):
    _checkpointer(tmp_path, 1.0).save("model_0000001", iteration=1)
    # A second process writes half of a checkpoint, then is killed (SIGKILL: no cleanup).
    script = textwrap.dedent(
        f"""
        import os, signal, torch, torch.nn as nn
        from shared_kd.checkpoint import SafeCheckpointer

        def torch_save_then_die(obj, path):
            with open(path, "wb") as f:
                f.write(b"half a checkpoint")
                f.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        torch.save = torch_save_then_die
        SafeCheckpointer(nn.Linear(3, 2), save_dir={str(tmp_path)!r}).save("model_0000003")
        """
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert res.returncode == -9, res.stderr
    names = os.listdir(tmp_path)
    assert "model_0000003.pth" not in names  # only a tmp-* file remains of the killed save
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    resumed = _checkpointer(tmp_path, 0.0)
    assert resumed.has_checkpoint()
    extra = resumed.resume_or_load("", resume=True)
    assert extra["iteration"] == 1
    assert torch.all(resumed.model.weight == 1.0)


def test_a_truncated_checkpoint_is_a_clear_error(tmp_path):
    _checkpointer(tmp_path, 1.0).save("model_final")
    path = tmp_path / "model_final.pth"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointReadError, match="Cannot read checkpoint .*model_final.pth"):
        _checkpointer(tmp_path, 0.0).load(str(path))


class NotATensor:
    pass


def test_a_checkpoint_holding_objects_is_refused(tmp_path):
    # weights_only=True: unpickling arbitrary classes (which can run code) is not allowed.
    path = str(tmp_path / "evil.pth")
    torch.save({"model": {}, "payload": NotATensor()}, path)
    with pytest.raises(CheckpointReadError, match="Cannot read checkpoint"):
        _checkpointer(tmp_path, 0.0).load(path)
