import importlib.util
import json
import os

import numpy as np
import pytest
import torch
from detectron2.layers import ShapeSpec
from PIL import Image

from shared_kd.analysis.common import load_detector
from shared_kd.analysis.feature_gaps import (
    STUDENT_STUDENT_TITLE,
    TEACHER_STUDENT_TITLE,
    aligned_mse,
    default_levels,
    feature_gaps_from_files,
    gap_matrix,
    write_feature_gaps,
)

from ..conftest import REPO_ROOT
from .conftest import NUM_IMAGES

RCNN_LEVELS = ["p2", "p3", "p4", "p5", "p6"]


def load_tool(name):
    """A script of tools/ as a module, so that its main() runs in this process (no re-import)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO_ROOT, "tools", name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_aligned_mse_by_hand():
    # x: 1 x 2 x 2 x 2, y: 1 x 1 x 1 x 1. A pools x to 1 x 1 (channel 0: mean(1, 2, 3, 6) = 3)
    # and keeps one channel: (3 - 5)^2 = 4.
    x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]], [[100.0, 100.0], [100.0, 100.0]]]])
    y = torch.tensor([[[[5.0]]]])
    assert aligned_mse(x, y).item() == pytest.approx(4.0)
    assert aligned_mse(y, x).item() == pytest.approx(4.0)
    # Same size, channels cropped to 1: a mean (not a sum) over the 4 elements.
    a = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    b = torch.zeros(1, 3, 2, 2)
    assert aligned_mse(a, b).item() == pytest.approx((0 + 1 + 4 + 9) / 4)


def test_gap_matrix_shape_symmetry_zero_diagonal():
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(1, c, s, s, generator=g) for c, s in ((8, 16), (8, 8), (4, 4))]
    cross = gap_matrix(maps, maps[:2])
    assert cross.shape == (3, 2)
    own = gap_matrix(maps, maps)
    assert torch.equal(own, own.T)
    assert torch.all(own.diagonal() == 0) and torch.all(own + torch.eye(3) > 0)
    assert own[0, 2].item() == pytest.approx(aligned_mse(maps[0], maps[2]).item())


def test_default_levels_common_and_fine_to_coarse():
    rcnn = {f"p{i}": ShapeSpec(channels=32, stride=2**i) for i in (6, 2, 5, 3, 4)}  # unordered
    dense = {f"p{i}": ShapeSpec(channels=16, stride=2**i) for i in (3, 4, 5, 6, 7)}
    assert default_levels(rcnn, dense) == ["p3", "p4", "p5", "p6"]
    assert default_levels(dense, rcnn) == ["p3", "p4", "p5", "p6"]
    with pytest.raises(ValueError, match="none in common"):
        default_levels({"p2": rcnn["p2"]}, {"p7": dense["p7"]})


@pytest.mark.slow
def test_a_lazy_teacher_against_a_yaml_student(tiny_models, tmp_path):
    """A LazyConfig (.py) detector and a yaml one: each read with its own config system."""
    config = os.path.join(REPO_ROOT, "configs", "shapes", "faster_rcnn_R34_FPN_tiny_teacher.py")
    torch.manual_seed(0)
    weights = tmp_path / "lazy_teacher.pth"
    model, _ = load_detector(config, None, weights_flag="none")  # random weights
    torch.save({"model": model.state_dict()}, weights)
    gaps = feature_gaps_from_files(
        config, str(weights), tiny_models["student"], tiny_models["student_weights"], num_images=1
    )
    assert gaps.num_images == 1 and gaps.teacher_student.shape == (5, 5)
    assert np.all(np.isfinite(gaps.teacher_student))
    # and the other way round: the .py config's own test mapper and dataset
    gaps = feature_gaps_from_files(
        tiny_models["teacher"], tiny_models["teacher_weights"], config, str(weights), num_images=1
    )
    assert gaps.info["dataset"] == "shapes_val"


@pytest.mark.slow
def test_teacher_vs_student(tiny_models):
    m = tiny_models
    gaps = feature_gaps_from_files(
        m["teacher"],
        m["teacher_weights"],
        m["student"],
        m["student_weights"],
        num_images=NUM_IMAGES,
    )
    assert gaps.levels == RCNN_LEVELS
    assert gaps.num_images == NUM_IMAGES
    assert gaps.info["dataset"] == "shapes_val"  # the student config's DATASETS.TEST[0]
    assert gaps.teacher_student.shape == gaps.student_student.shape == (5, 5)
    assert np.all(np.isfinite(gaps.teacher_student)) and np.all(gaps.teacher_student > 0)
    ss = gaps.student_student
    assert np.array_equal(ss, ss.T) and np.all(np.diag(ss) == 0)
    assert np.all(ss[~np.eye(5, dtype=bool)] > 0)
    p = gaps.premise()
    adjacent = np.mean([ss[i, i + 1] for i in range(4)])
    assert p["adjacent_student_gap_mean"] == pytest.approx(adjacent)
    assert p["same_level_teacher_student_gap_mean"] == pytest.approx(
        np.diag(gaps.teacher_student).mean()
    )
    assert p["premise_holds"] == bool(adjacent < np.diag(gaps.teacher_student).mean())


def test_model_against_itself_and_student_prefixed_checkpoint(tiny_models):
    """The distillation checkpoint holds the plain student's weights: every same-level gap is 0."""
    m = tiny_models
    gaps = feature_gaps_from_files(
        m["student"], m["student_weights"], m["distill"], m["distill_weights"], num_images=1
    )
    assert np.all(np.diag(gaps.teacher_student) == 0)
    # Teacher and student are the same model, so both matrices are the student's own gaps.
    np.testing.assert_allclose(gaps.teacher_student, gaps.student_student, rtol=1e-6, atol=0)


@pytest.mark.slow
def test_cli_writes_markdown_json_png(tiny_models, tmp_path, capsys):
    m = tiny_models
    out = tmp_path / "gaps"
    argv = ["--teacher-config", m["teacher"], "--teacher-weights", m["teacher_weights"]]
    argv += ["--student-config", m["distill"], "--student-weights", m["distill_weights"]]
    argv += ["--dataset", "shapes_val", "--num-images", str(NUM_IMAGES), "--levels", "p3", "p4"]
    gaps = load_tool("feature_gaps.py").main(argv + ["--output-dir", str(out)])
    assert sorted(os.listdir(out)) == ["feature_gaps.json", "feature_gaps.md", "feature_gaps.png"]
    umask = os.umask(0)
    os.umask(umask)
    for name in os.listdir(out):  # the temporary files' owner-only mode was not kept
        assert os.stat(out / name).st_mode & 0o777 == 0o666 & ~umask
    printed = capsys.readouterr().out
    assert TEACHER_STUDENT_TITLE in printed and "premise_holds" in printed

    with open(out / "feature_gaps.json") as f:
        data = json.load(f)
    assert data["metric"] == "aligned_mse"
    assert data["levels"] == ["p3", "p4"] and data["num_images"] == NUM_IMAGES
    assert np.array(data["teacher_student"]).shape == (2, 2)
    assert data["student_student"][0][0] == 0 and data["student_student"][1][1] == 0
    assert data["student_student"][0][1] == data["student_student"][1][0] > 0
    np.testing.assert_allclose(data["teacher_student"], gaps.teacher_student)
    assert set(data["premise"]) == {
        "adjacent_student_gap_mean",
        "same_level_teacher_student_gap_mean",
        "premise_holds",
    }
    assert data["premise"]["adjacent_student_gap_mean"] == data["student_student"][0][1]
    assert data["student"]["weights"] == m["distill_weights"]

    with open(out / "feature_gaps.md") as f:
        md = f.read()
    assert f"## {STUDENT_STUDENT_TITLE}" in md and "| **p4** |" in md

    with Image.open(out / "feature_gaps.png") as png:
        assert png.format == "PNG"
        width, height = png.size
    assert 400 <= width <= 2000 and 150 <= height <= 1000 and width > 1.5 * height


@pytest.mark.slow
def test_write_is_atomic_and_json_has_no_nan(tiny_models, tmp_path):
    m = tiny_models
    gaps = feature_gaps_from_files(
        m["teacher"],
        m["teacher_weights"],
        m["student"],
        m["student_weights"],
        num_images=1,
        levels=["p5", "p6"],
    )
    gaps.teacher_student[0, 0] = float("nan")
    paths = write_feature_gaps(gaps, str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths.values())
    with open(paths["json"]) as f:
        data = json.load(f)
    assert data["teacher_student"][0][0] is None
