"""
Shape alignment of feature maps without learned parameters (METHODS.md, "Alignment").

Spatial: adaptive average pooling of the larger map down to the smaller one's size. Channels:
keep the first ``min(C_x, C_y)`` channels of each ("channel cropping"). Maps of equal shape pass
through untouched, so the usual same-width, same-input case costs nothing.

Before that, :func:`crop_to_extent` cuts a map to the part that covers a given top-left region
of its model's (padded) input: a guide that pads its input its own way (e.g. ViTDet's 1024
square) is compared with the student only where both saw the same pixels.
"""

import math
from typing import Tuple

import torch
import torch.nn.functional as F

__all__ = ["align_pair", "crop_channels", "crop_to_extent", "pool_to"]


def crop_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Keep the first ``channels`` channels of ``x`` (N x C x H x W)."""
    return x if x.shape[1] == channels else x[:, :channels]


def pool_to(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Adaptive average pooling of ``x`` (N x C x H x W) to ``size`` (h, w), h <= H, w <= W."""
    return x if tuple(x.shape[-2:]) == tuple(size) else F.adaptive_avg_pool2d(x, size)


def align_pair(x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """
    Bring two feature maps to a common shape: ``A(x, like=y)`` and ``A(y, like=x)``.

    Args:
        x: N x C_x x H_x x W_x.
        y: N x C_y x H_y x W_y.

    Returns:
        (x', y'): both N x min(C_x, C_y) x min(H_x, H_y) x min(W_x, W_y).
    """
    channels = min(x.shape[1], y.shape[1])
    size = (min(x.shape[2], y.shape[2]), min(x.shape[3], y.shape[3]))
    return pool_to(crop_channels(x, channels), size), pool_to(crop_channels(y, channels), size)


def crop_to_extent(x: torch.Tensor, stride: int, extent: Tuple[int, int]) -> torch.Tensor:
    """
    The part of a feature map that covers the top-left ``extent`` pixels of its input.

    Args:
        x: N x C x H x W, a level of stride ``stride`` of a model whose images are padded at the
            bottom and right (as detectron2's ``ImageList`` pads them).
        stride: the level's stride in input pixels.
        extent: (h, w), in input pixels.

    Returns:
        N x C x min(H, ceil(h / stride)) x min(W, ceil(w / stride)); ``x`` itself when that is
        its whole size.
    """
    h = min(x.shape[-2], math.ceil(extent[0] / stride))
    w = min(x.shape[-1], math.ceil(extent[1] / stride))
    return x if (h, w) == tuple(x.shape[-2:]) else x[..., :h, :w]
