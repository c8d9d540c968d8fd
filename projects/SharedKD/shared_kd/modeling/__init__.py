"""Models: the distillation meta-architecture, the teacher loader, and the yaml FCOS builder."""

from . import fcos  # noqa: F401  (registers "FCOS" in META_ARCH_REGISTRY)
from .alignment import align_pair
from .distiller import DistillationDetector
from .teacher import StrictCheckpointer, TeacherLoadError, build_teacher, load_guide_config

__all__ = [
    "align_pair",
    "DistillationDetector",
    "StrictCheckpointer",
    "TeacherLoadError",
    "build_teacher",
    "load_guide_config",
]
