"""
torchvision's ImageNet classifiers as detectron2 backbone weights: a ResNet (``resnet18`` ...
``resnet152``) or RegNet (``regnet_x_*``, ``regnet_y_*``) state dict renamed to detectron2's
layout and, for a BGR student, with its first convolution's input channels reversed. The result
is a checkpoint that ``MODEL.WEIGHTS`` (yaml) or ``train.init_checkpoint`` (LazyConfig) names;
detectron2 matches its keys into ``backbone.bottom_up`` as it does for its own ImageNet files.
``tools/convert_torchvision.py`` is the command line.

torchvision normalises RGB pixels in [0, 1] with the ImageNet mean and std; on detectron2's 0-255
pixels that is :data:`PIXEL_MEAN` / :data:`PIXEL_STD` (given in RGB order, reverse them for
BGR), which the student's config must use, with ``RESNETS.STRIDE_IN_1X1 False`` for ResNets of
50 layers and more (torchvision strides in the 3x3 conv).
"""

import re
from typing import Dict, List, Tuple

import torch

__all__ = [
    "PIXEL_MEAN",
    "PIXEL_STD",
    "convert_torchvision",
    "student_settings",
]

# torchvision's ImageNet normalisation on 0-255 pixels, RGB order.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)

# (pattern, replacement) on torchvision key names, applied in order.
_RESNET = [
    (r"^conv1\.", "stem.conv1."),
    (r"^bn1\.", "stem.conv1.norm."),
    (r"^layer(\d)\.", lambda m: f"res{int(m.group(1)) + 1}."),
    (r"\.downsample\.0\.", ".shortcut."),
    (r"\.downsample\.1\.", ".shortcut.norm."),
    (r"\.bn(\d)\.", r".conv\1.norm."),
]
_REGNET = [
    (r"^stem\.0\.", "stem.conv."),
    (r"^stem\.1\.", "stem.bn."),
    (
        r"^trunk_output\.block(\d)\.block\d-(\d+)\.",
        lambda m: f"s{m.group(1)}.b{int(m.group(2)) + 1}.",
    ),
    (r"\.proj\.0\.", ".proj."),
    (r"\.proj\.1\.", ".bn."),
    (r"\.f\.([abc])\.0\.", r".f.\1."),
    (r"\.f\.([abc])\.1\.", r".f.\1_bn."),
    (r"\.f\.se\.fc1\.", ".f.se.f_ex.0."),
    (r"\.f\.se\.fc2\.", ".f.se.f_ex.2."),
]
# The first convolution, whose input channels are the image's.
_FIRST_CONV = {"resnet": "stem.conv1.weight", "regnet": "stem.conv.weight"}


def _family(state_dict: Dict[str, torch.Tensor]) -> str:
    if "conv1.weight" in state_dict and any(k.startswith("layer1.") for k in state_dict):
        return "resnet"
    if "stem.0.weight" in state_dict and any(k.startswith("trunk_output.") for k in state_dict):
        return "regnet"
    raise ValueError(
        "Not a torchvision ResNet or RegNet state dict (no conv1 + layer1, nor stem + "
        "trunk_output); convert_torchvision reads torchvision.models.resnet* and regnet_*."
    )


def _rename(key: str, rules: List[Tuple[str, object]]) -> str:
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def convert_torchvision(
    state_dict: Dict[str, torch.Tensor], input_format: str = "BGR"
) -> Dict[str, torch.Tensor]:
    """
    A torchvision ResNet or RegNet state dict in detectron2's backbone layout.

    Args:
        state_dict: e.g. ``torchvision.models.resnet18(weights=...).state_dict()``, or the
            ``.pth`` file torchvision downloads (a plain state dict).
        input_format: the student's ``INPUT.FORMAT``: "BGR" reverses the first convolution's
            input channels (torchvision reads RGB), "RGB" keeps them.

    Returns:
        dict: detectron2 key (e.g. ``res2.0.conv1.weight``, ``s1.b1.f.a.weight``) -> tensor,
        without the classifier (``fc``) and BatchNorm's ``num_batches_tracked``.
    """
    if input_format not in ("BGR", "RGB"):
        raise ValueError(f"input_format must be 'BGR' or 'RGB', got {input_format!r}")
    family = _family(state_dict)
    rules = _RESNET if family == "resnet" else _REGNET
    out = {
        _rename(k, rules): v.detach().clone()
        for k, v in state_dict.items()
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    }
    if input_format == "BGR":
        first = _FIRST_CONV[family]
        out[first] = out[first].flip(1)  # RGB -> BGR input channels
    return out


def student_settings(input_format: str = "BGR") -> Dict[str, object]:
    """The yaml keys a student needs to read torchvision's weights as they were trained."""
    mean, std = (
        (PIXEL_MEAN, PIXEL_STD) if input_format == "RGB" else (PIXEL_MEAN[::-1], PIXEL_STD[::-1])
    )
    return {
        "INPUT.FORMAT": input_format,
        "MODEL.PIXEL_MEAN": list(mean),
        "MODEL.PIXEL_STD": list(std),
    }
