"""shared_kd.analysis.soft_targets: a teacher's soft-target statistics, checked by hand."""

import math

import pytest
import torch
from detectron2.modeling import build_model

from shared_kd.analysis.soft_targets import labelled_test_inputs, rcnn_soft_target_stats
from shared_kd.detector_config import DetectorConfig
from shared_kd.utils.testing import get_tiny_cfg


@pytest.fixture(scope="module")
def rcnn():
    cfg = get_tiny_cfg("faster_rcnn")
    cfg.DATASETS.TEST = ("shapes_val",)
    torch.manual_seed(0)
    return build_model(cfg).eval(), DetectorConfig("tiny", cfg)


def test_inputs_keep_their_ground_truth_in_order(rcnn):
    _, config = rcnn
    first, again = (labelled_test_inputs(config, "shapes_val", 2) for _ in range(2))
    assert [x["image_id"] for x in first] == [x["image_id"] for x in again]
    assert all(len(x["instances"]) > 0 and x["instances"].has("gt_classes") for x in first)
    assert torch.equal(first[0]["image"], again[0]["image"])


def test_statistics_of_a_random_rcnn(rcnn):
    model, config = rcnn
    inputs = labelled_test_inputs(config, "shapes_val", 3)
    torch.manual_seed(0)
    stats = rcnn_soft_target_stats(model, inputs, temperatures=(1.0, 4.0, 1e4), batch_size=2)
    per_image = model.roi_heads.batch_size_per_image
    assert 0 < stats["proposals"] <= 3 * per_image and 0 < stats["foreground"] < 1
    k1 = model.roi_heads.num_classes + 1
    assert stats["max_entropy"] == pytest.approx(math.log(k1))
    by_t = stats["by_temperature"]
    entropies = [by_t[t]["entropy"] for t in (1.0, 4.0, 1e4)]
    assert entropies == sorted(entropies) and entropies[-1] <= math.log(k1) + 1e-6
    # at a huge temperature the targets are uniform: 1 / (K + 1) on every class
    assert entropies[-1] == pytest.approx(math.log(k1), abs=1e-4)
    assert by_t[1e4]["label_mass"] == pytest.approx(1 / k1, abs=1e-4)
    assert by_t[1e4]["off_top_mass"] == pytest.approx(1 - 1 / k1, abs=1e-4)
    for s in by_t.values():
        assert 0 <= s["label_mass"] <= 1 - s["off_top_mass"] + 1e-6  # the label's p <= max p


def test_only_rcnn_teachers(rcnn):
    cfg = get_tiny_cfg("retinanet")
    with pytest.raises(ValueError, match="need an R-CNN, not RetinaNet"):
        rcnn_soft_target_stats(build_model(cfg).eval(), [])
