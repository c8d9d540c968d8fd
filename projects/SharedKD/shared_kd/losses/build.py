"""The registry of distillation losses, and the functions that add their config and build them."""

from typing import Any, Dict, List, Mapping, Sequence

import torch.nn as nn
from detectron2.layers import ShapeSpec
from detectron2.utils.registry import Registry

from .base import DistillLoss

__all__ = [
    "DISTILL_LOSS_REGISTRY",
    "add_distill_loss_configs",
    "build_distill_losses",
    "build_distill_losses_from_options",
]

DISTILL_LOSS_REGISTRY = Registry("DISTILL_LOSS")
DISTILL_LOSS_REGISTRY.__doc__ = """
Registry for distillation losses (``MODEL.DISTILL.LOSSES`` names them). Every module of the
``shared_kd.losses`` package is imported with it, so a new file there registers its losses; a
loss of another package registers when that package is imported, before the config is built.

A registered class subclasses :class:`shared_kd.losses.base.DistillLoss` and declares:

- ``add_config(cfg)`` (classmethod): adds its node ``MODEL.DISTILL.<NODE>``, a one-line comment
  above every key; :func:`add_distill_loss_configs` calls it from ``add_sharedkd_config``.
- a keyword-only ``@configurable`` ``__init__`` that validates its arguments (loss weights
  with ``DistillLoss.check_weight``) and never reads the config; its keyword defaults are the
  loss's defaults, which ``add_config`` writes into the node (``keyword_defaults()``);
- ``CONFIG_NODE``: the name of its node; the node's keys in lower case are its options;
- ``from_shapes(student_shapes, guide_shapes, guide=None, max_iter=0, **options)``
  (classmethod): the keyword arguments of ``__init__``; the shapes are ``Dict[str, ShapeSpec]``
  of the levels in ``MODEL.DISTILL.IN_FEATURES``, fine to coarse, of the student and of the
  guide this instance serves; ``guide`` is that frozen guide model. ``DistillLoss.from_config``
  (read by ``@configurable``) calls it with the node's options, ``from_options`` with Python
  keywords (a LazyConfig's distiller).
- ``forward(student: DetectorOutputs, guide: DetectorOutputs) -> Dict[str, Tensor]``: scalar,
  already weighted ``loss_*`` terms, the same names for every guide (see
  :class:`shared_kd.layers.outputs.DetectorOutputs`: FPN features N x C x H x W per level,
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


def _check_names(names: Sequence[str], where: str) -> None:
    if not names:
        raise ValueError(
            f"{where} is empty: name at least one distillation loss, or train the student's own "
            "config without DistillationDetector."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"{where} lists a loss twice: {list(names)}")
    for name in names:
        if name not in DISTILL_LOSS_REGISTRY:
            raise KeyError(
                f"Unknown distillation loss {name!r} in {where}; registered: "
                f"{sorted(k for k, _ in DISTILL_LOSS_REGISTRY)}"
            )


def _build(names, make, num_guides: int) -> nn.ModuleDict:
    """``make(cls, guide_index)`` for every loss and guide it serves, as a ModuleDict."""
    losses = nn.ModuleDict()
    for name in names:
        cls = _loss_class(name)
        modules = [make(cls, i) for i in range(num_guides if cls.PER_GUIDE else 1)]
        for i, module in enumerate(modules):
            module.guide_index = i  # which guide it serves (0: the teacher), to name diagnostics
        losses[name] = nn.ModuleList(modules)
    return losses


def build_distill_losses(
    cfg,
    student_shapes: Dict[str, ShapeSpec],
    guide_shapes: List[Dict[str, ShapeSpec]],
    guides: Sequence[nn.Module] = (),
) -> nn.ModuleDict:
    """
    Build every loss named in ``cfg.MODEL.DISTILL.LOSSES``, from its config node.

    Args:
        student_shapes: the student's distilled levels.
        guide_shapes: the same levels of each guide, the teacher first.
        guides: the guide models, in the same order (for losses that read them at build time).

    Returns:
        nn.ModuleDict: loss name -> ``nn.ModuleList`` of one module per guide, or of one module
        (the teacher's) for a loss with ``PER_GUIDE = False``.
    """
    names = list(cfg.MODEL.DISTILL.LOSSES)
    _check_names(names, "MODEL.DISTILL.LOSSES")
    guides = list(guides) or [None] * len(guide_shapes)
    return _build(
        names,
        lambda cls, i: cls(cfg, student_shapes, guide_shapes[i], guide=guides[i]),
        len(guide_shapes),
    )


def build_distill_losses_from_options(
    options: Mapping[str, Mapping[str, Any]],
    student_shapes: Dict[str, ShapeSpec],
    guide_shapes: List[Dict[str, ShapeSpec]],
    guides: Sequence[nn.Module] = (),
    max_iter: int = 0,
) -> nn.ModuleDict:
    """
    Build losses from Python keywords (:meth:`DistillLoss.from_options`), as a LazyConfig's
    distiller does: ``{"SharedKDLoss": {"alpha": 10.0}, "PKDLoss": {}}`` gives the same modules
    as ``MODEL.DISTILL.LOSSES ["SharedKDLoss", "PKDLoss"]`` with ``SHARED_KD.ALPHA 10``.

    Args:
        options: loss name -> its options (the lower-case keys of its config node; omitted
            ones keep their defaults), in order; a list of names gives every loss its defaults.
        student_shapes, guide_shapes, guides: as for :func:`build_distill_losses`.
        max_iter: the training run's length, for losses that follow the schedule.
    """
    names = list(options)
    _check_names(names, "the distiller's losses")  # before a list becomes a dict: duplicates
    if not isinstance(options, Mapping):
        options = {name: {} for name in options}
    guides = list(guides) or [None] * len(guide_shapes)
    return _build(
        names,
        lambda cls, i: cls.from_options(
            student_shapes,
            guide_shapes[i],
            guides[i],
            max_iter,
            **dict(options[cls.__name__] or {}),
        ),
        len(guide_shapes),
    )
