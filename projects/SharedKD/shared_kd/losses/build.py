"""The registry of distillation losses and the function that builds the configured ones."""

from typing import Dict, List, Sequence

import torch.nn as nn
from detectron2.layers import ShapeSpec
from detectron2.utils.registry import Registry

__all__ = ["DISTILL_LOSS_REGISTRY", "build_distill_losses"]

DISTILL_LOSS_REGISTRY = Registry("DISTILL_LOSS")
DISTILL_LOSS_REGISTRY.__doc__ = """
Registry for distillation losses (``MODEL.DISTILL.LOSSES`` names them).

A registered class is an ``nn.Module`` built as ``cls(cfg, student_shapes, guide_shapes,
guide=guide)`` (through ``@configurable``'s ``from_config``), where the shapes are
``Dict[str, ShapeSpec]`` of the levels in ``MODEL.DISTILL.IN_FEATURES``, fine to coarse, and
``guide`` is the frozen guide model. It is called as

    loss(student: DetectorOutputs, guide: DetectorOutputs) -> Dict[str, Tensor]

(see :class:`shared_kd.modeling.outputs.DetectorOutputs`: FPN features N x C x H x W per level,
and classification logits when the class sets ``NEEDS_LOGITS = True``) and returns scalar,
already weighted ``loss_*`` terms. Class attributes:

- ``PER_GUIDE`` (default True): one instance per guide (teacher and teaching assistants), each
  term averaged over the guides; False: a single instance, for the teacher only.
- ``NEEDS_LOGITS`` (default False): the wrapper then records classification logits.
- ``guide_index``: set by :func:`build_distill_losses` on every instance (0: the teacher, i: the
  i-th teaching assistant), for the names of what an instance logs.
- ``needs_guide`` (default True; may be a property): False when the instance never reads the
  guide (the guide's forward is then skipped, and ``guide`` is None).
"""


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
        cls = DISTILL_LOSS_REGISTRY.get(name)
        count = len(guide_shapes) if getattr(cls, "PER_GUIDE", True) else 1
        modules = [cls(cfg, student_shapes, guide_shapes[i], guide=guides[i]) for i in range(count)]
        for i, module in enumerate(modules):
            module.guide_index = i  # which guide it serves (0: the teacher), to name diagnostics
        losses[name] = nn.ModuleList(modules)
    return losses
