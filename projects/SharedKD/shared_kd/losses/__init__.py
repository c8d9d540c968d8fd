"""
Distillation losses, each a :class:`DistillLoss` registered in :data:`DISTILL_LOSS_REGISTRY`.

Every module of this package is imported here, so a new file registers its losses with no list
to edit; each registered class is also importable from this package by its registry name.
"""

import importlib
import pkgutil

from .base import DistillLoss
from .build import (
    DISTILL_LOSS_REGISTRY,
    add_distill_loss_configs,
    build_distill_losses,
    build_distill_losses_from_options,
)
from .shared_kd import TeacherShareModule, cross_layer_pairs

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

# The registered losses by name (SharedKDLoss, FitNetsLoss, ...), a new file's included.
globals().update({name: cls for name, cls in DISTILL_LOSS_REGISTRY})

__all__ = [
    "DISTILL_LOSS_REGISTRY",
    "DistillLoss",
    "add_distill_loss_configs",
    "build_distill_losses",
    "build_distill_losses_from_options",
    "TeacherShareModule",
    "cross_layer_pairs",
] + sorted(name for name, _ in DISTILL_LOSS_REGISTRY)
