"""
Names that the distiller, its checkpoints and the tools reading them share.

A module of its own, importing nothing: :mod:`shared_kd.checkpoint` needs them, and the
``modeling`` package imports the checkpoint module.
"""

__all__ = ["DISTILL_META_ARCH", "STUDENT_PREFIX"]

# The distillation meta-architecture's name in META_ARCH_REGISTRY (MODEL.META_ARCHITECTURE).
DISTILL_META_ARCH = "DistillationDetector"
# The prefix of the student's keys in a distillation model's state dict (and checkpoints).
STUDENT_PREFIX = "student."
