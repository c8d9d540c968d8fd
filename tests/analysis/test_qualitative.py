import os

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances
from PIL import Image

from shared_kd.analysis.qualitative import GT_COLUMN, draw_grid, qualitative_grid, select_images

from .test_feature_gaps import load_tool


@pytest.fixture(scope="module")
def shapes_val():
    return DatasetCatalog.get("shapes_val")


def test_select_images_first_n_or_by_id(shapes_val):
    assert [d["image_id"] for d in select_images(shapes_val, 3)] == [1, 2, 3]
    assert [d["image_id"] for d in select_images(shapes_val, 3, ["7", 2])] == [7, 2]
    with pytest.raises(ValueError, match="12345"):
        select_images(shapes_val, image_ids=[12345])


def _detections(height, width, scores):
    inst = Instances((height, width))
    n = len(scores)
    inst.pred_boxes = Boxes(torch.tensor([[10.0, 10.0, 50.0, 60.0]] * n))
    inst.scores = torch.tensor(scores)
    inst.pred_classes = torch.arange(n) % 3
    return inst


@pytest.mark.slow
def test_draw_grid_rows_images_columns_gt_and_models(shapes_val):
    records = shapes_val[:2]
    preds = {
        name: [_detections(d["height"], d["width"], [0.9, 0.2]) for d in records]
        for name in ("teacher", "student alone", "Shared-KD student")
    }
    fig = draw_grid(records, preds, MetadataCatalog.get("shapes_val"), 0.5, cell_px=128)
    assert len(fig.axes) == 2 * 4
    assert [ax.get_title() for ax in fig.axes[:4]] == [GT_COLUMN, *preds]
    assert fig.axes[1].get_xlabel() == "detections: 1 (score >= 0.5)"  # 0.2 is not drawn
    assert fig.axes[4].get_ylabel() == "image 2"


@pytest.mark.slow
def test_cli_grid_png(tiny_models, tmp_path, capsys):
    m = tiny_models
    argv = ["--model", "teacher", m["teacher"], m["teacher_weights"]]
    argv += ["--model", "Shared-KD student", m["distill"], m["distill_weights"]]
    argv += ["--num-images", "2", "--output-dir", str(tmp_path / "grid")]
    path = load_tool("qualitative.py").main(argv)
    assert path == os.path.join(str(tmp_path / "grid"), "qualitative.png")
    assert os.listdir(tmp_path / "grid") == ["qualitative.png"]
    assert "2 images x 3 columns" in capsys.readouterr().out
    with Image.open(path) as png:
        assert png.format == "PNG"
        # 3 panels of 384 px across; 2 rows of 384 px plus captions (0.35 in) and titles (0.4 in)
        assert png.size == (3 * 384, 2 * (384 + 35) + 40)


def test_names_must_be_distinct(tiny_models, tmp_path):
    m = tiny_models
    same = ("a", m["teacher"], m["teacher_weights"])
    with pytest.raises(ValueError, match="distinct"):
        qualitative_grid([same, same], str(tmp_path / "x.png"))
    assert not os.listdir(tmp_path)
