"""Models: the distillation meta-architecture, guides, the auto-encoder stage, yaml FCOS."""

from . import fcos  # noqa: F401  (registers "FCOS" in META_ARCH_REGISTRY)
from .alignment import align_pair
from .autoencoder import TeacherAutoEncoder
from .distiller import DistillationDetector, average_over_guides, sample_kept_guides
from .outputs import DetectorOutputs
from .teacher import build_teacher, load_guide_config

__all__ = [
    "align_pair",
    "DetectorOutputs",
    "DistillationDetector",
    "TeacherAutoEncoder",
    "average_over_guides",
    "build_teacher",
    "load_guide_config",
    "sample_kept_guides",
]
