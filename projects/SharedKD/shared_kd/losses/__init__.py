"""Distillation losses, each registered in :data:`DISTILL_LOSS_REGISTRY`."""

from .build import DISTILL_LOSS_REGISTRY, build_distill_losses
from .inherit_explore import InheritExploreLoss
from .mkd import AttentionTransferLoss, FSPLoss, SoftTargetKDLoss
from .shared_kd import SharedKDLoss, TeacherShareModule, cross_layer_pairs

__all__ = [
    "DISTILL_LOSS_REGISTRY",
    "build_distill_losses",
    "AttentionTransferLoss",
    "FSPLoss",
    "InheritExploreLoss",
    "SharedKDLoss",
    "SoftTargetKDLoss",
    "TeacherShareModule",
    "cross_layer_pairs",
]
