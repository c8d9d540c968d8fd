"""A process's memory as Linux reports it (``/proc/self/status``), for peak-memory figures."""

import contextlib
from typing import List, Optional

__all__ = ["proc_status_bytes", "reset_peak_rss"]


def proc_status_bytes(*keys: str) -> Optional[List[int]]:
    """Fields of ``/proc/self/status`` (Linux) in bytes, or None where there is none."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return [int(fields[k].split()[0]) * 1024 for k in keys]  # "123 kB"
    except (OSError, KeyError, ValueError):
        return None


def reset_peak_rss() -> Optional[int]:
    """
    Reset this process's RSS high-water mark (``VmHWM``) to its current RSS and return that
    RSS in bytes, or None where Linux's ``/proc`` is not there.

    Not ``ru_maxrss``: Linux carries a parent's peak RSS across fork + exec into the child.
    Writing 5 to ``/proc/self/clear_refs`` resets ``VmHWM`` to ``VmRSS``.
    """
    with contextlib.suppress(OSError):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    status = proc_status_bytes("VmRSS")
    return None if status is None else status[0]
