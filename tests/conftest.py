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
