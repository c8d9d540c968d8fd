"""tools/demo.py end to end on a few iterations: the table, the pictures, and skipping."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from .coco_subset import small_test_set_opts
from .conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # runs the demo / study / GPU-check tools in processes

SMOKE = ["SOLVER.MAX_ITER", "4", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1"]
SMOKE += ["DATALOADER.NUM_WORKERS", "0", "SOLVER.STEPS", "(3,)"]
# Evaluating on 64 px images (trained on 128 px) halves the three evaluations' time; the test
# checks the table and pictures, not the APs.
SMOKE += ["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64"]


def _demo(out, test_set):
    res = subprocess.run(
        [sys.executable, "tools/demo.py", "--output-dir", str(out), "--cost-images", "1"]
        + ["--gap-images", "4"]
        + ["--latency-runs", "2", "--stage-opts", *SMOKE, *test_set],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    # each stage evaluates on 8 images: the test checks the table, not its APs
    test_set = small_test_set_opts(tmp_path_factory.mktemp("demo_data"), "demo_val8")
    return out, _demo(out, test_set), _demo(out, test_set)


def test_demo_writes_the_table_and_pictures(demo):
    out, first, _ = demo
    results = json.loads((out / "results.json").read_text())
    labels = [r["stage"] for r in results["rows"]]
    assert labels == ["teacher (R18 FPN-128)", "student alone (R18 FPN-64)", "student + Shared-KD"]
    for row in results["rows"]:
        assert set(row["bbox"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    table = (out / "results.md").read_text()
    assert "| student + Shared-KD |" in table and table in first  # printed as well
    assert all(r["seconds"] > 0 for r in results["rows"])
    assert "iter: 3" in first  # each stage shows its progress
    grid = Image.open(out / "qualitative.png")
    gaps = Image.open(out / "feature_gaps.png")
    # 4 columns (ground truth + 3 models) and 4 image rows, 384 px cells plus titles
    assert grid.width == 4 * 384 and grid.height >= 4 * 384
    assert gaps.width > gaps.height > 0
    premise = results["feature_gaps"]["student_alone"]
    assert set(premise) >= {"adjacent_student_gap_mean", "premise_holds"}
    assert (out / "feature_gaps_sharedkd" / "feature_gaps.png").is_file()
    curves = Image.open(out / "ap_vs_iteration.png")
    assert curves.width > curves.height > 0
    assert results["pictures"]["ap_vs_iteration"].endswith("ap_vs_iteration.png")
    # what each model costs, beside the teacher: the students are smaller
    cost = {r["model"]: r for r in results["cost"]}
    assert list(cost) == labels
    teacher = cost["teacher (R18 FPN-128)"]
    for label in labels[1:]:
        assert cost[label]["params"] < teacher["params"] and cost[label]["ratios"]["params"] < 1
        assert cost[label]["gflops"]["mean"] > 0 and cost[label]["latency_ms"]["median"] > 0
    assert "params / teacher" in table and "GFLOPs / teacher" in table
    # the distilled student as TorchScript, with its outputs named
    assert (out / "sharedkd_student.ts").is_file()
    outputs = json.loads((out / "sharedkd_student.ts.json").read_text())["outputs"]
    assert outputs == ["pred_boxes", "pred_classes", "scores", "image_size"]
    # one seed: the demo points at the seeded study for mean +- std
    assert "mean +- std over seeds" in first
    assert "configs/studies/sharedkd_faster_rcnn.yaml" in first


def test_a_second_demo_skips_every_stage(demo):
    out, first, second = demo
    # 3 trainings, the grid, 2 feature-gap runs, the cost report, the TorchScript file
    assert second.count("done, skipped") == 8
    assert "iter:" not in second
    # the table still reports each stage's training time, recorded when it ran
    assert (out / "results.md").read_text() in first
