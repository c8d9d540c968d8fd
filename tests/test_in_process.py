"""tests/conftest.run_in_this_process: a script's run leaves this process as it found it."""

import logging
import os
import random

import torch

from .conftest import run_in_this_process

SCRIPT = """
import logging, os, random, sys
import torch
from detectron2.utils.logger import setup_logger
from detectron2.utils.env import seed_all_rng

logger = setup_logger(output=sys.argv[1], name="in_process_probe")
logger.info("logged by the probe")
print("printed", sys.argv[2])
seed_all_rng(7)  # as detectron2's default_setup; it also sets PYTHONHASHSEED
os.environ["IN_PROCESS_PROBE"] = "1"
logging.getLogger("in_process_probe.lib").addHandler(logging.NullHandler())
sys.exit(sys.argv[3]) if sys.argv[3] != "ok" else None
"""


def test_a_run_is_captured_and_leaves_no_trace(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    torch.manual_seed(0)
    random.seed(0)
    expected = (torch.rand(1), random.random())
    torch.manual_seed(0)
    random.seed(0)
    env = dict(os.environ)
    probe = logging.getLogger("in_process_probe")  # exists before, as detectron2's loggers do
    code, output = run_in_this_process(str(script), str(tmp_path), "hello", "ok")
    assert code == 0
    assert "printed hello" in output and "logged by the probe" in output
    # the log file was flushed and closed, as at a process's end
    assert "logged by the probe" in (tmp_path / "log.txt").read_text()
    # nothing left behind: generators, environment, the probe's handlers and settings
    assert (torch.rand(1), random.random()) == expected
    assert dict(os.environ) == env
    assert probe.handlers == [] and probe.level == logging.NOTSET and probe.propagate
    assert len(logging.getLogger("in_process_probe.lib").handlers) == 1  # a library's NullHandler


def test_sys_exit_with_a_message_is_status_1_with_the_message(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    code, output = run_in_this_process(str(script), str(tmp_path), "x", "it exists already")
    assert code == 1 and "it exists already" in output
