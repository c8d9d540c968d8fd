"""Distillation losses, each registered in :data:`DISTILL_LOSS_REGISTRY`."""

from .build import DISTILL_LOSS_REGISTRY, build_distill_losses
from .shared_kd import SharedKDLoss, TeacherShareModule, cross_layer_pairs

__all__ = [
    "DISTILL_LOSS_REGISTRY",
    "build_distill_losses",
    "SharedKDLoss",
    "TeacherShareModule",
    "cross_layer_pairs",
]
