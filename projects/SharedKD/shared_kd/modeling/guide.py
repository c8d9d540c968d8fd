"""
Frozen guides (the teacher, teaching assistants): a detector built from its own config file of
either config system (yacs yaml or LazyConfig ``.py``) and weights loaded strictly, frozen and in
eval mode, with the channel order of the images it was trained on. :func:`build_guide` is the one
builder for the distiller, the auto-encoder stage, the benchmark and the analysis tools.

In a LazyConfig distillation config a guide is ``L(build_guide)(config_file=..., weights=...)``.
"""

import logging
from typing import Any, Dict, Optional, Sequence, Tuple

import torch.nn as nn

from ..checkpoint import StrictCheckpointer
from ..detector_config import INPUT_FORMATS, DetectorConfig, load_detector_config

__all__ = [
    "Guide",
    "as_guide",
    "build_frozen_detector",
    "build_guide",
    "check_input_formats",
    "in_input_format",
    "padding_of",
]

logger = logging.getLogger(__name__)

# role -> (the config key naming its config file(s), the key naming its weights)
_KEYS = {
    "teacher": ("MODEL.DISTILL.TEACHER.CONFIG_FILE", "MODEL.DISTILL.TEACHER.WEIGHTS"),
    "assistant": ("MODEL.DISTILL.ASSISTANTS.CONFIG_FILES", "MODEL.DISTILL.ASSISTANTS.WEIGHTS"),
}


class Guide:
    """
    A frozen detector that guides the student, and the channel order of its input.

    A plain class (not a dataclass): a LazyConfig's ``instantiate`` keeps it as it is.

    Attributes:
        model: the detector, frozen (``requires_grad=False``) and in eval mode.
        input_format: "BGR" or "RGB" (or another detectron2 format): the channel order of the
            images it was trained on; the distiller flips the student's images to it.
        source: the config file it was built from, for messages.
    """

    __slots__ = ("model", "input_format", "source")

    def __init__(self, model: nn.Module, input_format: str, source: str = ""):
        self.model = model
        self.input_format = input_format
        self.source = source

    def __repr__(self):
        return f"Guide({type(self.model).__name__}, {self.input_format}, {self.source!r})"


def as_guide(guide, default_format: str) -> Guide:
    """
    ``guide`` as a :class:`Guide`: a bare detector is read as taking its own ``input_format``
    attribute's channel order (detectron2's R-CNN and RetinaNet have one), else
    ``default_format`` (the student's).
    """
    if isinstance(guide, Guide):
        return guide
    if not isinstance(guide, nn.Module):
        raise TypeError(f"A guide must be a Guide or a detector (nn.Module), got {type(guide)}")
    return Guide(guide, getattr(guide, "input_format", None) or default_format)


def check_input_formats(student_format: str, guide_format: str, name: str) -> bool:
    """
    Whether the student's images must be flipped (BGR <-> RGB) for a guide; raise ValueError
    for formats that cannot be reconciled (e.g. a grey-scale guide of a colour student).
    """
    if student_format == guide_format:
        return False
    if student_format in INPUT_FORMATS and guide_format in INPUT_FORMATS:
        return True
    raise ValueError(
        f"The {name} reads {guide_format!r} images and the student {student_format!r}: "
        f"SharedKD reconciles only {' and '.join(INPUT_FORMATS)} (by flipping the channels). "
        "Use a guide trained on the student's input format."
    )


def in_input_format(batched_inputs, flip: bool):
    """
    The batch with every ``"image"`` (C x H x W) in the guide's channel order: the channels
    reversed when ``flip`` (BGR <-> RGB), else the batch itself.
    """
    if not flip:
        return batched_inputs
    return [{**x, "image": x["image"].flip(0)} for x in batched_inputs]


def padding_of(model: nn.Module) -> Tuple[int, Dict[str, Any]]:
    """
    How a detector pads its input: its backbone's size divisibility and padding constraints
    (detectron2 main: e.g. ViTDet's ``{"square_size": 1024}``; none on v0.6).
    """
    backbone = model.backbone
    return backbone.size_divisibility, dict(getattr(backbone, "padding_constraints", None) or {})


def check_fits_square(model: nn.Module, batched_inputs, name: str) -> None:
    """Raise ValueError when an image is larger than the square a guide pads every batch to."""
    square = padding_of(model)[1].get("square_size", 0)
    if not square:
        return
    largest = max(max(x["image"].shape[-2:]) for x in batched_inputs)
    if largest > square:
        raise ValueError(
            f"The {name} pads every image to a {square} x {square} square, but the student's "
            f"batch has an image of {largest} pixels: resize the student's input to at most "
            f"{square} (INPUT.MAX_SIZE_TRAIN / MAX_SIZE_TEST, or its resize augmentations)."
        )


def build_frozen_detector(
    config: DetectorConfig,
    weights: Optional[str],
    device: str = "cpu",
    key: str = "MODEL.WEIGHTS",
) -> nn.Module:
    """
    The detector of ``config`` on ``device`` with ``weights`` loaded strictly
    (:class:`StrictCheckpointer`: missing, unexpected or misshapen keys are an error; a
    distillation checkpoint loads as its student; ``detectron2://`` and other URLs are fetched as
    detectron2 fetches them), frozen (``requires_grad=False``) and in eval mode.

    Args:
        config: the detector's config.
        weights: path (or URL) of the checkpoint; None keeps the random initialisation (e.g. to
            time a model without trained weights).
        device: where it runs.
        key: the config key (or flag) that names ``weights``, for messages.
    """
    model = config.build_model(device)
    if weights is not None:
        # checkpointables=[]: a training checkpoint's optimizer and scheduler are not the model's.
        StrictCheckpointer(model, config.source, key=key).load(weights, checkpointables=[])
    model.requires_grad_(False)
    model.eval()
    return model


def build_guide(
    config_file: str,
    weights: Optional[str],
    opts: Sequence[str] = (),
    device: str = "cpu",
    role: str = "teacher",
) -> Guide:
    """
    A frozen guide from its own config file and trained weights.

    The caller keeps ``Guide.model`` out of its own module tree, so that it stays out of
    optimizers, DDP and checkpoints (as :class:`~shared_kd.modeling.DistillationDetector` does).

    Args:
        config_file: the guide's config: a yacs yaml, a LazyConfig ``.py`` (or the yaml
            ``LazyConfig.save`` wrote), or ``model_zoo:<path>``; a distillation config gives its
            student (a teaching assistant trained here).
        weights: its trained checkpoint, loaded strictly; None: random weights (benchmarks).
        opts: overrides of its config: ``KEY VALUE`` pairs (yaml), ``key=value`` (``.py``).
        device: where it runs (the student's device).
        role: "teacher" or "assistant", for messages.
    """
    config_key, weights_key = _KEYS.get(role, ("config_file", "weights"))
    if weights is not None and not weights:
        raise ValueError(f"{weights_key} is empty: set it to the trained {role}'s checkpoint.")
    config = load_detector_config(config_file, opts, role=role, key=config_key)
    model = build_frozen_detector(config, weights, device, weights_key)
    guide = Guide(model, config.input_format, config_file)
    if weights is not None:
        logger.info(f"Loaded frozen {role} {type(model).__name__} from {weights}")
    return guide
