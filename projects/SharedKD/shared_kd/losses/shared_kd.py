"""
Shared-KD (Electronics 2024, 13(8):1595), as ``docs/METHODS.md`` of this project reads it.

``L = alpha(t) * (L_ident + CROSS_WEIGHT * L_cross)`` where

- ``L_ident = mean_l D(A(S_l), A(T'_l))``: identical-layer distillation teacher -> student, with
  ``T'`` the Teacher Share Module's convex fusion of adjacent teacher levels;
- ``L_cross = mean_(i,j) D(A(S_j, like=S_i), sg(A(S_i, like=S_j)))``: cross-layer distillation
  inside the student, level ``i`` guiding level ``j``;
- ``alpha(t)`` ramps linearly from 0 to ALPHA over ALPHA_WARMUP_ITERS iterations.

``A`` is :func:`~shared_kd.layers.alignment.align_pair` (pooling + channel cropping); ``D`` is
:func:`~shared_kd.losses.feature_distance.squared_distance`: a mean squared difference, of the
raw maps (the paper) or of per-channel standardised maps (NORMALIZE "channel"), optionally
weighting positions inside ground-truth boxes (FOREGROUND_WEIGHT); averaged over levels or pairs.
"""

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import CfgNode as CN
from detectron2.config import configurable

from ..layers.alignment import align_pair, crop_channels
from ..layers.outputs import DetectorOutputs
from .base import DistillLoss
from .build import DISTILL_LOSS_REGISTRY
from .feature_distance import (
    NORMALIZATIONS,
    current_iteration,
    foreground_weights,
    is_logging_iteration,
    squared_distance,
)

__all__ = [
    "SharedKDLoss",
    "TeacherShareModule",
    "cross_layer_pairs",
    "gate_logits",
    "warmup_factor",
]


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
    ``(a0, a1) = softmax(conv([T_l, up]))`` over the 2 output maps at every pixel, and
    ``T'_l = T_l * a0 + up * a1``: a convex mix of two teacher levels, so the target keeps the
    teacher's scale. The coarsest level passes through. Only the fusion convs are trained (by
    the identical-layer loss, through the target); the teacher's features arrive without
    gradient.

    ``gate="sigmoid"`` gives two independent gates in (0, 1) instead, the first reading of the
    paper. It is kept only to reproduce that reading: trained by the loss whose target they form,
    sigmoid gates collapse to 0 (the cheapest way to match a target is to shrink it), and the
    identical-layer loss becomes an L2 penalty on the student's features.
    """

    GATES = ("softmax", "sigmoid")

    def __init__(
        self,
        channels: Sequence[int],
        upsample: str = "nearest",
        kernel_size: int = 3,
        gate: str = "softmax",
        init_fine: float = 0.5,
        learn_gates: bool = True,
    ):
        """
        Args:
            channels: teacher channels per level, fine to coarse.
            upsample: "nearest" or "bilinear".
            kernel_size: 1 or 3, the fusion conv's kernel.
            gate: "softmax" (convex, a0 + a1 = 1) or "sigmoid" (independent; collapses).
            init_fine: the gate of ``T_l`` at initialisation, in (0, 1); ``up(T_{l+1})``'s is
                ``1 - init_fine``.
            learn_gates: train the fusion convs; False keeps the initial mix (no parameters
                to learn).
        """
        super().__init__()
        if upsample not in ("nearest", "bilinear"):
            raise ValueError(f"TSM_UPSAMPLE must be 'nearest' or 'bilinear', got {upsample!r}")
        if kernel_size not in (1, 3):
            raise ValueError(f"TSM_KERNEL_SIZE must be 1 or 3, got {kernel_size}")
        if gate not in self.GATES:
            raise ValueError(f"TSM_GATE must be one of {self.GATES}, got {gate!r}")
        if not 0.0 < init_fine < 1.0:
            raise ValueError(f"TSM_INIT_FINE must be in (0, 1), got {init_fine}")
        self.upsample = upsample
        self.gate = gate
        # Two adjacent levels of different widths are fused on their common (cropped) channels.
        self.fused_channels = [min(a, b) for a, b in zip(channels[:-1], channels[1:])]
        self.fuse = nn.ModuleList(
            nn.Conv2d(2 * c, 2, kernel_size, padding=kernel_size // 2) for c in self.fused_channels
        )
        # Zero weights: the gates start the same at every pixel, (init_fine, 1 - init_fine).
        logit = math.log(init_fine / (1.0 - init_fine))
        # softmax: a0 = sigmoid(b0 - b1); sigmoid: a0 = sigmoid(b0), a1 = sigmoid(b1)
        bias = [logit / 2, -logit / 2] if gate == "softmax" else [logit, -logit]
        for conv in self.fuse:
            nn.init.zeros_(conv.weight)
            with torch.no_grad():
                conv.bias.copy_(torch.tensor(bias))
            conv.requires_grad_(learn_gates)

    def forward(
        self,
        features: List[torch.Tensor],
        channels: Optional[Sequence[int]] = None,
        return_gates: bool = False,
    ):
        """
        Args:
            features: teacher maps fine to coarse, level ``l`` of shape N x C_l x H_l x W_l.
            channels: if given, fuse only the first ``channels[l]`` channels of level ``l`` (the
                gates still see all of them): the same values as cropping the result, without
                computing the channels a loss would crop away.
            return_gates: also return the gates.

        Returns:
            list[Tensor]: ``T'_l``, N x min(C_l, C_{l+1}[, channels[l]]) x H_l x W_l; the last
            one is ``T_L``. With ``return_gates``, also the list of N x 2 x H_l x W_l gates
            ``(a0, a1)`` of every level but the coarsest.
        """
        fused, all_gates = [], []
        for i, (conv, c, fine, coarse) in enumerate(
            zip(self.fuse, self.fused_channels, features, features[1:])
        ):
            fine, coarse = crop_channels(fine, c), crop_channels(coarse, c)
            kwargs = {} if self.upsample == "nearest" else {"align_corners": False}

            def resize(x, size=fine.shape[-2:], kwargs=kwargs):
                return F.interpolate(x, size=size, mode=self.upsample, **kwargs)

            logits = gate_logits(conv, fine, coarse, resize)  # N x 2 x H x W
            gates = logits.softmax(1) if self.gate == "softmax" else logits.sigmoid()
            if channels is not None:
                fine, coarse = crop_channels(fine, channels[i]), crop_channels(coarse, channels[i])
            fused.append(fine * gates[:, :1] + resize(coarse) * gates[:, 1:])
            all_gates.append(gates)
        fused.append(features[-1])
        return (fused, all_gates) if return_gates else fused


CROSS_DIRECTIONS = ("both", "fine_to_coarse", "coarse_to_fine")


def cross_layer_pairs(num_levels: int, mode: str, direction: str = "both") -> List[Tuple[int, int]]:
    """
    Ordered (guide i, guided j) level pairs of the cross-layer loss; levels are indexed fine
    (0) to coarse.

    Args:
        num_levels: number of levels L.
        mode: "adjacent" for (i, i+1) and (i+1, i); "all" for every i != j.
        direction: "both"; "fine_to_coarse" keeps the pairs whose guide is the finer level
            (i < j); "coarse_to_fine" those whose guide is the coarser one (i > j).
    """
    if mode == "adjacent":
        pairs = [p for i in range(num_levels - 1) for p in ((i, i + 1), (i + 1, i))]
    elif mode == "all":
        pairs = [(i, j) for i in range(num_levels) for j in range(num_levels) if i != j]
    else:
        raise ValueError(f"SHARED_KD.CROSS_PAIRS must be 'adjacent' or 'all', got {mode!r}")
    if direction == "fine_to_coarse":
        return [(i, j) for i, j in pairs if i < j]
    if direction == "coarse_to_fine":
        return [(i, j) for i, j in pairs if i > j]
    if direction != "both":
        raise ValueError(
            f"SHARED_KD.CROSS_DIRECTION must be one of {CROSS_DIRECTIONS}, got {direction!r}"
        )
    return pairs


def warmup_factor(iteration: Optional[int], warmup_iters: int) -> float:
    """
    ``min(1, (iteration + 1) / warmup_iters)``: the share of a loss weight in force at
    ``iteration`` (0-based); 1 without warm-up or outside of training (``iteration`` None).
    """
    if warmup_iters <= 0 or iteration is None:
        return 1.0
    return min(1.0, (iteration + 1) / warmup_iters)


@DISTILL_LOSS_REGISTRY.register()
class SharedKDLoss(DistillLoss):
    """
    Shared-KD's feature losses; logs ``loss_sharedkd_ident`` and ``loss_sharedkd_cross`` (each
    already weighted). The keyword defaults, which are also the config's
    (``MODEL.DISTILL.SHARED_KD``), are the ones the project's study chose (docs/METHODS.md);
    the paper's settings are ``alpha=2, normalize="none", cross=True, tsm_init_fine=0.5,
    tsm_learn_gates=True`` (the ``*_paper`` configs).
    At detectron2's logging period it also logs the TSM's health per level:
    ``distill/tsm_gate0_<level>`` and ``distill/tsm_gate1_<level>`` (mean gates of ``T_l`` and
    of ``up(T_{l+1})``) and ``distill/tsm_rms_ratio_<level>`` (RMS(T'_l) / RMS(T_l); near 1 for
    a healthy target, near 0 for a collapsed one).
    """

    CONFIG_NODE = "SHARED_KD"

    @classmethod
    def add_config(cls, cfg):
        d = cls.keyword_defaults()  # the one source of the defaults
        # Shared-KD (Electronics 2024). Loss = alpha(t) * (L_ident + CROSS_WEIGHT * L_cross).
        cfg.MODEL.DISTILL.SHARED_KD = CN()
        # alpha: weight of the Shared-KD feature losses, >= 0. 15 with NORMALIZE "channel" (PKD's
        # weight, chosen by the study); the paper's best is 2 on raw maps (Table 5: 2, 5, 10, 20).
        cfg.MODEL.DISTILL.SHARED_KD.ALPHA = d["alpha"]
        # Ramp alpha linearly from 0 to ALPHA over this many iterations, >= 0 (0: the paper, none).
        cfg.MODEL.DISTILL.SHARED_KD.ALPHA_WARMUP_ITERS = d["alpha_warmup_iters"]
        # Teacher Share Module: fuse teacher level l with level l+1 (T'_l); off means T'_l = T_l.
        cfg.MODEL.DISTILL.SHARED_KD.TEACHER_SHARE = d["teacher_share"]
        # TSM gates: "softmax" (convex, a0 + a1 = 1: the target keeps the teacher's scale) or
        # "sigmoid" (independent gates; they collapse to 0 in training, kept only to reproduce
        # that).
        cfg.MODEL.DISTILL.SHARED_KD.TSM_GATE = d["tsm_gate"]
        # TSM gate of T_l at initialisation, in (0, 1) (up(T_{l+1}) gets 1 - it); with fixed gates,
        # the mix itself. 0.75 (the studies' choice): the even mix, 0.5, cost 0.5 to 3 AP (paired
        # means over Faster R-CNN, RetinaNet, FCOS and Mask R-CNN; docs/METHODS.md).
        cfg.MODEL.DISTILL.SHARED_KD.TSM_INIT_FINE = d["tsm_init_fine"]
        # Train the TSM's gates (by L_ident, through the target; the paper); False (the study's
        # choice: learned gates drift to the easier of the two levels) keeps the initial mix.
        cfg.MODEL.DISTILL.SHARED_KD.TSM_LEARN_GATES = d["tsm_learn_gates"]
        # TSM upsampling of T_{l+1} to T_l's size: "nearest" or "bilinear".
        cfg.MODEL.DISTILL.SHARED_KD.TSM_UPSAMPLE = d["tsm_upsample"]
        # TSM fusion conv kernel size: 1 or 3.
        cfg.MODEL.DISTILL.SHARED_KD.TSM_KERNEL_SIZE = d["tsm_kernel_size"]
        # Identical-layer loss L_ident = mean_l D(A(S_l), A(T'_l)) (teacher -> student).
        cfg.MODEL.DISTILL.SHARED_KD.IDENTICAL = d["identical"]
        # Cross-layer loss L_cross within the student: level i guides level j (stop-gradient on i).
        # Off by default (the study: it lowered AP at every weight tried); on in the paper.
        cfg.MODEL.DISTILL.SHARED_KD.CROSS = d["cross"]
        # Weight of L_cross relative to L_ident, >= 0 (the paper: 1).
        cfg.MODEL.DISTILL.SHARED_KD.CROSS_WEIGHT = d["cross_weight"]
        # Cross-layer pairs: "adjacent" ((i, i+1) both ways) or "all" (every ordered pair i != j).
        cfg.MODEL.DISTILL.SHARED_KD.CROSS_PAIRS = d["cross_pairs"]
        # Which level of a pair guides: "both" (the paper), "fine_to_coarse" (the finer level
        # guides the coarser) or "coarse_to_fine".
        cfg.MODEL.DISTILL.SHARED_KD.CROSS_DIRECTION = d["cross_direction"]
        # Distance D: "channel" (mean squared difference of maps standardised per channel over batch
        # and positions, as PKD does; the study's choice) or "none" (of the raw maps, the paper).
        cfg.MODEL.DISTILL.SHARED_KD.NORMALIZE = d["normalize"]
        # Weight of positions inside ground-truth boxes in L_ident (background: 1), >= 1; the
        # weighted mean keeps the loss's scale. 1: unweighted (the paper).
        cfg.MODEL.DISTILL.SHARED_KD.FOREGROUND_WEIGHT = d["foreground_weight"]

    @configurable
    def __init__(
        self,
        *,
        in_features: List[str],
        teacher_channels: List[int],
        strides: Optional[List[int]] = None,
        alpha: float = 15.0,
        alpha_warmup_iters: int = 0,
        teacher_share: bool = True,
        identical: bool = True,
        cross: bool = False,
        cross_weight: float = 1.0,
        cross_pairs: str = "adjacent",
        cross_direction: str = "both",
        normalize: str = "channel",
        foreground_weight: float = 1.0,
        tsm_upsample: str = "nearest",
        tsm_kernel_size: int = 3,
        tsm_gate: str = "softmax",
        tsm_init_fine: float = 0.75,
        tsm_learn_gates: bool = False,
        max_iter: int = 0,
    ):
        """
        Args:
            in_features: level names, fine to coarse.
            teacher_channels: the teacher's channels for each of ``in_features``.
            strides: the student's stride of each of ``in_features`` (for foreground weighting).
            alpha: weight of both terms (the paper's alpha), >= 0.
            alpha_warmup_iters: ramp alpha linearly from 0 over this many iterations (0: none).
            teacher_share: fuse adjacent teacher levels with a TSM before L_ident.
            identical: compute L_ident (teacher -> student, same level).
            cross: compute L_cross (student level -> student level).
            cross_weight: weight of L_cross relative to L_ident, >= 0.
            cross_pairs, cross_direction: see :func:`cross_layer_pairs`.
            normalize: "none" or "channel" (see :func:`squared_distance`).
            foreground_weight: weight of positions inside ground-truth boxes in L_ident
                (background positions weigh 1), >= 1; 1 is the paper's unweighted mean.
            tsm_upsample, tsm_kernel_size, tsm_gate, tsm_init_fine, tsm_learn_gates: see
                :class:`TeacherShareModule` (upsample, kernel_size, gate, init_fine,
                learn_gates).
            max_iter: the run's length (``SOLVER.MAX_ITER``), to log health at its last step.
        """
        super().__init__()
        if len(teacher_channels) != len(in_features):
            raise ValueError(
                f"teacher_channels has {len(teacher_channels)} entries for "
                f"{len(in_features)} in_features {list(in_features)}"
            )
        self.check_weight("SHARED_KD.ALPHA", alpha)
        self.check_weight("SHARED_KD.CROSS_WEIGHT", cross_weight)
        if foreground_weight < 1:
            raise ValueError(
                f"MODEL.DISTILL.SHARED_KD.FOREGROUND_WEIGHT must be >= 1, got {foreground_weight}"
            )
        if normalize not in NORMALIZATIONS:
            raise ValueError(
                f"MODEL.DISTILL.SHARED_KD.NORMALIZE must be one of {NORMALIZATIONS}, "
                f"got {normalize!r}"
            )
        if foreground_weight != 1 and (strides is None or len(strides) != len(in_features)):
            raise ValueError("Foreground weighting needs the stride of every level")
        self.in_features = list(in_features)
        self.strides = list(strides) if strides is not None else None
        self.alpha = float(alpha)
        self.alpha_warmup_iters = int(alpha_warmup_iters)
        self.identical = identical
        self.cross = cross
        self.cross_weight = float(cross_weight)
        self.normalize = normalize
        self.foreground_weight = float(foreground_weight)
        self.max_iter = max_iter
        self.pairs = cross_layer_pairs(len(self.in_features), cross_pairs, cross_direction)
        # The TSM only shapes the identical-layer target: without L_ident it would be unused
        # (and DDP rejects parameters that get no gradient).
        self.tsm = (
            TeacherShareModule(
                teacher_channels,
                tsm_upsample,
                tsm_kernel_size,
                tsm_gate,
                init_fine=tsm_init_fine,
                learn_gates=tsm_learn_gates,
            )
            if teacher_share and identical and len(self.in_features) > 1
            else None
        )

    @property
    def needs_guide(self) -> bool:
        """Only the identical-layer term reads the teacher."""
        return self.identical

    @classmethod
    def from_shapes(cls, student_shapes, guide_shapes, guide=None, max_iter=0, **options):
        in_features = list(student_shapes)
        return {
            "in_features": in_features,
            "teacher_channels": [guide_shapes[f].channels for f in in_features],
            "strides": [student_shapes[f].stride for f in in_features],
            "max_iter": max_iter,
            **options,
        }

    def identical_loss(
        self,
        student: List[torch.Tensor],
        teacher: List[torch.Tensor],
        gt_boxes: Optional[List[torch.Tensor]] = None,
    ) -> torch.Tensor:
        """
        ``mean_l D(A(S_l), A(T'_l))`` on lists of maps, fine to coarse.

        Args:
            student, teacher: per level, N x C x H_l x W_l.
            gt_boxes: per image, B_i x 4 ground-truth boxes in input pixels (only read with
                foreground weighting).
        """
        targets = teacher
        if self.tsm is not None:
            # align_pair keeps min(C_S, C_T') channels of each level: fuse no more than that.
            targets, gates = self.tsm(
                teacher, channels=[s.shape[1] for s in student], return_gates=True
            )
            if is_logging_iteration(self.max_iter, self.log_period):
                self._log_tsm_health(teacher, targets, gates)
        terms = []
        for i, (s, t) in enumerate(zip(student, targets)):
            s_aligned, t_aligned = align_pair(s, t)
            weights = None
            if self.foreground_weight != 1.0:
                # positions of the aligned map: the student's stride, scaled if it was pooled
                stride = self.strides[i] * s.shape[-1] / s_aligned.shape[-1]
                weights = foreground_weights(gt_boxes, s_aligned, stride, self.foreground_weight)
            terms.append(squared_distance(s_aligned, t_aligned, self.normalize, weights))
        return torch.stack(terms).mean()

    @torch.no_grad()
    def _log_tsm_health(self, teacher, fused, gates):
        # the teacher's TSM logs under distill/, a teaching assistant's under distill/assistant<i>/
        for name, t, t_fused, g in zip(self.in_features, teacher, fused, gates):
            t = crop_channels(t, t_fused.shape[1])
            ratio = t_fused.float().pow(2).mean().sqrt() / t.float().pow(2).mean().sqrt()
            means = g.float().mean(dim=(0, 2, 3))
            self.put_scalar(f"tsm_gate0_{name}", means[0])
            self.put_scalar(f"tsm_gate1_{name}", means[1])
            self.put_scalar(f"tsm_rms_ratio_{name}", ratio)

    def cross_loss(self, student: List[torch.Tensor]) -> torch.Tensor:
        """``mean_(i,j) D(A(S_j, like=S_i), sg(A(S_i, like=S_j)))``."""
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
            terms.append(squared_distance(guided, guide.detach(), self.normalize))
        return torch.stack(terms).mean()

    def forward(self, student: DetectorOutputs, guide: DetectorOutputs) -> Dict[str, torch.Tensor]:
        s = [student.features[f] for f in self.in_features]
        alpha = self.alpha * warmup_factor(current_iteration(), self.alpha_warmup_iters)
        losses = {}
        if self.identical:
            t = [guide.features[f] for f in self.in_features]
            losses["loss_sharedkd_ident"] = alpha * self.identical_loss(s, t, student.gt_boxes)
        if self.cross:
            # Inside the student only: the same for every guide, so computed once per step.
            cross = student.cached("sharedkd_cross", lambda: self.cross_loss(s))
            losses["loss_sharedkd_cross"] = alpha * self.cross_weight * cross
        return losses
