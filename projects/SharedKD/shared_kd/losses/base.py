"""
:class:`DistillLoss`, the base of every distillation loss: what a loss reads, whom it serves, its
config node. ``docs/ADDING_A_LOSS.md`` walks through writing one.
"""

from typing import TYPE_CHECKING, Any, Dict

import torch
import torch.nn as nn
from detectron2.utils.events import get_event_storage

if TYPE_CHECKING:  # a runtime import would load shared_kd.modeling, which imports this package
    from ..modeling.outputs import DetectorOutputs

__all__ = ["DistillLoss"]


class DistillLoss(nn.Module):
    """
    A distillation loss, registered in :data:`~shared_kd.losses.DISTILL_LOSS_REGISTRY` under its
    class name, which ``MODEL.DISTILL.LOSSES`` lists.

    A subclass declares:

    - what it reads: FPN features always; ``NEEDS_LOGITS = True`` to also get the classification
      logits of locations shared by the student and the guide (``DetectorOutputs.class_logits``);
      ``needs_guide`` False (a class attribute or a property) when it never reads the guide;
    - whom it serves: ``PER_GUIDE = True`` (one instance per guide, the teacher and each teaching
      assistant, each term averaged over the guides) or False (one instance, the teacher's);
    - its config: :meth:`add_config` adds its own ``MODEL.DISTILL.<NODE>``, a one-line comment
      above every key; ``from_config`` reads it;
    - its computation: ``forward(student, guide)``.

    ``__init__`` is keyword-only and ``@configurable``, as detectron2's modules are.
    """

    # Record the classification logits of the student and the guides for this loss.
    NEEDS_LOGITS: bool = False
    # One instance per guide (teacher and assistants); False: one instance, for the teacher.
    PER_GUIDE: bool = True
    # Which guide an instance serves (0: the teacher, i: the i-th assistant); set by
    # build_distill_losses, for the names of what the instance logs.
    guide_index: int = 0

    @property
    def needs_guide(self) -> bool:
        """False when this instance never reads the guide: the guide's forward is then skipped."""
        return True

    @classmethod
    def add_config(cls, cfg) -> None:
        """
        Add this loss's node ``MODEL.DISTILL.<NODE>`` (its keys and defaults) to ``cfg``, in
        place; :func:`shared_kd.config.add_sharedkd_config` calls it for every registered loss.
        Write every key as ``cfg.MODEL.DISTILL.<NODE>.<KEY> = default`` below a one-line
        ``#`` comment (meaning, range, the paper's symbol): ``tools/config_reference.py`` turns
        those comments into docs/CONFIG.md. A loss without keys keeps this default (none).
        """

    @classmethod
    def from_config(cls, cfg, student_shapes, guide_shapes, guide=None) -> Dict[str, Any]:
        """
        The keyword arguments of ``__init__``.

        Args:
            cfg: the whole config (read only this loss's node and what it needs besides, e.g.
                ``SOLVER.MAX_ITER``).
            student_shapes: ``Dict[str, ShapeSpec]``, the student's distilled levels
                (``MODEL.DISTILL.IN_FEATURES``), fine to coarse.
            guide_shapes: the same levels of the guide this instance serves.
            guide: that guide, a frozen detector (e.g. to check something built for it); None
                where the caller has none (tests).
        """
        raise NotImplementedError(f"{cls.__name__} must define from_config")

    def forward(
        self, student: "DetectorOutputs", guide: "DetectorOutputs"
    ) -> Dict[str, torch.Tensor]:
        """
        Args:
            student: the student's outputs of this step (features with gradient).
            guide: the guide's outputs of this step (no gradient); None if ``needs_guide`` is
                False.

        Returns:
            ``loss_*`` name -> scalar, already weighted: the trainer adds them to the student's
            own losses. The names must be the same for every guide (they are averaged).
        """
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    @staticmethod
    def check_weight(key: str, value: float) -> None:
        """
        Raise ValueError unless the loss weight ``MODEL.DISTILL.<key>`` is >= 0.

        Args:
            key: the key below ``MODEL.DISTILL``, e.g. ``"KD.WEIGHT"``.
            value: its value.
        """
        if value < 0:
            raise ValueError(f"MODEL.DISTILL.{key} must be >= 0, got {value}")

    def put_scalar(self, name: str, value) -> None:
        """
        Log a diagnostic of this instance: ``distill/<name>`` for the teacher's,
        ``distill/assistant<i>/<name>`` for the i-th teaching assistant's (unsmoothed).
        """
        prefix = "distill/" if self.guide_index == 0 else f"distill/assistant{self.guide_index}/"
        get_event_storage().put_scalar(prefix + name, value, smoothing_hint=False)
