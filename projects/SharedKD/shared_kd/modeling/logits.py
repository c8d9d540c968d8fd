"""
Classification logits of the student and of a guide on the same locations ("logit taps").

The student runs its own ``forward``; hooks on its heads record what it computed. A guide then
runs its own head modules (public pieces, under ``torch.no_grad()``) on the same locations:

- R-CNN: the student's sampled proposals go through the guide's ``box_pooler``, ``box_head`` and
  ``box_predictor``, so both score the same boxes (softmax over K + 1 classes);
- dense detectors (RetinaNet, FCOS): the guide's ``head`` on its own FPN levels gives
  per-anchor/per-point logits that line up with the student's when both use the same levels,
  strides and anchors (sigmoid over K classes).
"""

from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from detectron2.modeling import GeneralizedRCNN, StandardROIHeads
from detectron2.modeling.meta_arch.dense_detector import DenseDetector, permute_to_N_HWA_K

from .guide import padding_of

__all__ = ["DenseLogitTap", "RCNNLogitTap", "rcnn_box_logits"]


def rcnn_box_logits(heads: StandardROIHeads, features, boxes) -> torch.Tensor:
    """
    The box classifier's logits of an R-CNN's ROI heads on given boxes, through its own
    ``box_pooler``, ``box_head`` and ``box_predictor`` (what ``_forward_box`` computes first).

    Args:
        features: dict of the detector's FPN levels (``N x C x H x W``).
        boxes: list of N ``Boxes``, one per image.

    Returns:
        Tensor: ``R x (K + 1)``, R = the boxes of all images, in order.
    """
    x = heads.box_pooler([features[f] for f in heads.box_in_features], boxes)
    return heads.box_predictor(heads.box_head(x))[0]


class _LogitTap:
    """What a tap recorded from the student's last training forward, by attribute name."""

    _RECORDED: Tuple[str, ...] = ()

    def snapshot(self) -> Dict[str, Any]:
        """What the tap holds now from the student's forward, for :meth:`restore`."""
        return {name: getattr(self, name) for name in self._RECORDED}

    def restore(self, snapshot: Dict[str, Any]) -> None:
        """Hold again what :meth:`snapshot` returned (e.g. to rerun the guides on it)."""
        for name in self._RECORDED:
            setattr(self, name, snapshot[name])

    def clear(self):
        """Drop what was recorded (the step's tensors and their graphs)."""
        for name in self._RECORDED:
            setattr(self, name, None)

    @staticmethod
    def student_normalizer(student) -> Optional[float]:
        """
        What the student's own classification loss divided its sum by in the forward just run
        (``DetectorOutputs.logit_normalizer``); None: a mean over the logits' rows.
        """
        return None


class RCNNLogitTap(_LogitTap):
    """
    Logits of the box classifier on the student's sampled proposals (its loss is a mean over
    them, so :meth:`student_normalizer` stays None).
    """

    activation = "softmax"
    _RECORDED = ("_boxes", "_logits")

    def __init__(self, student: GeneralizedRCNN):
        self._check_heads(student.roi_heads, "student")
        self.num_classes = student.roi_heads.num_classes
        self._boxes = None
        self._logits = None
        heads = student.roi_heads
        heads.box_pooler.register_forward_pre_hook(self._record_boxes)
        heads.box_predictor.register_forward_hook(self._record_logits)

    def _record_boxes(self, module, args):
        if module.training:
            self._boxes = args[1]  # list[Boxes]: the proposals the student's box head scores

    def _record_logits(self, module, args, output):
        if module.training:
            self._logits = output[0]  # R x (K + 1)

    @staticmethod
    def _check_heads(heads, name):
        # One pooler + box head + FastRCNNOutputLayers, as in StandardROIHeads; cascade heads
        # (a ModuleList of predictors) and Res5ROIHeads score boxes differently.
        if not isinstance(heads, StandardROIHeads) or isinstance(
            heads.box_predictor, nn.ModuleList
        ):
            raise ValueError(
                f"R-CNN logit distillation supports StandardROIHeads; the {name} has "
                f"{type(heads).__name__}."
            )

    def check_guide(self, guide, name):
        if not isinstance(guide, GeneralizedRCNN):
            raise ValueError(f"The {name} is a {type(guide).__name__}; R-CNN logit KD needs R-CNN")
        self._check_heads(guide.roi_heads, name)
        if guide.roi_heads.num_classes != self.num_classes:
            raise ValueError(
                f"Logit distillation needs the same classes, but the student has "
                f"{self.num_classes} classes and the {name} has {guide.roi_heads.num_classes} "
                "(MODEL.ROI_HEADS.NUM_CLASSES). Remove the logit loss or use matching models."
            )

    def pop_student_logits(self) -> torch.Tensor:
        logits, self._logits = self._logits, None
        return logits

    @torch.no_grad()
    def guide_logits(self, guide, features) -> torch.Tensor:
        return rcnn_box_logits(guide.roi_heads, features, self._boxes)


class DenseLogitTap(_LogitTap):
    """Per-anchor (RetinaNet) or per-point (FCOS) logits of every level, flattened."""

    activation = "sigmoid"
    _RECORDED = ("_logits",)

    def __init__(self, student: DenseDetector):
        self.num_classes = student.num_classes
        self.in_features = list(student.head_in_features)
        self.cell_anchors = [a.cpu() for a in student.anchor_generator.cell_anchors]
        self.padding = padding_of(student)
        self._logits = None
        student.head.register_forward_hook(self._record_logits)

    def _record_logits(self, module, args, output):
        if module.training:
            self._logits = output[0]  # list over levels of N x (A * K) x H x W

    def _flatten(self, per_level: List[torch.Tensor]) -> torch.Tensor:
        return torch.cat([permute_to_N_HWA_K(x, self.num_classes) for x in per_level], 1).flatten(
            0, 1
        )

    def check_guide(self, guide, name):
        if not isinstance(guide, DenseDetector):
            raise ValueError(f"The {name} is a {type(guide).__name__}; dense logit KD needs one")
        if guide.num_classes != self.num_classes:
            raise ValueError(
                f"Logit distillation needs the same classes, but the student has "
                f"{self.num_classes} classes and the {name} has {guide.num_classes}. Remove the "
                "logit loss or use matching models."
            )
        if list(guide.head_in_features) != self.in_features:
            raise ValueError(
                f"Dense logit distillation pairs locations level by level: the student's head "
                f"reads {self.in_features}, the {name}'s {list(guide.head_in_features)}."
            )
        if padding_of(guide) != self.padding:
            raise ValueError(
                f"Dense logit distillation pairs locations one to one, but the {name} pads its "
                f"input to {padding_of(guide)} (size divisibility, padding constraints) and the "
                f"student to {self.padding}: use feature losses only with this {name}."
            )
        anchors = [a.cpu() for a in guide.anchor_generator.cell_anchors]
        if len(anchors) != len(self.cell_anchors) or not all(
            a.shape == b.shape and torch.allclose(a, b) for a, b in zip(anchors, self.cell_anchors)
        ):
            raise ValueError(
                f"Dense logit distillation pairs anchors one to one: the {name}'s anchors "
                "(MODEL.ANCHOR_GENERATOR sizes and aspect ratios) differ from the student's."
            )

    def pop_student_logits(self) -> torch.Tensor:
        logits, self._logits = self._logits, None
        return self._flatten(logits)

    @staticmethod
    def student_normalizer(student: DenseDetector) -> Optional[float]:
        """
        What the student's own focal loss divided its sum by in the forward just run: detectron2's
        RetinaNet and FCOS keep an EMA of the batch's foreground anchors/points in
        ``loss_normalizer`` (``DenseDetector._ema_update``); None for a detector that keeps none.
        """
        normalizer = getattr(student, "loss_normalizer", None)
        return None if normalizer is None else float(normalizer)

    @torch.no_grad()
    def guide_logits(self, guide, features) -> torch.Tensor:
        per_level = guide.head([features[f] for f in guide.head_in_features])[0]
        return self._flatten(per_level)
