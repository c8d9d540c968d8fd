import contextlib
import io
import logging
import multiprocessing
import os
import random
import runpy
import subprocess
import sys
import traceback
import warnings

import numpy as np
import pytest
import torch
from detectron2.utils import logger as d2_logger

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


def run_script(script, *args, timeout=900, fresh_process=False):
    """
    Run a repository script (e.g. train_net.py) from the repository root, as ``python script
    args``; return what it printed and logged. It runs in this process (``runpy``, as
    ``__main__``): a train_net.py run then costs no second import of torch and detectron2, about
    half of a tiny run's time. ``fresh_process=True`` starts an interpreter of its own instead
    (a script that starts processes of its own or must not share this one's state); ``timeout``
    applies to those only.
    """
    if fresh_process:
        res = subprocess.run(
            [sys.executable, os.path.join(REPO_ROOT, script), *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        return res.stdout + res.stderr
    code, output = run_in_this_process(os.path.join(REPO_ROOT, script), *args)
    assert code == 0, f"{script} exited with {code}:\n{output[-6000:]}"
    return output


def run_in_this_process(path, *args):
    """
    ``python path args`` in this process, from the repository root: the script runs as
    ``__main__`` (its folder first on ``sys.path``) with its output (prints, warnings, the
    loggers it sets up) captured. What a run changes in the process is put back after it: the
    loggers' handlers and settings, the random generators (detectron2's ``default_setup`` seeds
    them), ``os.environ`` (it sets PYTHONHASHSEED), the working folder, ``sys.argv`` and
    ``sys.path``.

    Returns:
        (exit code, output): 0 when the script returned; a SystemExit's code; 1 with the
        traceback in the output when it raised.
    """
    buffer = io.StringIO()
    loggers = _logger_state()
    saved = (os.getcwd(), sys.argv, list(sys.path), dict(os.environ), _random_state())
    d2_logger.setup_logger.cache_clear()  # a first call for a folder adds its handlers
    code = 0
    try:
        os.chdir(REPO_ROOT)
        sys.argv = [path, *args]
        sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
        with contextlib.ExitStack() as stack:
            stack.enter_context(contextlib.redirect_stdout(buffer))
            stack.enter_context(contextlib.redirect_stderr(buffer))
            # the script's warnings go to its output, as a process prints them to stderr
            caught = stack.enter_context(warnings.catch_warnings(record=True))
            warnings.simplefilter("default")
            stack.callback(
                lambda: buffer.writelines(
                    warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
                    for w in caught
                )
            )
            try:
                runpy.run_path(path, run_name="__main__")
            except SystemExit as e:
                if e.code is None or isinstance(e.code, int):
                    code = e.code or 0
                else:  # sys.exit("message"): printed to stderr, exit status 1
                    print(e.code, file=sys.stderr)
                    code = 1
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        cwd, sys.argv, sys.path[:], environ, generators = saved
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environ)
        _set_random_state(generators)
        _restore_loggers(loggers)
    return code, buffer.getvalue()


def _random_state():
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _set_random_state(state):
    torch_state, numpy_state, python_state = state
    torch.set_rng_state(torch_state)
    np.random.set_state(numpy_state)
    random.setstate(python_state)


def _loggers():
    named = {
        n: v for n, v in logging.Logger.manager.loggerDict.items() if isinstance(v, logging.Logger)
    }
    return {"": logging.getLogger(), **named}


def _logger_state():
    """Each logger's handlers and settings, by name."""
    return {
        name: (list(log.handlers), log.level, log.propagate, log.disabled)
        for name, log in _loggers().items()
    }


def _restore_loggers(before):
    """
    Undo what a script's logger setup left in this process: the stream handlers it added
    (detectron2's ``setup_logger`` binds them to the captured stdout and to OUTPUT_DIR/log.txt;
    a library's NullHandler stays), the levels and propagation of the loggers that existed
    before the run (a logger the run created keeps its own), and the caches that would hand a
    later run the same logger or a closed log file.
    """
    files = []
    for name, log in _loggers().items():
        handlers, level, propagate, disabled = before.get(name, ([], None, None, None))
        for handler in log.handlers[:]:
            if handler not in handlers and isinstance(handler, logging.StreamHandler):
                handler.flush()
                log.removeHandler(handler)
                stream = handler.stream
                if isinstance(stream, io.IOBase) and not isinstance(stream, io.StringIO):
                    files.append(stream)  # a log.txt (the captured stdout is a StringIO)
        if level is not None:
            log.setLevel(level)
            log.propagate, log.disabled = propagate, disabled
    for stream in files:
        stream.close()  # flushed and closed, as at the end of a process
    d2_logger.setup_logger.cache_clear()
    d2_logger._cached_log_stream.cache_clear()


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
