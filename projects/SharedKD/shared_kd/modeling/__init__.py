"""Models: the distillation meta-architecture, guides, the auto-encoder stage, yaml FCOS."""

from . import fcos  # noqa: F401  (registers "FCOS" in META_ARCH_REGISTRY)
from .alignment import align_pair
from .autoencoder import TeacherAutoEncoder
from .distiller import DistillationDetector, average_over_guides, sample_kept_guides
from .guide import Guide, build_frozen_detector, build_guide
from .levels import resolve_in_features
from .outputs import DetectorOutputs

__all__ = [
    "align_pair",
    "DetectorOutputs",
    "DistillationDetector",
    "TeacherAutoEncoder",
    "average_over_guides",
    "Guide",
    "build_frozen_detector",
    "build_guide",
    "resolve_in_features",
    "sample_kept_guides",
]
