"""
Names that the distiller, its checkpoints, the output folder and the tools reading them share:
one home for each, in a module that imports nothing.
"""

__all__ = ["AUTOENCODER_META_ARCH", "DISTILL_META_ARCH", "STUDENT_PREFIX"]

# The distillation meta-architecture's name in META_ARCH_REGISTRY (MODEL.META_ARCHITECTURE).
DISTILL_META_ARCH = "DistillationDetector"
# The teacher auto-encoder's (M-KD inherit/explore, stage A): its class name, as registered.
AUTOENCODER_META_ARCH = "TeacherAutoEncoder"
# The prefix of the student's keys in a distillation model's state dict (and checkpoints).
STUDENT_PREFIX = "student."
