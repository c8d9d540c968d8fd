"""The registry of distillation losses, and the functions that add their config and build them."""

from typing import Dict, List, Sequence

import torch.nn as nn
from detectron2.layers import ShapeSpec
from detectron2.utils.registry import Registry

from .base import DistillLoss

__all__ = ["DISTILL_LOSS_REGISTRY", "add_distill_loss_configs", "build_distill_losses"]

DISTILL_LOSS_REGISTRY = Registry("DISTILL_LOSS")
DISTILL_LOSS_REGISTRY.__doc__ = """
Registry for distillation losses (``MODEL.DISTILL.LOSSES`` names them). Every module of the
``shared_kd.losses`` package is imported with it, so a new file there registers its losses; a
loss of another package registers when that package is imported, before the config is built.

A registered class subclasses :class:`shared_kd.losses.base.DistillLoss` and declares:

- ``add_config(cfg)`` (classmethod): adds its node ``MODEL.DISTILL.<NODE>``, a one-line comment
  above every key; :func:`add_distill_loss_configs` calls it from ``add_sharedkd_config``.
- a keyword-only ``@configurable`` ``__init__`` that validates its arguments (loss weights
  with ``DistillLoss.check_weight``) and never reads the config;
- ``from_config(cfg, student_shapes, guide_shapes, guide=None)`` (classmethod, read by
  ``@configurable``): the shapes are ``Dict[str, ShapeSpec]`` of the levels in
  ``MODEL.DISTILL.IN_FEATURES``, fine to coarse, of the student and of the guide this instance
  serves; ``guide`` is that frozen guide model.
- ``forward(student: DetectorOutputs, guide: DetectorOutputs) -> Dict[str, Tensor]``: scalar,
  already weighted ``loss_*`` terms, the same names for every guide (see
  :class:`shared_kd.modeling.outputs.DetectorOutputs`: FPN features N x C x H x W per level,
  classification logits when the class sets ``NEEDS_LOGITS``, the student's ``gt_boxes``).
  Diagnostics go to the EventStorage under ``distill/`` (``DistillLoss.put_scalar``).
- ``PER_GUIDE`` (default True): one instance per guide (teacher and teaching assistants), each
  term averaged over the guides; False: a single instance, for the teacher only.
- ``NEEDS_LOGITS`` (default False): the wrapper then records classification logits.
- ``needs_guide`` (default True; may be a property): False when the instance never reads the
  guide (the guide's forward is then skipped, and ``guide`` is None).
- ``guide_index``: set by :func:`build_distill_losses` on every instance (0: the teacher, i: the
  i-th teaching assistant), for the names of what an instance logs.
"""


def _loss_class(name: str) -> type:
    cls = DISTILL_LOSS_REGISTRY.get(name)
    if not (isinstance(cls, type) and issubclass(cls, DistillLoss)):
        raise TypeError(
            f"{name!r} is registered in DISTILL_LOSS_REGISTRY but does not subclass "
            "shared_kd.losses.base.DistillLoss (see docs/ADDING_A_LOSS.md)"
        )
    return cls


def add_distill_loss_configs(cfg) -> None:
    """
    Add the config node of every registered loss (:meth:`DistillLoss.add_config`; once for
    subclasses that inherit it), in the order of the losses' names, so that the config does not
    depend on the order of imports.

    Raises:
        ValueError: a loss's ``add_config`` replaced a node another loss or the distiller added.
    """
    added = set()
    for name in sorted(name for name, _ in DISTILL_LOSS_REGISTRY):
        add_config = _loss_class(name).add_config
        if add_config.__func__ in added:  # a subclass that shares its parent's node
            continue
        added.add(add_config.__func__)
        before = dict(cfg.MODEL.DISTILL)
        add_config(cfg)
        replaced = [k for k, v in before.items() if cfg.MODEL.DISTILL.get(k) is not v]
        if replaced:
            raise ValueError(
                f"{name}.add_config replaced MODEL.DISTILL.{replaced[0]}, which was already set: "
                "give the loss a node of its own"
            )


def build_distill_losses(
    cfg,
    student_shapes: Dict[str, ShapeSpec],
    guide_shapes: List[Dict[str, ShapeSpec]],
    guides: Sequence[nn.Module] = (),
) -> nn.ModuleDict:
    """
    Build every loss named in ``cfg.MODEL.DISTILL.LOSSES``.

    Args:
        student_shapes: the student's distilled levels.
        guide_shapes: the same levels of each guide, the teacher first.
        guides: the guide models, in the same order (for losses that read them at build time).

    Returns:
        nn.ModuleDict: loss name -> ``nn.ModuleList`` of one module per guide, or of one module
        (the teacher's) for a loss with ``PER_GUIDE = False``.
    """
    names = list(cfg.MODEL.DISTILL.LOSSES)
    if not names:
        raise ValueError(
            "MODEL.DISTILL.LOSSES is empty: name at least one distillation loss, or train the "
            "student's own config without DistillationDetector."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"MODEL.DISTILL.LOSSES lists a loss twice: {names}")
    guides = list(guides) or [None] * len(guide_shapes)
    losses = nn.ModuleDict()
    for name in names:
        if name not in DISTILL_LOSS_REGISTRY:
            raise KeyError(
                f"Unknown distillation loss {name!r} in MODEL.DISTILL.LOSSES; registered: "
                f"{sorted(k for k, _ in DISTILL_LOSS_REGISTRY)}"
            )
        cls = _loss_class(name)
        count = len(guide_shapes) if cls.PER_GUIDE else 1
        modules = [cls(cfg, student_shapes, guide_shapes[i], guide=guides[i]) for i in range(count)]
        for i, module in enumerate(modules):
            module.guide_index = i  # which guide it serves (0: the teacher), to name diagnostics
        losses[name] = nn.ModuleList(modules)
    return losses
