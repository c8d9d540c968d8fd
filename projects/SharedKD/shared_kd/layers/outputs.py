"""What a detector exposes to the distillation losses in one training step."""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

__all__ = ["DetectorOutputs"]


@dataclass
class DetectorOutputs:
    """
    One detector's (the student's or a guide's) signals for one batch.

    Attributes:
        features: FPN maps of the distilled levels, ``N x C x H x W`` each, fine to coarse.
        class_logits: ``M x K`` classification logits at ``M`` locations shared by the student
            and the guide (R-CNN: the student's sampled proposals, K = classes + 1; dense heads:
            every anchor/point of every level, K = classes), or None when no loss asks for them.
        logit_activation: "softmax" (R-CNN) or "sigmoid" (RetinaNet, FCOS).
        logit_normalizer: the count a dense detector divides its own classification loss by
            (detectron2's RetinaNet/FCOS: an EMA of the batch's foreground anchors/points,
            ``loss_normalizer``), or None (R-CNN: its box loss is a mean over the M sampled
            proposals). The student's only.
        gt_boxes: per image, B_i x 4 ground-truth boxes (x0, y0, x1, y1) in the pixels of the
            model's input (the student's only; None when the inputs carry no instances).
        cache: per-step memo for terms that several guides would otherwise compute again.
        input_size: (H, W) of the padded image tensor the backbone read, in pixels (None when
            unknown); where the student's and a guide's differ, the distiller crops both to
            the common top-left part before the losses see them.
    """

    features: Dict[str, torch.Tensor]
    class_logits: Optional[torch.Tensor] = None
    logit_activation: str = "softmax"
    logit_normalizer: Optional[float] = None
    gt_boxes: Optional[List[torch.Tensor]] = None
    cache: Dict[str, Any] = field(default_factory=dict)
    input_size: Optional[Tuple[int, int]] = None

    def cached(self, key: str, compute: Callable[[], Any]):
        """``compute()`` once per step; later calls with the same key return the first result."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]
