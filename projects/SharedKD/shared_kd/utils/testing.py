"""
Tiny detectors and random batches for fast CPU tests (in the spirit of
``detectron2.utils.testing``).

Every model here is a from-scratch ResNet-18 FPN with GroupNorm, a narrow FPN and few RoIs, so
that a forward + backward pass on a couple of 64x64 images takes well under a second on 2 cores.
"""

import torch
from detectron2.config import get_cfg
from detectron2.structures import BitMasks, Boxes, Instances

from ..config import add_sharedkd_config

__all__ = ["TINY_FAMILIES", "get_tiny_cfg", "random_batch"]

TINY_FAMILIES = ("faster_rcnn", "mask_rcnn", "retinanet", "fcos")


def _tiny_backbone(cfg, fpn_channels, in_features):
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "GN"
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.RESNETS.OUT_FEATURES = list(in_features)
    cfg.MODEL.FPN.IN_FEATURES = list(in_features)
    cfg.MODEL.FPN.OUT_CHANNELS = fpn_channels
    cfg.MODEL.FPN.NORM = "GN"


def get_tiny_cfg(family="faster_rcnn", num_classes=3, fpn_channels=32):
    """
    A config for a tiny detector of one family, on CPU, with SharedKD's keys added.

    Args:
        family (str): one of :data:`TINY_FAMILIES`.
        num_classes (int): number of foreground classes.
        fpn_channels (int): FPN width (``MODEL.FPN.OUT_CHANNELS``).

    Returns:
        CfgNode: an unfrozen config; tests may change it further.
    """
    if family not in TINY_FAMILIES:
        raise ValueError(f"Unknown tiny family {family!r}; expected one of {TINY_FAMILIES}")
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    cfg.INPUT.MIN_SIZE_TEST = 64
    cfg.INPUT.MAX_SIZE_TEST = 64
    cfg.SEED = 0
    # Every part of Shared-KD on, so that tests exercise each code path: the defaults leave the
    # cross-layer term off and the TSM's gates fixed (docs/METHODS.md).
    cfg.MODEL.DISTILL.SHARED_KD.CROSS = True
    cfg.MODEL.DISTILL.SHARED_KD.TSM_LEARN_GATES = True
    # Random models stepped at a fixed learning rate without warm-up: a moderate weight.
    cfg.MODEL.DISTILL.SHARED_KD.ALPHA = 2.0
    if family in ("faster_rcnn", "mask_rcnn"):
        _tiny_backbone(cfg, fpn_channels, ["res2", "res3", "res4", "res5"])
        cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
        cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
        cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16], [32], [64], [128], [256]]
        cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
        cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 200
        cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 50
        cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 100
        cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 20
        cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 64
        cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
        cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
        cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 16
        cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
        cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 1
        cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
        cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
        cfg.MODEL.MASK_ON = family == "mask_rcnn"
        cfg.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHead"
        cfg.MODEL.ROI_MASK_HEAD.NUM_CONV = 1
        cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 32
        cfg.MODEL.ROI_MASK_HEAD.NORM = "GN"
    else:  # dense detectors on p3-p7
        _tiny_backbone(cfg, fpn_channels, ["res3", "res4", "res5"])
        cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16], [32], [64], [128], [256]]
        levels = ["p3", "p4", "p5", "p6", "p7"]
        if family == "retinanet":
            cfg.MODEL.META_ARCHITECTURE = "RetinaNet"
            cfg.MODEL.BACKBONE.NAME = "build_retinanet_resnet_fpn_backbone"
            cfg.MODEL.RETINANET.IN_FEATURES = levels
            cfg.MODEL.RETINANET.NUM_CLASSES = num_classes
            cfg.MODEL.RETINANET.NUM_CONVS = 1
            # v0.6 RetinaNetHead cannot build GN (it probes get_norm(norm, 1)); a 1-conv head
            # trains from scratch without it.
            cfg.MODEL.RETINANET.NORM = ""
            cfg.MODEL.RETINANET.TOPK_CANDIDATES_TEST = 100
        else:
            cfg.MODEL.META_ARCHITECTURE = "FCOS"  # shared_kd.modeling.fcos's yaml builder
            cfg.MODEL.BACKBONE.NAME = "build_fcos_resnet_fpn_backbone"
            cfg.MODEL.FCOS.IN_FEATURES = levels
            cfg.MODEL.FCOS.NUM_CLASSES = num_classes
            cfg.MODEL.FCOS.NUM_CONVS = 1
            cfg.MODEL.FCOS.TOPK_CANDIDATES_TEST = 100
    return cfg


def random_batch(num_images=2, size=64, num_classes=3, with_masks=False, seed=0):
    """
    A detectron2 training batch of random images with 1-3 random boxes each.

    Args:
        num_images (int): batch size N.
        size (int): images are ``3 x size x size`` uint8-valued float tensors.
        num_classes (int): ground-truth classes are drawn from ``[0, num_classes)``.
        with_masks (bool): add box-shaped ``gt_masks`` (BitMasks, ``K x size x size``).
        seed (int): the same seed gives the same batch.

    Returns:
        list[dict]: each with "image", "height", "width" and "instances".
    """
    g = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(num_images):
        k = int(torch.randint(1, 4, (1,), generator=g))
        xy0 = torch.rand(k, 2, generator=g) * size * 0.6
        wh = 8 + torch.rand(k, 2, generator=g) * size * 0.35
        boxes = torch.cat([xy0, (xy0 + wh).clamp(max=size - 1)], dim=1)
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.randint(0, num_classes, (k,), generator=g)
        if with_masks:
            masks = torch.zeros(k, size, size, dtype=torch.bool)
            for i, (x0, y0, x1, y1) in enumerate(boxes.round().long().tolist()):
                masks[i, y0:y1, x0:x1] = True
            inst.gt_masks = BitMasks(masks)
        image = torch.randint(0, 256, (3, size, size), generator=g).float()
        batch.append({"image": image, "height": size, "width": size, "instances": inst})
    return batch
