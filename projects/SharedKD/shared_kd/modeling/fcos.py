"""
FCOS from yaml configs.

detectron2 ships FCOS (:class:`detectron2.modeling.meta_arch.fcos.FCOS`) only as a LazyConfig
model. Importing this module registers :func:`build_fcos` under the name ``"FCOS"`` in
``META_ARCH_REGISTRY``, so that ``MODEL.META_ARCHITECTURE: "FCOS"`` works with
``build_model(cfg)``. The head is configured by ``cfg.MODEL.FCOS`` (see
:func:`shared_kd.config.add_fcos_config`), the backbone by the usual ``MODEL.BACKBONE`` keys.
"""

import logging

from detectron2.layers import ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelP6P7
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from detectron2.modeling.meta_arch.fcos import FCOS, FCOSHead
from torch import nn

__all__ = ["build_fcos", "build_fcos_resnet_fpn_backbone"]

logger = logging.getLogger(__name__)


def build_fcos(cfg):
    """
    Build detectron2's FCOS (backbone + :class:`FCOSHead`) from a yaml config.

    Reads:

    * ``MODEL.BACKBONE.*`` and what the backbone builder reads (through ``build_backbone``);
      the head's input channels and strides come from ``backbone.output_shape()``.
    * ``MODEL.FCOS.IN_FEATURES``: backbone levels the head runs on, fine to coarse. They must all
      have the same number of channels (the head is shared across levels).
    * ``MODEL.FCOS.{NUM_CLASSES, NUM_CONVS, NORM, PRIOR_PROB}``: the head. Each tower has
      ``NUM_CONVS`` 3x3 convs as wide as the backbone levels.
    * ``MODEL.FCOS.{CENTER_SAMPLING_RADIUS, FOCAL_LOSS_ALPHA, FOCAL_LOSS_GAMMA}``: training.
    * ``MODEL.FCOS.{SCORE_THRESH_TEST, TOPK_CANDIDATES_TEST, NMS_THRESH_TEST}`` and
      ``TEST.DETECTIONS_PER_IMAGE``: inference.
    * ``MODEL.PIXEL_MEAN``, ``MODEL.PIXEL_STD``: input normalization.
    * ``INPUT.FORMAT``: stored as ``model.input_format`` only (used by
      ``DenseDetector.visualize_training``); FCOS itself does not take it, and it feeds the
      images to the backbone in whatever channel order they come in, like other meta-archs.

    ``VIS_PERIOD`` is not used: detectron2's FCOS has no training-visualization hook.
    ``MODEL.DEVICE`` is not used either: ``build_model`` moves the returned model there.

    Args:
        cfg (CfgNode): a config with SharedKD's keys (:func:`shared_kd.config.add_sharedkd_config`).

    Returns:
        FCOS: the model, on CPU, in training mode.
    """
    fcos = cfg.MODEL.FCOS
    backbone = build_backbone(cfg)
    in_features = list(fcos.IN_FEATURES)
    shapes = backbone.output_shape()
    missing = [f for f in in_features if f not in shapes]
    if not in_features or missing:
        raise ValueError(
            f"MODEL.FCOS.IN_FEATURES={in_features} must be a non-empty subset of the backbone's "
            f"outputs {sorted(shapes)}"
        )
    input_shape = [shapes[f] for f in in_features]
    channels = {s.channels for s in input_shape}
    if len(channels) != 1:
        raise ValueError(
            f"FCOS shares its head across levels, but MODEL.FCOS.IN_FEATURES={in_features} have "
            f"different channel counts {[s.channels for s in input_shape]}"
        )
    if fcos.NUM_CONVS < 1:
        raise ValueError(f"MODEL.FCOS.NUM_CONVS must be >= 1, got {fcos.NUM_CONVS}")

    head = _build_head(
        input_shape,
        num_classes=fcos.NUM_CLASSES,
        num_convs=fcos.NUM_CONVS,
        norm=fcos.NORM,
        prior_prob=fcos.PRIOR_PROB,
    )
    model = FCOS(
        backbone=backbone,
        head=head,
        head_in_features=in_features,
        num_classes=fcos.NUM_CLASSES,
        center_sampling_radius=fcos.CENTER_SAMPLING_RADIUS,
        focal_loss_alpha=fcos.FOCAL_LOSS_ALPHA,
        focal_loss_gamma=fcos.FOCAL_LOSS_GAMMA,
        test_score_thresh=fcos.SCORE_THRESH_TEST,
        test_topk_candidates=fcos.TOPK_CANDIDATES_TEST,
        test_nms_thresh=fcos.NMS_THRESH_TEST,
        max_detections_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
        pixel_mean=cfg.MODEL.PIXEL_MEAN,
        pixel_std=cfg.MODEL.PIXEL_STD,
    )
    model.input_format = cfg.INPUT.FORMAT
    return model


def _build_head(input_shape, *, num_classes, num_convs, norm, prior_prob):
    """An :class:`FCOSHead` with ``num_convs`` convs per tower, as wide as its input levels."""
    conv_dims = [input_shape[0].channels] * num_convs
    # detectron2 v0.6's RetinaNetHead (FCOSHead's parent) probes the norm with get_norm(norm, 1)
    # before building anything, and GroupNorm(32, 1) raises; a callable norm such as
    # ``lambda c: nn.GroupNorm(32, c)`` goes through the same probe and fails too. (Upstream main
    # probes with 32 channels instead.) So for "GN" we build the towers without norm and put a
    # detectron2 GN (get_norm("GN", c): 32 groups) after each conv. The result is the module
    # layout RetinaNetHead builds with norm="GN" ([Conv2d, GroupNorm, ReLU] per conv, so the
    # same state_dict keys as the LazyConfig FCOS), and the same initialization (the head only
    # re-initializes its convs; GroupNorm starts at weight 1, bias 0 either way).
    head = FCOSHead(
        input_shape=input_shape,
        conv_dims=conv_dims,
        num_classes=num_classes,
        norm="" if norm == "GN" else norm,
        prior_prob=prior_prob,
    )
    if norm == "GN":
        head.cls_subnet = _with_group_norm(head.cls_subnet)
        head.bbox_subnet = _with_group_norm(head.bbox_subnet)
    return head


def _with_group_norm(tower):
    """``tower`` (an ``nn.Sequential`` of Conv2d and ReLU) with a GroupNorm after each conv."""
    layers = []
    for layer in tower:
        layers.append(layer)
        if isinstance(layer, nn.Conv2d):
            layers.append(get_norm("GN", layer.out_channels))
    return nn.Sequential(*layers)


def build_fcos_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """
    ResNet-FPN with P6/P7 computed from P5, as in the FCOS paper and detectron2's LazyConfig
    FCOS (``build_retinanet_resnet_fpn_backbone`` computes them from res5, as RetinaNet does).
    Reads the same keys as the RetinaNet builder.
    """
    bottom_up = build_resnet_backbone(cfg, input_shape)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelP6P7(out_channels, out_channels, in_feature="p5"),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


# Register only if nobody else has: a future upstream detectron2 may register its own "FCOS".
# fvcore's public Registry.register() always uses ``obj.__name__`` ("build_fcos"), so the
# builder is registered under "FCOS" with _do_register, which keeps fvcore's duplicate check.
if "build_fcos_resnet_fpn_backbone" not in BACKBONE_REGISTRY:
    BACKBONE_REGISTRY.register(build_fcos_resnet_fpn_backbone)
if "FCOS" not in META_ARCH_REGISTRY:
    META_ARCH_REGISTRY._do_register("FCOS", build_fcos)
else:
    logger.info("META_ARCH_REGISTRY already has an 'FCOS'; shared_kd's build_fcos is not used.")
