"""Writing files so that an interrupted write never leaves a partial file under the real name."""

import os
import tempfile
from typing import Callable

__all__ = ["atomic_write", "is_local_path"]


def is_local_path(path: str) -> bool:
    """True for a path on a mounted file system (not a ``scheme://`` URI of iopath)."""
    return "://" not in path


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """
    Call ``write(tmp)`` on a temporary file in ``path``'s folder, then rename it to ``path``.

    The rename (``os.replace``) is atomic on POSIX file systems: a reader sees the old file or
    the complete new one, and a process killed mid-write leaves only a ``tmp-*`` file behind,
    which is removed when the write fails with an exception.
    """
    folder = os.path.dirname(os.path.abspath(path))
    # A "tmp-" prefix rather than a dot: torch.save rejects some names that start with a dot.
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="tmp-", suffix="-" + os.path.basename(path))
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes the file private (0600); give it the permissions open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
