"""Models: the distillation meta-architecture, guides, the auto-encoder stage, yaml FCOS."""

from . import fcos  # noqa: F401  (registers "FCOS" in META_ARCH_REGISTRY)
from .autoencoder import TeacherAutoEncoder
from .distiller import DistillationDetector, average_over_guides, sample_kept_guides
from .guide import Guide, build_frozen_detector, build_guide

__all__ = [
    "DistillationDetector",
    "TeacherAutoEncoder",
    "average_over_guides",
    "Guide",
    "build_frozen_detector",
    "build_guide",
    "sample_kept_guides",
]
