"""Helpers of the loss tests: small feature maps, pooling written out, configs with losses."""

import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec

from shared_kd.config import add_sharedkd_config
from shared_kd.layers.outputs import DetectorOutputs

# The shapes of feature_maps(): the teacher wider on p2; a teaching assistant like the student.
STUDENT_SHAPES = {"p2": ShapeSpec(channels=2, stride=4), "p3": ShapeSpec(channels=2, stride=8)}
TEACHER_SHAPES = {"p2": ShapeSpec(channels=3, stride=4), "p3": ShapeSpec(channels=2, stride=8)}
TA_SHAPES = {"p2": ShapeSpec(channels=2, stride=4), "p3": ShapeSpec(channels=2, stride=8)}


def run_loss(loss, student, guide):
    """Call ``loss`` on feature dicts, each wrapped in a fresh DetectorOutputs."""
    return loss(DetectorOutputs(student), DetectorOutputs(guide))


def pool2(x):
    """2x2 block means of N x C x H x W (H, W even), written out with reshape."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))


def feature_maps(batch=2):
    """Random student (2 channels) and teacher maps (3 channels on p2, at twice the size)."""
    s = {"p2": torch.randn(batch, 2, 4, 4), "p3": torch.randn(batch, 2, 2, 2)}
    t = {"p2": torch.randn(batch, 3, 8, 8), "p3": torch.randn(batch, 2, 2, 2)}
    return s, t


def distill_cfg(losses):
    """detectron2's default config with SharedKD's keys and ``MODEL.DISTILL.LOSSES``."""
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    cfg.MODEL.DISTILL.LOSSES = list(losses)
    return cfg
