"""shared_kd.pipeline: a stage is one train_net.py run, skipped once done."""

import os
import sys

import pytest

from shared_kd.pipeline import TIME_FILE, Stage, run_stage

# ---------------------------------------------------------------------------------------------
# Stage.env: what tools/study.py uses to give each run its threads


@pytest.mark.slow
def test_stage_env_reaches_the_run(tmp_path, capsys):
    """run_stage runs ``train_net.py`` of ``root``: a stand-in that reports its environment."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "train_net.py").write_text(
        "import os, sys\n"
        "print('threads', os.environ.get('OMP_NUM_THREADS'), os.environ.get('MKL_NUM_THREADS'))\n"
        "print('inherited', os.environ.get('STUDY_TEST_MARKER'))\n"
        "print('args', ' '.join(sys.argv[1:]))\n"
    )
    out = str(tmp_path / "run")
    stage = Stage("fake", "cfg.yaml", out, ["SEED", "5"], done_file=TIME_FILE)
    stage.env = {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    os.environ["STUDY_TEST_MARKER"] = "kept"
    try:
        seconds = run_stage(stage, str(root), prefix="[t]")
    finally:
        del os.environ["STUDY_TEST_MARKER"]
    assert seconds is not None and seconds > 0
    log = open(os.path.join(out, "stage.log")).read()
    assert "threads 3 3\n" in log
    assert "inherited kept\n" in log  # the rest of the environment is passed on
    assert f"args --config-file cfg.yaml --resume SEED 5 OUTPUT_DIR {out}\n" in log
    assert os.path.isfile(os.path.join(out, TIME_FILE))
    # done: a second call runs nothing
    capsys.readouterr()
    assert run_stage(stage, str(root), prefix="[t]") is None
    assert capsys.readouterr().out == f"[t] fake: done, skipped ({out})\n"
    assert open(os.path.join(out, "stage.log")).read() == log


def test_stage_env_defaults_to_empty():
    stage = Stage("a", "c.yaml", "/o")
    assert stage.env == {}
    assert Stage("b", "c.yaml", "/o").env is not stage.env  # not shared between stages
    assert stage.command()[0] == sys.executable
