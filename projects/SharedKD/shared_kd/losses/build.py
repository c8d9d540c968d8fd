"""The registry of distillation losses and the function that builds the configured ones."""

from typing import Dict

import torch.nn as nn
from detectron2.layers import ShapeSpec
from detectron2.utils.registry import Registry

__all__ = ["DISTILL_LOSS_REGISTRY", "build_distill_losses"]

DISTILL_LOSS_REGISTRY = Registry("DISTILL_LOSS")
DISTILL_LOSS_REGISTRY.__doc__ = """
Registry for distillation losses (``MODEL.DISTILL.LOSSES`` names them).

A registered class is an ``nn.Module`` built as ``cls(cfg, student_shapes, teacher_shapes)``
(through ``@configurable``'s ``from_config``), where the shapes are
``Dict[str, ShapeSpec]`` of the levels in ``MODEL.DISTILL.IN_FEATURES``, fine to coarse.
It is called as

    loss(student_features, teacher_features) -> Dict[str, Tensor]

with ``Dict[str, Tensor]`` features (N x C x H x W per level, teacher ones without gradient) and
returns scalar, already weighted ``loss_*`` terms that the trainer adds to the task loss.
"""


def build_distill_losses(
    cfg, student_shapes: Dict[str, ShapeSpec], teacher_shapes: Dict[str, ShapeSpec]
) -> nn.ModuleDict:
    """
    Build every loss named in ``cfg.MODEL.DISTILL.LOSSES``.

    Returns:
        nn.ModuleDict: loss name -> module, in the configured order.
    """
    names = list(cfg.MODEL.DISTILL.LOSSES)
    if len(set(names)) != len(names):
        raise ValueError(f"MODEL.DISTILL.LOSSES lists a loss twice: {names}")
    losses = nn.ModuleDict()
    for name in names:
        if name not in DISTILL_LOSS_REGISTRY:
            raise KeyError(
                f"Unknown distillation loss {name!r} in MODEL.DISTILL.LOSSES; registered: "
                f"{sorted(k for k, _ in DISTILL_LOSS_REGISTRY)}"
            )
        losses[name] = DISTILL_LOSS_REGISTRY.get(name)(cfg, student_shapes, teacher_shapes)
    return losses
