"""
Shared-KD (Electronics 2024, 13(8):1595), as ``../shared/docs/METHODS.md`` reads it.

``L = ALPHA * (L_ident + L_cross)`` where

- ``L_ident = mean_l || A(S_l) - A(T'_l) ||^2``: identical-layer distillation teacher -> student,
  with ``T'`` the Teacher Share Module's fusion of adjacent teacher levels;
- ``L_cross = mean_(i,j) || A(S_j, like=S_i) - sg(A(S_i, like=S_j)) ||^2``: cross-layer
  distillation inside the student, level ``i`` guiding level ``j``.

``A`` is :func:`~shared_kd.modeling.alignment.align_pair` (pooling + channel cropping); every
``||.||^2`` is a mean over elements, then averaged over levels or pairs.
"""

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import configurable

from ..modeling.alignment import align_pair, crop_channels
from ..modeling.outputs import DetectorOutputs
from .build import DISTILL_LOSS_REGISTRY

__all__ = ["SharedKDLoss", "TeacherShareModule", "cross_layer_pairs", "gate_logits"]


def gate_logits(
    conv: nn.Conv2d,
    fine: torch.Tensor,
    coarse: torch.Tensor,
    resize: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """
    ``conv(cat([fine, resize(coarse)]))``, the TSM's gate logits, computed without the
    concatenation and without resizing every channel of ``coarse``:

    - a k x k conv (stride 1, "same" padding) is a 1x1 conv to ``C_out * k * k`` tap maps whose
      shifted copies ``F.fold`` sums;
    - a 1x1 conv mixes channels pixel by pixel, so it commutes with ``resize`` (nearest or
      bilinear interpolation treats every channel alike): the coarse half runs at the coarse
      resolution and only its ``C_out * k * k`` tap maps are resized.

    The same values up to float rounding, on every device. On CPU, where a direct k x k conv
    with 2 output maps is slow, the TSM's losses run several times faster.

    Args:
        conv: the gate conv, ``2 C`` in, ``C_out`` out, odd square kernel, ``padding = k // 2``.
        fine: N x C x H x W.
        coarse: N x C x h x w.
        resize: maps N x * x h x w to N x * x H x W.

    Returns:
        N x C_out x H x W.
    """
    o, k, c = conv.out_channels, conv.kernel_size[0], fine.shape[1]
    # fold adds block (i, j) of column (y, x) at (y + i - p, x + j - p); a conv reads
    # x[y + i - p, x + j - p] into output (y, x): the same taps, mirrored.
    taps = conv.weight.flip(2, 3).permute(0, 2, 3, 1).reshape(o * k * k, 2 * c, 1, 1)
    columns = F.conv2d(fine, taps[:, :c]) + resize(F.conv2d(coarse, taps[:, c:]))
    out = F.fold(columns.flatten(2), tuple(fine.shape[-2:]), kernel_size=k, padding=k // 2)
    return out if conv.bias is None else out + conv.bias.view(1, o, 1, 1)


class TeacherShareModule(nn.Module):
    """
    Fuses each teacher level with the next coarser one (the paper's TSM).

    For level ``l`` (all but the coarsest): ``up = upsample(T_{l+1}, size of T_l)``,
    ``a = sigmoid(conv([T_l, up]))`` with 2 output maps, ``T'_l = T_l * a0 + up * a1``.
    The coarsest level passes through. Only the fusion convs are trained (by the identical-layer
    loss, through the target); the teacher's features arrive without gradient.
    """

    def __init__(self, channels: Sequence[int], upsample: str = "nearest", kernel_size: int = 3):
        """
        Args:
            channels: teacher channels per level, fine to coarse.
            upsample: "nearest" or "bilinear".
            kernel_size: 1 or 3, the fusion conv's kernel.
        """
        super().__init__()
        if upsample not in ("nearest", "bilinear"):
            raise ValueError(f"TSM_UPSAMPLE must be 'nearest' or 'bilinear', got {upsample!r}")
        if kernel_size not in (1, 3):
            raise ValueError(f"TSM_KERNEL_SIZE must be 1 or 3, got {kernel_size}")
        self.upsample = upsample
        # Two adjacent levels of different widths are fused on their common (cropped) channels.
        self.fused_channels = [min(a, b) for a, b in zip(channels[:-1], channels[1:])]
        self.fuse = nn.ModuleList(
            nn.Conv2d(2 * c, 2, kernel_size, padding=kernel_size // 2) for c in self.fused_channels
        )
        for conv in self.fuse:
            # Zero init: both gates start at sigmoid(0) = 0.5, an even mix of the two levels.
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(
        self, features: List[torch.Tensor], channels: Optional[Sequence[int]] = None
    ) -> List[torch.Tensor]:
        """
        Args:
            features: teacher maps fine to coarse, level ``l`` of shape N x C_l x H_l x W_l.
            channels: if given, fuse only the first ``channels[l]`` channels of level ``l`` (the
                gates still see all of them): the same values as cropping the result, without
                computing the channels a loss would crop away.

        Returns:
            list[Tensor]: ``T'_l``, N x min(C_l, C_{l+1}[, channels[l]]) x H_l x W_l; the last
            one is ``T_L``.
        """
        fused = []
        for i, (conv, c, fine, coarse) in enumerate(
            zip(self.fuse, self.fused_channels, features, features[1:])
        ):
            fine, coarse = crop_channels(fine, c), crop_channels(coarse, c)
            kwargs = {} if self.upsample == "nearest" else {"align_corners": False}

            def resize(x, size=fine.shape[-2:], kwargs=kwargs):
                return F.interpolate(x, size=size, mode=self.upsample, **kwargs)

            gates = torch.sigmoid(gate_logits(conv, fine, coarse, resize))  # N x 2 x H x W
            if channels is not None:
                fine, coarse = crop_channels(fine, channels[i]), crop_channels(coarse, channels[i])
            fused.append(fine * gates[:, :1] + resize(coarse) * gates[:, 1:])
        return fused + [features[-1]]


def cross_layer_pairs(num_levels: int, mode: str) -> List[Tuple[int, int]]:
    """
    Ordered (guide i, guided j) level pairs of the cross-layer loss.

    Args:
        num_levels: number of levels L.
        mode: "adjacent" for (i, i+1) and (i+1, i); "all" for every i != j.
    """
    if mode == "adjacent":
        return [p for i in range(num_levels - 1) for p in ((i, i + 1), (i + 1, i))]
    if mode == "all":
        return [(i, j) for i in range(num_levels) for j in range(num_levels) if i != j]
    raise ValueError(f"SHARED_KD.CROSS_PAIRS must be 'adjacent' or 'all', got {mode!r}")


@DISTILL_LOSS_REGISTRY.register()
class SharedKDLoss(nn.Module):
    """
    Shared-KD's feature losses; logs ``loss_sharedkd_ident`` and ``loss_sharedkd_cross``
    (each already multiplied by ALPHA).
    """

    @configurable
    def __init__(
        self,
        *,
        in_features: List[str],
        teacher_channels: List[int],
        alpha: float = 2.0,
        teacher_share: bool = True,
        identical: bool = True,
        cross: bool = True,
        cross_pairs: str = "adjacent",
        tsm_upsample: str = "nearest",
        tsm_kernel_size: int = 3,
    ):
        """
        Args:
            in_features: level names, fine to coarse.
            teacher_channels: the teacher's channels for each of ``in_features``.
            alpha: weight of both terms (the paper's alpha), >= 0.
            teacher_share: fuse adjacent teacher levels with a TSM before L_ident.
            identical: compute L_ident (teacher -> student, same level).
            cross: compute L_cross (student level -> student level).
            cross_pairs: "adjacent" or "all" (see :func:`cross_layer_pairs`).
            tsm_upsample, tsm_kernel_size: see :class:`TeacherShareModule`.
        """
        super().__init__()
        if len(teacher_channels) != len(in_features):
            raise ValueError(
                f"teacher_channels has {len(teacher_channels)} entries for "
                f"{len(in_features)} in_features {list(in_features)}"
            )
        if alpha < 0:
            raise ValueError(f"MODEL.DISTILL.SHARED_KD.ALPHA must be >= 0, got {alpha}")
        self.in_features = list(in_features)
        self.alpha = float(alpha)
        self.identical = identical
        self.cross = cross
        self.pairs = cross_layer_pairs(len(self.in_features), cross_pairs)
        # The TSM only shapes the identical-layer target: without L_ident it would be unused
        # (and DDP rejects parameters that get no gradient).
        self.tsm = (
            TeacherShareModule(teacher_channels, tsm_upsample, tsm_kernel_size)
            if teacher_share and identical and len(self.in_features) > 1
            else None
        )

    @property
    def needs_guide(self) -> bool:
        """Only the identical-layer term reads the teacher."""
        return self.identical

    @classmethod
    def from_config(cls, cfg, student_shapes, teacher_shapes, guide=None):
        c = cfg.MODEL.DISTILL.SHARED_KD
        in_features = list(student_shapes)
        return {
            "in_features": in_features,
            "teacher_channels": [teacher_shapes[f].channels for f in in_features],
            "alpha": c.ALPHA,
            "teacher_share": c.TEACHER_SHARE,
            "identical": c.IDENTICAL,
            "cross": c.CROSS,
            "cross_pairs": c.CROSS_PAIRS,
            "tsm_upsample": c.TSM_UPSAMPLE,
            "tsm_kernel_size": c.TSM_KERNEL_SIZE,
        }

    def identical_loss(self, student: List[torch.Tensor], teacher: List[torch.Tensor]):
        """``mean_l || A(S_l) - A(T'_l) ||^2`` on lists of maps, fine to coarse."""
        targets = teacher
        if self.tsm is not None:
            # align_pair keeps min(C_S, C_T') channels of each level: fuse no more than that.
            targets = self.tsm(teacher, channels=[s.shape[1] for s in student])
        terms = [F.mse_loss(*align_pair(s, t)) for s, t in zip(student, targets)]
        return torch.stack(terms).mean()

    def cross_loss(self, student: List[torch.Tensor]):
        """``mean_(i,j) || A(S_j, like=S_i) - sg(A(S_i, like=S_j)) ||^2``."""
        if not self.pairs:  # a single level: keep the graph alive for DDP
            return student[0].sum() * 0.0
        # (i, j) and (j, i) align the same two maps: pool them once, use each side both ways.
        aligned = {}
        terms = []
        for i, j in self.pairs:
            lo, hi = min(i, j), max(i, j)
            if (lo, hi) not in aligned:
                aligned[lo, hi] = align_pair(student[lo], student[hi])
            at_lo, at_hi = aligned[lo, hi]  # A(S_lo, like=S_hi), A(S_hi, like=S_lo)
            guided, guide = (at_hi, at_lo) if i == lo else (at_lo, at_hi)
            terms.append(F.mse_loss(guided, guide.detach()))
        return torch.stack(terms).mean()

    def forward(
        self, student: DetectorOutputs, teacher: DetectorOutputs
    ) -> Dict[str, torch.Tensor]:
        s = [student.features[f] for f in self.in_features]
        losses = {}
        if self.identical:
            t = [teacher.features[f] for f in self.in_features]
            losses["loss_sharedkd_ident"] = self.alpha * self.identical_loss(s, t)
        if self.cross:
            # Inside the student only: the same for every guide, so computed once per step.
            cross = student.cached("sharedkd_cross", lambda: self.cross_loss(s))
            losses["loss_sharedkd_cross"] = self.alpha * cross
        return losses
