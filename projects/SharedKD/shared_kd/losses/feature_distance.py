"""
Distances between feature maps, shared by the feature-distillation losses (Shared-KD, FitNets,
PKD): optional per-channel standardisation, optional foreground weighting, and the iteration
helpers that warm-ups and periodic health logging need.
"""

from typing import List, Optional, Sequence

import torch
from detectron2.utils.events import get_event_storage

__all__ = [
    "NORMALIZATIONS",
    "DEFAULT_LOG_PERIOD",
    "current_iteration",
    "foreground_masks",
    "foreground_weights",
    "is_logging_iteration",
    "squared_distance",
    "standardize_channels",
]

# "none": raw maps (the papers' l2 distance); "channel": each channel standardised to zero mean
# and unit variance over batch and positions before the distance (PKD, Cao et al. 2022).
NORMALIZATIONS = ("none", "channel")

# detectron2's writers record scalars every 20 iterations unless told otherwise
# (DefaultTrainer.build_hooks: PeriodicWriter(period=20); LazyConfig: train.log_period). The
# trainers tell each loss their actual period (DistillationDetector.set_log_period).
DEFAULT_LOG_PERIOD = 20


def current_iteration() -> Optional[int]:
    """The trainer's iteration from detectron2's EventStorage; None outside of training."""
    try:
        return get_event_storage().iter
    except AssertionError:  # no EventStorage: a loss called on its own (tests, analysis)
        return None


def is_logging_iteration(max_iter: int, period: int = DEFAULT_LOG_PERIOD) -> bool:
    """
    True on the iterations at which detectron2's writers record scalars (every ``period``-th,
    the writer's period, and the last), so that diagnostics that need a device sync are
    computed only when they are written.
    """
    it = current_iteration()
    return it is not None and ((it + 1) % period == 0 or it == max_iter - 1)


def standardize_channels(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """
    Per-channel standardisation over batch and positions, as PKD does.

    Args:
        x: N x C x H x W.

    Returns:
        N x C x H x W, every channel with mean 0 and (unbiased) standard deviation 1.
    """
    x = x.float()  # under AMP, fp16 variances of large maps lose too much precision
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    # unbiased as PKD's torch.std, but a single value per channel (one image, a 1 x 1 level)
    # has none: its standardised value is then 0, like a constant channel's.
    count = x.shape[0] * x.shape[2] * x.shape[3]
    var = x.var(dim=(0, 2, 3), keepdim=True, unbiased=count > 1)
    # sqrt's gradient is infinite at 0: a constant channel (e.g. a 1 x 1 level whose values
    # agree across the batch) would turn 0 * inf into NaN gradients without the 1e-12.
    std = (var + 1e-12).sqrt()
    return (x - mean) / (std + eps)


def foreground_masks(
    gt_boxes: Sequence[torch.Tensor], size: Sequence[int], stride: float, device
) -> torch.Tensor:
    """
    Which positions of a feature map lie inside a ground-truth box.

    Args:
        gt_boxes: per image, B_i x 4 boxes (x0, y0, x1, y1) in input pixels.
        size: (H, W) of the feature map.
        stride: input pixels per feature position.

    Returns:
        N x 1 x H x W, 1.0 where the centre of a position is inside some box of its image.
    """
    h, w = int(size[0]), int(size[1])
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * stride
    masks = []
    for boxes in gt_boxes:
        boxes = boxes.to(device=device, dtype=torch.float32)
        if len(boxes) == 0:
            masks.append(torch.zeros(h, w, device=device))
            continue
        inside_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] <= boxes[:, 3:4])  # B x H
        inside_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] <= boxes[:, 2:3])  # B x W
        masks.append((inside_y[:, :, None] & inside_x[:, None, :]).any(0).float())
    return torch.stack(masks)[:, None]


def squared_distance(
    student: torch.Tensor,
    target: torch.Tensor,
    normalize: str = "none",
    weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """
    Mean squared difference of two maps of one shape (align them first).

    Args:
        student, target: N x C x H x W (``target`` is used as given: detach it beforehand if
            no gradient may reach it).
        normalize: one of :data:`NORMALIZATIONS`, applied to both maps.
        weights: optional N x 1 x H x W non-negative position weights; the result is then the
            weighted mean over positions (of the mean over channels).

    Returns:
        Tensor: a float32 scalar.
    """
    if normalize == "channel":
        student, target = standardize_channels(student), standardize_channels(target)
    elif normalize != "none":
        raise ValueError(f"Unknown normalisation {normalize!r}; use one of {NORMALIZATIONS}")
    err = (student.float() - target.float()).pow(2)
    if weights is None:
        return err.mean()
    per_position = err.mean(1, keepdim=True)
    return (per_position * weights).sum() / weights.sum().clamp(min=1e-12)


def foreground_weights(
    gt_boxes: Optional[List[torch.Tensor]], like: torch.Tensor, stride: float, fg_weight: float
) -> Optional[torch.Tensor]:
    """
    Position weights ``1 + (fg_weight - 1) * inside_box`` for a map like ``like`` (N x C x H x W),
    or None when no weighting is asked for (``fg_weight == 1``).
    """
    if fg_weight == 1.0:
        return None
    if gt_boxes is None:
        raise ValueError(
            "Foreground weighting needs the ground-truth boxes of the batch, which the student's "
            "inputs did not carry (a dataset without 'instances')."
        )
    mask = foreground_masks(gt_boxes, like.shape[-2:], stride, like.device)
    return 1.0 + (fg_weight - 1.0) * mask
