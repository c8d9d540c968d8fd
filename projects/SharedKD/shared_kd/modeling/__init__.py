"""Models: the distillation meta-architecture, guides, the auto-encoder stage, yaml FCOS."""

from . import fcos  # noqa: F401  (registers "FCOS" in META_ARCH_REGISTRY)
from .alignment import align_pair
from .autoencoder import TeacherAutoEncoder
from .distiller import DistillationDetector, average_over_guides, sample_kept_guides
from .levels import resolve_in_features
from .outputs import DetectorOutputs
from .teacher import build_frozen_detector, build_teacher, load_guide_config

__all__ = [
    "align_pair",
    "DetectorOutputs",
    "DistillationDetector",
    "TeacherAutoEncoder",
    "average_over_guides",
    "build_frozen_detector",
    "build_teacher",
    "load_guide_config",
    "resolve_in_features",
    "sample_kept_guides",
]
