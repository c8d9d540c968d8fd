"""shared_kd.benchmark.memory: this process's memory as /proc/self/status reports it."""

import io
import os

import pytest

import shared_kd.benchmark.memory as memory
from shared_kd.benchmark.memory import proc_status_bytes, reset_peak_rss

STATUS = "Name:\tpython\nVmHWM:\t  2048 kB\nVmRSS:\t    1500 kB\nThreads:\t4\n"

linux_proc = pytest.mark.skipif(
    not os.path.exists("/proc/self/status"), reason="needs Linux's /proc"
)


@pytest.fixture
def status(monkeypatch):
    """``/proc/self/status`` reads as ``text`` (None: it is not there)."""

    def fake(text):
        def open_(path, mode="r"):
            if text is None:
                raise FileNotFoundError(path)
            assert path in ("/proc/self/status", "/proc/self/clear_refs")
            return io.StringIO("" if "w" in mode else text)

        monkeypatch.setattr(memory, "open", open_, raising=False)

    return fake


def test_fields_in_bytes_in_the_order_asked(status):
    status(STATUS)
    assert proc_status_bytes("VmRSS", "VmHWM") == [1500 * 1024, 2048 * 1024]
    assert proc_status_bytes() == []


def test_a_missing_field_or_file_is_none(status):
    status(STATUS)
    assert proc_status_bytes("VmRSS", "VmSwap") is None
    status("VmRSS:\tlots\n")
    assert proc_status_bytes("VmRSS") is None
    status(None)
    assert proc_status_bytes("VmRSS") is None
    assert reset_peak_rss() is None


def test_reset_returns_the_current_rss(status):
    status(STATUS)
    assert reset_peak_rss() == 1500 * 1024


@linux_proc
def test_this_process():
    rss, peak = proc_status_bytes("VmRSS", "VmHWM")
    assert 0 < rss <= peak and rss % 1024 == 0
    after = reset_peak_rss()
    assert after is not None and after > 0
    assert proc_status_bytes("VmHWM")[0] >= after  # the mark restarts from about the RSS
