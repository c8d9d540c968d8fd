"""The distillation meta-architecture: a student trained with a frozen teacher's guidance."""

import logging
from typing import Dict, List

import torch
import torch.nn as nn
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_model

from ..losses import build_distill_losses
from .teacher import DISTILL_META_ARCH, STUDENT_PREFIX, build_teacher

__all__ = ["DistillationDetector"]

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class DistillationDetector(nn.Module):
    """
    Wraps a student detector (any meta-architecture) and a frozen teacher.

    Training: the teacher's ``preprocess_image`` + ``backbone`` run under ``torch.no_grad()``;
    the student runs its own ``forward`` (its task losses) while a forward hook on its backbone
    captures its features; the distillation losses compare the two. Evaluation: exactly the
    student's ``forward``.

    The teacher is deliberately not a registered submodule: it stays out of ``parameters()``
    (so out of the optimizer and DDP), out of ``state_dict()`` (so out of checkpoints) and
    unaffected by ``.train()``. The checkpoint holds ``student.*`` and ``losses.*`` (e.g. the
    Teacher Share Module), and a plain detectron2 checkpoint of the student loads into it too.
    """

    @configurable
    def __init__(
        self,
        *,
        student: nn.Module,
        teacher: nn.Module,
        in_features: List[str],
        losses: nn.ModuleDict,
    ):
        """
        Args:
            student: a detectron2 detector with a ``backbone`` returning ``Dict[str, Tensor]``.
            teacher: a frozen detector with ``preprocess_image`` and ``backbone``.
            in_features: the levels passed to the losses, fine to coarse.
            losses: distillation losses (see ``DISTILL_LOSS_REGISTRY``).
        """
        super().__init__()
        self.student = student
        self._teacher = (teacher,)  # a tuple hides it from nn.Module's bookkeeping
        self.in_features = list(in_features)
        self.losses = losses
        self._student_features = None
        student.backbone.register_forward_hook(self._capture_student_features)
        self._register_load_state_dict_pre_hook(self._accept_plain_student_checkpoint)

    @classmethod
    def from_config(cls, cfg):
        d = cfg.MODEL.DISTILL
        student_cfg = cfg.clone()
        student_cfg.defrost()
        student_cfg.MODEL.META_ARCHITECTURE = d.STUDENT_META_ARCHITECTURE
        if d.STUDENT_META_ARCHITECTURE == DISTILL_META_ARCH:
            raise ValueError("MODEL.DISTILL.STUDENT_META_ARCHITECTURE cannot be itself")
        student = build_model(student_cfg)
        teacher = build_teacher(
            d.TEACHER.CONFIG_FILE, d.TEACHER.WEIGHTS, d.TEACHER.OPTS, cfg.MODEL.DEVICE
        )
        student_shapes = student.backbone.output_shape()
        teacher_shapes = teacher.backbone.output_shape()
        in_features = list(d.IN_FEATURES) or sorted(
            student_shapes, key=lambda f: student_shapes[f].stride
        )
        for name, shapes in (("student", student_shapes), ("teacher", teacher_shapes)):
            missing = [f for f in in_features if f not in shapes]
            if missing:
                raise ValueError(
                    f"MODEL.DISTILL.IN_FEATURES names {missing}, which the {name}'s backbone does "
                    f"not produce (it has {list(shapes)}). Use levels both backbones output."
                )
        losses = build_distill_losses(
            cfg,
            {f: student_shapes[f] for f in in_features},
            {f: teacher_shapes[f] for f in in_features},
        )
        return {
            "student": student,
            "teacher": teacher,
            "in_features": in_features,
            "losses": losses,
        }

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    @property
    def device(self):
        return self.student.device

    def _capture_student_features(self, module, inputs, output):
        if self.training:
            self._student_features = output

    @staticmethod
    def _accept_plain_student_checkpoint(state_dict, prefix, *args):
        # A detectron2 checkpoint of the student alone (e.g. to initialise it) has no
        # "student." prefix: give it one, so the usual checkpointer loads it.
        ours = (prefix + STUDENT_PREFIX, prefix + "losses.")
        if state_dict and not any(k.startswith(ours) for k in state_dict):
            for k in list(state_dict):
                if k.startswith(prefix):
                    state_dict[prefix + STUDENT_PREFIX + k[len(prefix) :]] = state_dict.pop(k)

    @torch.no_grad()
    def teacher_features(self, batched_inputs) -> Dict[str, torch.Tensor]:
        """The teacher's backbone features (N x C x H x W per level in ``in_features``)."""
        teacher = self.teacher
        images = teacher.preprocess_image(batched_inputs)
        features = teacher.backbone(images.tensor)
        return {f: features[f] for f in self.in_features}

    def forward(self, batched_inputs):
        """
        Args:
            batched_inputs: a list of dicts in detectron2's model input format.

        Returns:
            Training: dict of scalar losses, the student's own and the distillation terms.
            Evaluation: the student's outputs, unchanged.
        """
        if not self.training:
            return self.student(batched_inputs)
        teacher_features = self.teacher_features(batched_inputs)
        losses = self.student(batched_inputs)
        captured, self._student_features = self._student_features, None
        student_features = {f: captured[f] for f in self.in_features}
        for loss in self.losses.values():
            terms = loss(student_features, teacher_features)
            clash = set(terms) & set(losses)
            if clash:
                raise RuntimeError(f"Loss names {sorted(clash)} produced twice")
            losses.update(terms)
        return losses
