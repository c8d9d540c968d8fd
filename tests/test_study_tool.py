"""tools/study.py end to end on a few iterations: guide, arms x seeds, summary, skipping."""

import importlib.util
import json
import os
import shlex
import subprocess
import sys

import pytest
from PIL import Image

from shared_kd import pipeline

from .coco_subset import small_test_set_opts
from .conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # runs the demo / study / GPU-check tools in processes

TEACHER_CFG = "configs/shapes/faster_rcnn_R34_FPN_tiny_teacher.yaml"
STUDENT_CFG = "configs/shapes/faster_rcnn_R18_FPN_tiny.yaml"
SKD_CFG = "configs/shapes/sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.yaml"

# TEST.EVAL_PERIOD 2 of MAX_ITER 4: an evaluation after 2 iterations (logged by detectron2's
# EvalHook at iteration 1) and the final one after training (logged at iteration 4); the study
# counts both as iterations trained, 2 and 4.
SMOKE = ["SOLVER.MAX_ITER", "4", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1"]
SMOKE += ["DATALOADER.NUM_WORKERS", "0", "SOLVER.STEPS", "(3,)", "TEST.EVAL_PERIOD", "2"]
# Evaluating on 64 px images (trained on 128 px) halves the time of the 8 evaluations, about
# half of each run's time on 2 cores; the test checks the plumbing, not the APs.
SMOKE += ["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64"]

# The guide skips its evaluations (no test set): only its weights are used, and it runs alone
# before the arms, so its evaluations would add to the test's wall time in full.
STUDY = f"""
name: smoke
seeds: [1, 2]
guides:
  - name: teacher
    config: {TEACHER_CFG}
    opts: [DATASETS.TEST, "()"]
arms:
  - name: student alone
    config: {STUDENT_CFG}
  - name: Shared-KD
    config: {SKD_CFG}
    opts: [MODEL.DISTILL.TEACHER.WEIGHTS, "{{teacher}}/model_final.pth"]
"""


def _study(*args, check=True):
    res = subprocess.run(
        [sys.executable, "tools/study.py", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def _done_times(folder):
    """Each finished run's recorded time (stage_seconds.json), by folder."""
    found = {}
    for dirpath, _, files in os.walk(folder):
        if "stage_seconds.json" in files:
            with open(os.path.join(dirpath, "stage_seconds.json")) as f:
                found[os.path.relpath(dirpath, folder)] = f.read()
    return found


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    spec = root / "smoke.yaml"
    spec.write_text(STUDY)
    out = root / "out"
    args = [str(spec), "--jobs", "2", "--threads", "1", "--output-dir", str(out), "--opts"]
    # Evaluations on 8 images, not 100: the arms' 8 took about a third of the study's time, and
    # the test checks the plumbing, not the APs. (The guide's own DATASETS.TEST () comes before
    # these overrides, so it evaluates too, on 8.)
    args += SMOKE + small_test_set_opts(root, "smoke_val8")
    first = _study(*args).stdout
    times = _done_times(str(out / "smoke"))
    second = _study(*args).stdout
    return out / "smoke", args, first, second, times


def test_study_trains_every_arm_at_every_seed(study):
    folder, _, first, _, times = study
    assert sorted(times) == [
        "shared_kd/seed1",
        "shared_kd/seed2",
        "student_alone/seed1",
        "student_alone/seed2",
        "teacher",
    ]
    assert "teacher: finished in" in first
    for arm in ("student alone", "Shared-KD"):
        for seed in (1, 2):
            assert f"{arm} (seed {seed}): finished in" in first
    # the arms got their seed and the guide's weights; the guide no seed
    skd = (folder / "shared_kd" / "seed2" / "stage.log").read_text()
    config = (folder / "shared_kd" / "seed2" / "config.yaml").read_text()
    assert "SEED: 2\n" in config
    assert f"WEIGHTS: {folder / 'teacher' / 'model_final.pth'}\n" in config
    assert "Exported the student" in skd
    assert "SEED: 42\n" in (folder / "teacher" / "config.yaml").read_text()


def test_study_summary_json(study):
    folder, _, first, _, _ = study
    summary = json.loads((folder / "study.json").read_text())
    assert summary["study"] == "smoke" and summary["seeds"] == [1, 2]
    assert summary["reference"] == "student alone"
    alone, skd = summary["arms"]
    assert [alone["name"], skd["name"]] == ["student alone", "Shared-KD"]
    for arm in (alone, skd):
        assert arm["seeds_done"] == [1, 2]
        assert sorted(arm["per_seed"]) == ["1", "2"]
        assert set(arm["summary"]) == {"bbox/AP", "bbox/AP50", "bbox/AP75"}  # no masks
        assert arm["summary"]["bbox/AP"]["n"] == 2
        assert 0.0 <= arm["summary"]["bbox/AP"]["mean"] <= 100.0
        assert list(arm["curve"]) == ["2", "4"]
        for point in arm["curve"].values():
            assert point["n"] == 2 and len(point["values"]) == 2
        # the curve's last point is the final AP of each seed
        assert arm["curve"]["4"]["values"] == [arm["per_seed"][s]["bbox/AP"] for s in ("1", "2")]
    assert alone["delta_ap_vs_reference"] is None
    assert skd["delta_ap_vs_reference"]["n"] == 2
    # TSM health, logged at the last of the 4 iterations, for the fused levels
    assert alone["health"] == {}
    ratios = sorted(k for k in skd["health"] if k.startswith("distill/tsm_rms_ratio_"))
    assert ratios == [f"distill/tsm_rms_ratio_p{i}" for i in (2, 3, 4, 5)]
    assert all(0.0 <= skd["health"][f"distill/tsm_gate0_p{i}"] <= 1.0 for i in (2, 3, 4, 5))
    # study.json is the second invocation's: it took a moment, the first one minutes
    took = float(first.split("this run took ")[1].split(" s")[0])
    assert 0.0 <= summary["wall_seconds_this_run"] < took


def test_study_table_plot_and_reproduce_command(study):
    folder, args, first, _, _ = study
    table = (folder / "study.md").read_text()
    assert table in first  # printed as well
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows] == ["| config", "| student alone", "| Shared-KD"]
    assert rows[1].split(" | ")[5] == "1,2"  # seeds
    assert rows[2].split(" | ")[-1].startswith("gate >= ")  # TSM health
    # the reproduce line is the command itself, quoted for a shell (SOLVER.STEPS "(3,)")
    command = table.split("Reproduce: `")[1].split("`")[0]
    assert shlex.split(command) == ["python", "tools/study.py", *args]
    with Image.open(folder / "study.png") as im:
        assert im.format == "PNG" and im.width > 300 and im.height > 200


def test_a_second_study_skips_every_run(study):
    folder, _, _, second, times = study
    assert second.count("done, skipped") == 5  # the guide and 2 arms x 2 seeds
    assert "teacher: done, skipped" in second
    for arm in ("student alone", "Shared-KD"):
        for seed in (1, 2):
            assert f"{arm} (seed {seed}): done, skipped" in second
    assert "iter:" not in second and "Start inference" not in second
    assert _done_times(str(folder)) == times  # nothing ran again
    # the summary is written again from the same metrics
    assert (folder / "study.md").read_text() in second


def _load_tool():
    """tools/study.py as a module, so that its main() runs in this process."""
    spec = importlib.util.spec_from_file_location(
        "study_tool", os.path.join(REPO_ROOT, "tools", "study.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tool(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # main() moves to the repository root: back afterwards
    return _load_tool()


def test_dry_run_prints_the_runs_only(tool, tmp_path, capsys):
    spec = tmp_path / "dry.yaml"
    spec.write_text(STUDY)
    out = tmp_path / "out"
    assert tool.main([str(spec), "--dry-run", "--seeds", "7", "--output-dir", str(out)]) is None
    lines = [line for line in capsys.readouterr().out.splitlines() if "train_net.py" in line]
    names = [line.split(":")[0] for line in lines]
    assert names[0] == "[study] teacher"  # first, alone; then the arms side by side
    assert sorted(names[1:]) == ["[study] Shared-KD (seed 7)", "[study] student alone (seed 7)"]
    teacher = str(out / "smoke" / "teacher")
    sharedkd = next(line for line in lines if line.startswith("[study] Shared-KD"))
    assert f"MODEL.DISTILL.TEACHER.WEIGHTS {teacher}/model_final.pth SEED 7" in sharedkd
    assert not out.exists()  # nothing trained, nothing written


def test_threads_opts_and_a_failed_run(tool, tmp_path, monkeypatch, capsys):
    """run_stage replaced: which runs start, with which threads and overrides, and failures."""
    spec = tmp_path / "broken.yaml"
    spec.write_text(
        f"name: broken\nseeds: [1, 2]\nguides:\n  - name: t\n    config: {TEACHER_CFG}\n"
        f"arms:\n  - name: good\n    config: {STUDENT_CFG}\n"
        f"  - name: bad\n    config: {STUDENT_CFG}\n"
    )
    calls = []

    def fake_run_stage(stage, root, prefix, dry_run):
        assert root == REPO_ROOT and prefix == "[study]" and not dry_run
        calls.append((stage.name, dict(stage.env), list(stage.opts)))
        if stage.name.startswith("bad"):
            raise SystemExit(f"{prefix} {stage.name} failed (exit 1)")

    # the guides run through the tool's run_stage, the arms through the pipeline's
    monkeypatch.setattr(tool, "run_stage", fake_run_stage)
    monkeypatch.setattr(pipeline, "run_stage", fake_run_stage)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    out = tmp_path / "out"
    # --jobs 1: in order, each run after the previous one (failed or not) ended
    args = [str(spec), "--jobs", "1", "--output-dir", str(out), "--opts", "SOLVER.MAX_ITER", "9"]
    with pytest.raises(SystemExit, match=r"failed runs: \['bad \(seed 1\)', 'bad \(seed 2\)'\]"):
        tool.main(args)
    names = [c[0] for c in calls]
    assert names == ["t", "good (seed 1)", "bad (seed 1)", "good (seed 2)", "bad (seed 2)"]
    # the guide: every thread (no override), the --opts; the arms: 8 cores / 1 job
    assert calls[0][1:] == ({}, ["SOLVER.MAX_ITER", "9"])
    assert calls[1][1:] == (
        {"OMP_NUM_THREADS": "8", "MKL_NUM_THREADS": "8"},
        ["SEED", "1", "SOLVER.MAX_ITER", "9"],  # --opts last: they win
    )
    assert "bad (seed 1) failed (exit 1)" in capsys.readouterr().out
    # the summary is written all the same, with nothing finished
    summary = json.loads((out / "broken" / "study.json").read_text())
    assert [a["seeds_done"] for a in summary["arms"]] == [[], []]
    assert (out / "broken" / "study.md").is_file() and (out / "broken" / "study.png").is_file()

    # --jobs 4 --arms good: cores divided among the jobs, the other arm left out; --threads wins
    calls.clear()
    tool.main([str(spec), "--jobs", "4", "--arms", "good", "--output-dir", str(out)])
    assert sorted(c[0] for c in calls) == ["good (seed 1)", "good (seed 2)", "t"]
    assert {c[1].get("OMP_NUM_THREADS") for c in calls} == {None, "2"}
    calls.clear()
    tool.main(
        [str(spec), "--threads", "3", "--seeds", "5", "--arms", "good", "--output-dir", str(out)]
    )
    assert calls[1][:2] == ("good (seed 5)", {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"})
