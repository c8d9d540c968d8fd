"""Distillation losses, each registered in :data:`DISTILL_LOSS_REGISTRY`."""

from .build import DISTILL_LOSS_REGISTRY, build_distill_losses
from .inherit_explore import InheritExploreLoss
from .mkd import AttentionTransferLoss, FSPLoss, SoftTargetKDLoss
from .peer_baselines import FitNetsLoss, PKDLoss
from .shared_kd import SharedKDLoss, TeacherShareModule, cross_layer_pairs

__all__ = [
    "DISTILL_LOSS_REGISTRY",
    "build_distill_losses",
    "AttentionTransferLoss",
    "FitNetsLoss",
    "FSPLoss",
    "InheritExploreLoss",
    "PKDLoss",
    "SharedKDLoss",
    "SoftTargetKDLoss",
    "TeacherShareModule",
    "cross_layer_pairs",
]
