"""
shared_kd.modeling.families: every entry of the family table through every column, on its tiny
detector. A new family adds its entry to FAMILIES, its tiny config to get_tiny_cfg and a line to
FAMILY_OF_TINY below; these tests then cover it.
"""

import pytest
import torch
import torch.nn as nn
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from shared_kd.data.register import model_num_classes
from shared_kd.deploy import output_names, trace_detector
from shared_kd.modeling.families import FAMILIES, build_logit_tap, family_of, num_classes_key
from shared_kd.utils.testing import TINY_FAMILIES, get_tiny_cfg, random_batch

# tiny detector (shared_kd.utils.testing) -> the family it belongs to
FAMILY_OF_TINY = {
    "faster_rcnn": "R-CNN",
    "mask_rcnn": "R-CNN",
    "retinanet": "dense",
    "fcos": "dense",
}


def test_every_family_has_a_tiny_detector():
    assert set(FAMILY_OF_TINY) == set(TINY_FAMILIES)
    assert {f.name for f in FAMILIES} == set(FAMILY_OF_TINY.values())


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def tiny(request):
    # 64 FPN channels: the GN heads keep 2 channels per group on a 1 x 1 level
    cfg = get_tiny_cfg(request.param, num_classes=3, fpn_channels=64)
    torch.manual_seed(0)
    return request.param, cfg, build_model(cfg)


def test_family_of_the_model(tiny):
    name, _, model = tiny
    assert family_of(model).name == FAMILY_OF_TINY[name]


def test_class_check_column(tiny):
    _, cfg, _ = tiny
    key = num_classes_key(cfg.MODEL.META_ARCHITECTURE)
    assert key is not None and key.endswith(".NUM_CLASSES")
    assert model_num_classes(cfg) == (key, 3)
    # a distillation config answers for its student
    distill = cfg.clone()
    distill.MODEL.DISTILL.STUDENT_META_ARCHITECTURE = cfg.MODEL.META_ARCHITECTURE
    distill.MODEL.META_ARCHITECTURE = "DistillationDetector"
    assert model_num_classes(distill) == (key, 3)


def test_logit_tap_column(tiny):
    _, cfg, model = tiny
    tap = build_logit_tap(model)
    model.train()
    with EventStorage():
        model(random_batch(2, size=64, num_classes=3, with_masks=cfg.MODEL.MASK_ON))
    logits = tap.pop_student_logits()
    # one row per scored location: K + 1 columns under softmax (background), K under sigmoid
    assert logits.dim() == 2 and logits.shape[0] > 0
    assert logits.shape[1] == (4 if tap.activation == "softmax" else 3)


@pytest.mark.slow
def test_export_column(tiny):
    _, _, model = tiny
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    traced, adapter = trace_detector(model, image)
    outputs = traced(*adapter.flattened_inputs)
    assert len(outputs) == len(output_names(adapter))
    assert output_names(adapter)[0] == "pred_boxes" and outputs[0].shape[-1] == 4


def test_a_model_of_no_family_is_named():
    with pytest.raises(ValueError, match=r"Export supports GeneralizedRCNN .* not Linear"):
        family_of(nn.Linear(1, 1), "Export")
    assert num_classes_key("SemanticSegmentor") is None
    assert model_num_classes(get_tiny_cfg("faster_rcnn").clone()) != (None, None)
