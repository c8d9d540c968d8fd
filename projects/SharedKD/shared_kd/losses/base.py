"""
:class:`DistillLoss`, the base of every distillation loss: what a loss reads, whom it serves, its
config node. ``docs/ADDING_A_LOSS.md`` walks through writing one.
"""

import inspect
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn
from detectron2.config import CfgNode as CN
from detectron2.utils.events import get_event_storage

from ..layers.outputs import DetectorOutputs
from .feature_distance import DEFAULT_LOG_PERIOD

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
    - its config: :meth:`add_config` adds its own ``MODEL.DISTILL.<CONFIG_NODE>``, a one-line
      comment above every key, each key an option of the loss (its name in lower case);
    - how its arguments follow from the levels' shapes: :meth:`from_shapes`;
    - its computation: ``forward(student, guide)``.

    ``__init__`` is keyword-only and ``@configurable``, as detectron2's modules are. Its keyword
    defaults are the loss's one source of defaults: ``add_config`` writes them into the config
    node (:meth:`keyword_defaults`), so a loss built from ``MODEL.DISTILL`` (yaml) and one built
    from Python keywords (:meth:`from_options`, as a LazyConfig builds it) get the same values.
    """

    # Record the classification logits of the student and the guides for this loss.
    NEEDS_LOGITS: bool = False
    # One instance per guide (teacher and assistants); False: one instance, for the teacher.
    PER_GUIDE: bool = True
    # Which guide an instance serves (0: the teacher, i: the i-th assistant); set by
    # build_distill_losses, for the names of what the instance logs.
    guide_index: int = 0
    # The name of its config node under MODEL.DISTILL (e.g. "SHARED_KD"); None: no keys.
    CONFIG_NODE: Optional[str] = None
    # Every how many iterations the trainer writes scalars: diagnostics that cost a device sync
    # are computed only then (feature_distance.is_logging_iteration). Set by the trainer through
    # DistillationDetector.set_log_period; detectron2's default until then.
    log_period: int = DEFAULT_LOG_PERIOD

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
    def keyword_defaults(cls) -> Dict[str, Any]:
        """
        ``__init__``'s keyword defaults, by name: the defaults of this loss, which
        :meth:`add_config` writes into its config node.
        """
        params = inspect.signature(cls.__init__).parameters.values()  # through @configurable
        return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}

    @classmethod
    def option_names(cls) -> List[str]:
        """The options of :meth:`from_options`: the keys of its config node, in lower case."""
        if cls.CONFIG_NODE is None:
            return []
        scratch = CN()
        scratch.MODEL = CN()
        scratch.MODEL.DISTILL = CN()
        cls.add_config(scratch)
        return [k.lower() for k in scratch.MODEL.DISTILL[cls.CONFIG_NODE]]

    @classmethod
    def config_options(cls, cfg) -> Dict[str, Any]:
        """This loss's options as ``cfg`` sets them: its node's keys, in lower case."""
        if cls.CONFIG_NODE is None:
            return {}
        return {k.lower(): v for k, v in cfg.MODEL.DISTILL[cls.CONFIG_NODE].items()}

    @classmethod
    def from_shapes(
        cls, student_shapes, guide_shapes, guide=None, max_iter: int = 0, **options
    ) -> Dict[str, Any]:
        """
        The keyword arguments of ``__init__``: what the levels' shapes (and the guide) decide,
        and ``options``.

        Args:
            student_shapes: ``Dict[str, ShapeSpec]``, the student's distilled levels
                (``MODEL.DISTILL.IN_FEATURES``), fine to coarse.
            guide_shapes: the same levels of the guide this instance serves.
            guide: that guide, a frozen detector (e.g. to check something built for it); None
                where the caller has none (tests).
            max_iter: the length of the training run (``SOLVER.MAX_ITER``, ``train.max_iter``),
                for losses that follow the schedule.
            options: the loss's options (:meth:`option_names`); omitted ones keep
                ``__init__``'s defaults.
        """
        raise NotImplementedError(
            f"{cls.__name__} defines no from_shapes: it is built from a yaml config only (its "
            "from_config); define from_shapes to build it from keywords (a LazyConfig)."
        )

    @classmethod
    def from_config(cls, cfg, student_shapes, guide_shapes, guide=None) -> Dict[str, Any]:
        """
        The keyword arguments of ``__init__`` from ``cfg``: :meth:`from_shapes` with the options
        of its node (:meth:`config_options`) and ``SOLVER.MAX_ITER``.
        """
        return cls.from_shapes(
            student_shapes,
            guide_shapes,
            guide,
            max_iter=cfg.SOLVER.MAX_ITER,
            **cls.config_options(cfg),
        )

    @classmethod
    def from_options(
        cls, student_shapes, guide_shapes, guide=None, max_iter: int = 0, **options
    ) -> "DistillLoss":
        """
        The loss built from Python keywords (how a LazyConfig's distiller builds it), e.g.
        ``SharedKDLoss.from_options(student_shapes, teacher_shapes, alpha=10.0)``: the same as
        from a config whose node sets those keys (``MODEL.DISTILL.SHARED_KD.ALPHA 10``).

        Raises:
            ValueError: an option that is not one of :meth:`option_names`.
        """
        known = cls.option_names()
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(
                f"{cls.__name__} has no option {unknown}; its options are {known} (the keys of "
                f"MODEL.DISTILL.{cls.CONFIG_NODE}, in lower case)."
            )
        return cls(**cls.from_shapes(student_shapes, guide_shapes, guide, max_iter, **options))

    def forward(self, student: DetectorOutputs, guide: DetectorOutputs) -> Dict[str, torch.Tensor]:
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
