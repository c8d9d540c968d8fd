"""The yaml FCOS builder (shared_kd.modeling.fcos): registration, config keys, train/eval, fit."""

import importlib.util
import math

import pytest
import torch
from detectron2.modeling import META_ARCH_REGISTRY, build_model
from detectron2.modeling.meta_arch.fcos import FCOS, FCOSHead
from detectron2.structures import Instances
from detectron2.utils.events import EventStorage
from torch import nn

import shared_kd  # noqa: F401  (registers the datasets)
import shared_kd.modeling  # noqa: F401  (registers "FCOS")
from shared_kd.modeling import fcos as fcos_module
from shared_kd.utils.testing import get_tiny_cfg, random_batch

LOSS_NAMES = {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}

# Note: the tiny FPN has 32 channels, so GN has one channel per group, and p7 is 1x1 on a
# 64x64 image; GroupNorm then refuses a batch of one image. All forwards here use two images.


def _fcos_cfg(fpn_channels=32, num_convs=1, norm="GN"):
    cfg = get_tiny_cfg("fcos", num_classes=3, fpn_channels=fpn_channels)
    cfg.MODEL.FCOS.NUM_CONVS = num_convs
    cfg.MODEL.FCOS.NORM = norm
    return cfg


def _build(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg)


def _towers(head):
    return {"cls": head.cls_subnet, "bbox": head.bbox_subnet}


def test_fcos_is_registered_and_built_by_build_model():
    assert "FCOS" in META_ARCH_REGISTRY
    assert META_ARCH_REGISTRY.get("FCOS") is fcos_module.build_fcos
    model = _build(_fcos_cfg())
    assert isinstance(model, FCOS) and isinstance(model.head, FCOSHead)
    assert model.device == torch.device("cpu")
    assert model.training
    assert model.input_format == "BGR"


def test_registration_is_skipped_when_fcos_exists():
    # Run a second copy of the module: "FCOS" is taken, so it must neither raise (fvcore asserts
    # on duplicates) nor replace the registered builder.
    spec = importlib.util.spec_from_file_location("_fcos_copy", fcos_module.__file__)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert META_ARCH_REGISTRY.get("FCOS") is fcos_module.build_fcos


def test_training_forward_and_backward():
    model = _build(_fcos_cfg())
    with EventStorage():
        losses = model(random_batch(2))
    assert set(losses) == LOSS_NAMES
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    sum(losses.values()).backward()
    head = model.head
    for name in ("cls_score", "bbox_pred", "ctrness"):
        grad = getattr(head, name).weight.grad
        assert grad is not None and grad.abs().sum() > 0, name
    for tower_name, tower in _towers(head).items():
        for p in tower.parameters():  # conv and GroupNorm weights and biases
            assert p.grad is not None and p.grad.abs().sum() > 0, tower_name
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def test_eval_forward_returns_instances():
    cfg = _fcos_cfg()
    cfg.MODEL.FCOS.SCORE_THRESH_TEST = 0.0  # the untrained head scores below the default 0.2
    cfg.TEST.DETECTIONS_PER_IMAGE = 5
    model = _build(cfg)
    model.eval()
    batch = [{"image": b["image"], "height": 64, "width": 64} for b in random_batch(2)]
    with EventStorage(), torch.no_grad():
        out = model(batch)
    assert len(out) == 2
    assert sum(len(result["instances"]) for result in out) > 0
    for result in out:
        inst = result["instances"]
        assert isinstance(inst, Instances) and inst.image_size == (64, 64)
        # Capped by TEST.DETECTIONS_PER_IMAGE, then empty boxes are dropped (an untrained head
        # regresses near-zero distances, i.e. near-empty boxes).
        assert len(inst) <= 5
        boxes = inst.pred_boxes.tensor
        assert torch.isfinite(boxes).all() and (boxes >= 0).all() and (boxes <= 64).all()
        assert ((inst.pred_classes >= 0) & (inst.pred_classes < 3)).all()
        assert ((inst.scores >= 0) & (inst.scores <= 1)).all()


def test_yaml_keys_take_effect():
    cfg = _fcos_cfg(num_convs=2)
    f = cfg.MODEL.FCOS
    f.NUM_CLASSES = 5
    f.IN_FEATURES = ["p3", "p4", "p5"]
    f.PRIOR_PROB = 0.05
    f.CENTER_SAMPLING_RADIUS = 2.0
    f.FOCAL_LOSS_ALPHA = 0.3
    f.FOCAL_LOSS_GAMMA = 1.5
    f.SCORE_THRESH_TEST = 0.33
    f.TOPK_CANDIDATES_TEST = 77
    f.NMS_THRESH_TEST = 0.45
    cfg.TEST.DETECTIONS_PER_IMAGE = 11
    cfg.MODEL.PIXEL_STD = [57.375, 57.12, 58.395]
    model = _build(cfg)
    head = model.head
    for tower in _towers(head).values():
        assert sum(isinstance(m, nn.Conv2d) for m in tower) == 2
        assert sum(isinstance(m, nn.GroupNorm) for m in tower) == 2
    assert head.cls_score.out_channels == 5 and model.num_classes == 5
    assert head.bbox_pred.out_channels == 4 and head.ctrness.out_channels == 1
    assert torch.allclose(head.cls_score.bias, torch.full((5,), -math.log(0.95 / 0.05)))
    assert model.head_in_features == ["p3", "p4", "p5"]
    assert model.anchor_generator.strides == [8, 16, 32]
    assert model.center_sampling_radius == 2.0
    assert (model.focal_loss_alpha, model.focal_loss_gamma) == (0.3, 1.5)
    assert model.test_score_thresh == 0.33
    assert model.test_topk_candidates == 77
    assert model.test_nms_thresh == 0.45
    assert model.max_detections_per_image == 11
    assert torch.allclose(model.pixel_std.flatten(), torch.tensor([57.375, 57.12, 58.395]))


def test_gn_head_has_the_lazyconfig_layout():
    # [Conv2d, GroupNorm(32), ReLU] per conv, as RetinaNetHead builds with norm="GN": the same
    # state_dict keys as detectron2's LazyConfig FCOS.
    head = _build(_fcos_cfg(num_convs=2)).head
    for tower in _towers(head).values():
        assert [type(m) for m in tower] == [nn.Conv2d, nn.GroupNorm, nn.ReLU] * 2
        assert all(m.num_groups == 32 for m in tower if isinstance(m, nn.GroupNorm))
    keys = set(head.state_dict())
    assert {"cls_subnet.1.weight", "cls_subnet.4.bias", "bbox_subnet.3.weight"} <= keys


def test_no_norm():
    head = _build(_fcos_cfg(num_convs=2, norm="")).head
    for tower in _towers(head).values():
        assert [type(m) for m in tower] == [nn.Conv2d, nn.ReLU] * 2


def test_head_width_comes_from_the_backbone():
    model = _build(_fcos_cfg(fpn_channels=64))
    assert model.backbone.output_shape()["p3"].channels == 64
    for tower in _towers(model.head).values():
        convs = [m for m in tower if isinstance(m, nn.Conv2d)]
        assert [(c.in_channels, c.out_channels) for c in convs] == [(64, 64)]
        assert [m.num_channels for m in tower if isinstance(m, nn.GroupNorm)] == [64]
    assert model.head.cls_score.in_channels == 64 and model.head.ctrness.in_channels == 64


def test_bad_in_features_are_rejected():
    cfg = _fcos_cfg()
    cfg.MODEL.FCOS.IN_FEATURES = ["p2", "p3"]  # the RetinaNet backbone has p3-p7
    with pytest.raises(ValueError, match="IN_FEATURES"):
        build_model(cfg)


@pytest.mark.slow
def test_overfits_one_batch():
    model = _build(_fcos_cfg())
    batch = random_batch(2, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def raw_loss(losses):
        # FCOS divides its losses by an EMA of the number of positive anchors that starts at 300
        # and drifts toward the true count, so the returned losses grow by themselves over the
        # first steps. Undo it: the EMA value used is left in model.loss_normalizer.
        return sum(losses.values()).item() * model.loss_normalizer

    with EventStorage():
        losses = model(batch)
        first = raw_loss(losses)
        for _ in range(15):
            total = sum(losses.values())
            assert torch.isfinite(total)
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            losses = model(batch)
        last = raw_loss(losses)
    assert last < 0.7 * first, (first, last)


def test_fcos_backbone_computes_p6_from_p5():
    """build_fcos_resnet_fpn_backbone: P6/P7 from P5 (FPN width), as the FCOS paper does."""
    model = _build(_fcos_cfg(fpn_channels=64))
    assert model.backbone.top_block.p6.in_channels == 64
    assert model.backbone.top_block.in_feature == "p5"
    assert list(model.backbone.output_shape()) == ["p3", "p4", "p5", "p6", "p7"]
