"""shared_kd.utils.io: writes that never leave a partial file under the real name."""

import os
import stat

import pytest

from shared_kd.utils.io import atomic_write, is_local_path


def _write_text(text):
    def write(path):
        with open(path, "w") as f:
            f.write(text)

    return write


@pytest.mark.parametrize(
    "path, local",
    [
        ("model_final.pth", True),
        ("/abs/dir/model.pth", True),
        ("s3://bucket/model.pth", False),
        ("https://dl.fbaipublicfiles.com/x.pkl", False),
    ],
)
def test_is_local_path(path, local):
    assert is_local_path(path) is local


def test_atomic_write_writes_through_a_temporary_file(tmp_path):
    target = tmp_path / "out.txt"
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert not target.exists()  # nothing under the real name while writing
        _write_text("hello")(tmp)

    atomic_write(str(target), write)
    assert target.read_text() == "hello"
    (tmp,) = seen
    assert os.path.dirname(tmp) == str(tmp_path)  # same folder: the rename is atomic
    assert os.path.basename(tmp).startswith("tmp-") and tmp.endswith("-out.txt")
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_write_replaces_and_has_open_permissions(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    umask = os.umask(0o022)
    try:
        atomic_write(str(target), _write_text("new"))
    finally:
        os.umask(umask)
    assert target.read_text() == "new"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644  # 0o666 & ~0o022, not mkstemp's 0o600


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def fail(tmp):
        _write_text("half")(tmp)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(str(target), fail)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]
