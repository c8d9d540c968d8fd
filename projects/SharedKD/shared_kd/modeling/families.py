"""
The detector families a student (or guide) can be, in one table: what the distiller's logit
losses, the dataset checks, the export and the benchmark need to know of each family.

A new student family is one :class:`DetectorFamily` entry in :data:`FAMILIES` plus its tiny
config in :func:`shared_kd.utils.testing.get_tiny_cfg`; ``tests/modeling/test_families.py``
runs every entry through every column (see docs/TRAINING.md, "A new student family").
"""

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Tuple

import torch.nn as nn
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.meta_arch.dense_detector import DenseDetector

from .logits import DenseLogitTap, RCNNLogitTap

__all__ = [
    "FAMILIES",
    "DetectorFamily",
    "build_logit_tap",
    "family_of",
    "num_classes_key",
]


@dataclass(frozen=True)
class DetectorFamily:
    """
    One family of detectors.

    Attributes:
        name: shown in messages ("R-CNN", "dense").
        detector_class: every model of the family is an instance of it (the meta-architecture's
            class, or a common base such as detectron2's ``DenseDetector``).
        num_classes_nodes: yaml ``MODEL.META_ARCHITECTURE`` -> the ``MODEL.<node>`` whose
            ``NUM_CLASSES`` is the detector's number of classes (dataset checks, benchmark).
        logit_tap: the :mod:`shared_kd.modeling.logits` tap class for logit distillation.
        export_inference: the ``inference_func`` detectron2's ``TracingAdapter`` traces
            (``(model, inputs) -> outputs``); None traces the model's own eval ``forward``.
    """

    name: str
    detector_class: type
    num_classes_nodes: Mapping[str, str]
    logit_tap: type
    export_inference: Optional[Callable] = None


def _rcnn_export_inference(model, inputs):
    # do_postprocess=False: boxes in the input's pixels, masks as RoI masks (detectron2's own
    # export of R-CNN does the same: the resize to the original image is the caller's).
    return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]


FAMILIES: Tuple[DetectorFamily, ...] = (
    DetectorFamily(
        name="R-CNN",
        detector_class=GeneralizedRCNN,
        num_classes_nodes={"GeneralizedRCNN": "ROI_HEADS"},
        logit_tap=RCNNLogitTap,
        export_inference=_rcnn_export_inference,
    ),
    DetectorFamily(
        name="dense",  # RetinaNet, FCOS: their eval forward returns boxes in the input's pixels
        detector_class=DenseDetector,
        num_classes_nodes={"RetinaNet": "RETINANET", "FCOS": "FCOS"},
        logit_tap=DenseLogitTap,
    ),
)


def family_of(model: nn.Module, purpose: str = "SharedKD") -> DetectorFamily:
    """
    The family of ``model``.

    Args:
        purpose: what needs the family, for the error ("Export", "Logit distillation").

    Raises:
        ValueError: ``model`` is of no family in :data:`FAMILIES`.
    """
    for family in FAMILIES:
        if isinstance(model, family.detector_class):
            return family
    known = ", ".join(
        f"{f.detector_class.__name__} ({'/'.join(f.num_classes_nodes)})" for f in FAMILIES
    )
    raise ValueError(f"{purpose} supports {known}, not {type(model).__name__}.")


def num_classes_key(meta_architecture: str) -> Optional[str]:
    """``MODEL.<node>.NUM_CLASSES`` of a yaml meta-architecture, or None if no family has it."""
    for family in FAMILIES:
        if meta_architecture in family.num_classes_nodes:
            return f"MODEL.{family.num_classes_nodes[meta_architecture]}.NUM_CLASSES"
    return None


def build_logit_tap(student: nn.Module):
    """The logit tap of the student's family (records the student's logits from now on)."""
    return family_of(student, "Logit distillation").logit_tap(student)
