"""
M-KD's per-guide losses (SPIE 12506, 2022), as docs/METHODS.md reads them: soft
targets with an annealed temperature, attention transfer and FSP relations. Teaching assistants
are handled by the wrapper (each guide gets its own instance of these losses); inherit/explore
lives in :mod:`shared_kd.losses.inherit_explore`.
"""

import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.utils.events import get_event_storage

from ..layers.alignment import align_pair, crop_channels, pool_to
from ..layers.outputs import DetectorOutputs
from .base import DistillLoss
from .build import DISTILL_LOSS_REGISTRY

__all__ = [
    "AttentionTransferLoss",
    "FSPLoss",
    "SoftTargetKDLoss",
    "attention_map",
    "fsp_matrix",
    "soft_target_kd",
    "temperature_at",
]


def temperature_at(iteration: int, max_iter: int, t_start: float, t_end: float, schedule: str):
    """
    The annealed temperature at ``iteration`` (0-based) of a ``max_iter``-iteration run:
    ``t_start`` at the first iteration, ``t_end`` at the last (``max_iter - 1``) and after.
    """
    frac = min(max(iteration / max(max_iter - 1, 1), 0.0), 1.0)
    if schedule == "linear":
        return t_start + (t_end - t_start) * frac
    if schedule == "cosine":
        return t_end + (t_start - t_end) * 0.5 * (1.0 + math.cos(math.pi * frac))
    raise ValueError(f"MODEL.DISTILL.KD.SCHEDULE must be 'linear' or 'cosine', got {schedule!r}")


def soft_target_kd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    activation: str,
    normalizer: Optional[float] = None,
) -> torch.Tensor:
    """
    ``T^2 * KL(p_T || p_S)`` summed over rows and divided by ``normalizer`` (by default M: the
    mean over rows).

    Args:
        student_logits, teacher_logits: M x K logits of the same M boxes or locations.
        temperature: T > 0.
        activation: "softmax" (one distribution over K per row) or "sigmoid" (K independent
            binary distributions per row, their KLs summed).
        normalizer: > 0, what the sum over rows is divided by; None: M.

    Returns:
        Tensor: a scalar; 0 (still attached to the student's graph) when M is 0.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"Soft-target KD pairs the student's and the guide's logits one to one, but their "
            f"shapes differ: {tuple(student_logits.shape)} vs {tuple(teacher_logits.shape)} "
            "(dense heads need the same levels, strides and anchors per location)."
        )
    if student_logits.numel() == 0:
        return student_logits.sum() * 0.0
    s = student_logits.float() / temperature
    t = teacher_logits.float() / temperature
    if activation == "softmax":
        kl = F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), reduction="none", log_target=True)
    elif activation == "sigmoid":
        p_t = torch.sigmoid(t)
        kl = p_t * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p_t) * (
            F.logsigmoid(-t) - F.logsigmoid(-s)
        )
    else:
        raise ValueError(f"Unknown logit activation {activation!r}")
    per_row = kl.sum(1)
    if normalizer is not None and not normalizer > 0:
        raise ValueError(f"The soft targets' normalizer must be > 0, got {normalizer}")
    total = per_row.mean() if normalizer is None else per_row.sum() / normalizer
    return temperature**2 * total


@DISTILL_LOSS_REGISTRY.register()
class SoftTargetKDLoss(DistillLoss):
    """Hinton's soft targets on classification logits, temperature annealed; logs ``loss_kd``."""

    NEEDS_LOGITS = True
    CONFIG_NODE = "KD"

    @classmethod
    def add_config(cls, cfg):
        d = cls.keyword_defaults()  # the one source of the defaults
        # M-KD soft targets (Hinton KD): L_kd = T^2 * KL(p_T || p_S) on classification logits of the
        # same boxes (R-CNN: softmax) or locations (RetinaNet/FCOS: per-class sigmoid).
        cfg.MODEL.DISTILL.KD = CN()
        # Weight of L_kd, >= 0 (0.3: the seeded study's best, configs/studies/mkd_faster_rcnn.yaml).
        cfg.MODEL.DISTILL.KD.WEIGHT = d["weight"]
        # Temperature T at the first iteration (> 0). The paper anneals from 5; 2 is the seeded
        # study's best (over 3 classes + background the teacher's targets are nearly flat at 5).
        cfg.MODEL.DISTILL.KD.T_START = d["t_start"]
        # Temperature T at the last iteration, SOLVER.MAX_ITER - 1 (> 0); the paper anneals to 1.
        # Equal to T_START: constant.
        cfg.MODEL.DISTILL.KD.T_END = d["t_end"]
        # Annealing schedule from T_START to T_END: "linear" or "cosine".
        cfg.MODEL.DISTILL.KD.SCHEDULE = d["schedule"]
        # Dense students (RetinaNet, FCOS): what the sum of L_kd over every anchor/point is
        # divided by. "foreground": the student's own focal-loss normaliser (an EMA of the batch's
        # foreground anchors), as its classification loss is (+8.3 AP on the tiny RetinaNet,
        # 128 px; larger images add background anchors to the sum: clip gradients there);
        # "locations": every anchor/point (a mean, ~120x smaller on the tiny RetinaNet, where it
        # left the student unchanged: configs/studies/mkd_retinanet.yaml). R-CNN students always
        # average over their sampled proposals, as their box loss does.
        cfg.MODEL.DISTILL.KD.DENSE_NORMALIZER = d["dense_normalizer"]

    @configurable
    def __init__(
        self,
        *,
        weight: float = 0.3,
        t_start: float = 2.0,
        t_end: float = 1.0,
        schedule: str = "linear",
        dense_normalizer: str = "foreground",
        max_iter: int = 1,
    ):
        """
        Args:
            weight: weight of the term, >= 0.
            t_start, t_end: temperature at the first and at the last iteration, > 0.
            schedule: "linear" or "cosine".
            dense_normalizer: "foreground" (a dense student's sum over locations divided by its
                own ``loss_normalizer``) or "locations" (the mean over locations).
            max_iter: length of the run (``SOLVER.MAX_ITER``).
        """
        super().__init__()
        self.check_weight("KD.WEIGHT", weight)
        if t_start <= 0 or t_end <= 0:
            raise ValueError(f"MODEL.DISTILL.KD.T_START/T_END must be > 0, got {t_start}, {t_end}")
        temperature_at(0, max_iter, t_start, t_end, schedule)  # validates the schedule name
        if dense_normalizer not in ("foreground", "locations"):
            raise ValueError(
                "MODEL.DISTILL.KD.DENSE_NORMALIZER must be 'foreground' or 'locations', got "
                f"{dense_normalizer!r}"
            )
        self.weight, self.t_start, self.t_end = weight, t_start, t_end
        self.schedule, self.dense_normalizer, self.max_iter = schedule, dense_normalizer, max_iter

    @classmethod
    def from_shapes(cls, student_shapes, guide_shapes, guide=None, max_iter=0, **options):
        return {"max_iter": max_iter, **options}

    def temperature(self) -> float:
        """The temperature of the current iteration (from detectron2's EventStorage)."""
        iteration = get_event_storage().iter
        return temperature_at(iteration, self.max_iter, self.t_start, self.t_end, self.schedule)

    def forward(self, student: DetectorOutputs, guide: DetectorOutputs) -> Dict[str, torch.Tensor]:
        def log_temperature():
            t = self.temperature()
            get_event_storage().put_scalar("distill/temperature", t, smoothing_hint=False)
            return t

        t = student.cached("kd_temperature", log_temperature)  # logged once per step
        kd = soft_target_kd(
            student.class_logits,
            guide.class_logits,
            t,
            student.logit_activation,
            self._normalizer(student),
        )
        return {"loss_kd": self.weight * kd}

    def _normalizer(self, student: DetectorOutputs) -> Optional[float]:
        """None (the mean over rows) or a dense student's foreground count."""
        if student.logit_activation != "sigmoid" or self.dense_normalizer == "locations":
            return None
        if student.logit_normalizer is None:
            raise RuntimeError(
                "MODEL.DISTILL.KD.DENSE_NORMALIZER 'foreground' divides dense soft targets by the "
                "student's own focal-loss normaliser, but this student keeps none "
                "(detectron2's RetinaNet and FCOS set loss_normalizer in their training forward): "
                "set MODEL.DISTILL.KD.DENSE_NORMALIZER 'locations' (a mean over every location)."
            )
        return student.logit_normalizer


def attention_map(x: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """``normalize(flatten(mean_c |x|^p))``: N x C x H x W -> N x (H W), unit L2 norm per row."""
    return F.normalize(x.float().abs().pow(p).mean(1).flatten(1), dim=1)


@DISTILL_LOSS_REGISTRY.register()
class AttentionTransferLoss(DistillLoss):
    """``mean_l ||AT(A(S_l)) - AT(A(T_l))||^2`` (mean over positions); logs ``loss_at``."""

    CONFIG_NODE = "AT"

    @classmethod
    def add_config(cls, cfg):
        d = cls.keyword_defaults()  # the one source of the defaults
        # M-KD attention transfer (Zagoruyko & Komodakis):
        # L_at = mean_l ||AT(A(S_l)) - AT(A(T_l))||^2, AT(x) = normalize(flatten(mean_c |x|^p));
        # a mean over positions (the attention-transfer paper weights it 1000).
        cfg.MODEL.DISTILL.AT = CN()
        # Weight of L_at, >= 0 (10: the seeded study's best; the paper's beta 1000 cost AP).
        cfg.MODEL.DISTILL.AT.WEIGHT = d["weight"]
        # Exponent p of the attention map, > 0.
        cfg.MODEL.DISTILL.AT.P = d["p"]

    @configurable
    def __init__(self, *, in_features: List[str], weight: float = 10.0, p: float = 2.0):
        super().__init__()
        self.check_weight("AT.WEIGHT", weight)
        if p <= 0:
            raise ValueError(f"MODEL.DISTILL.AT.P must be > 0, got {p}")
        self.in_features, self.weight, self.p = list(in_features), weight, p

    @classmethod
    def from_shapes(cls, student_shapes, guide_shapes, guide=None, max_iter=0, **options):
        return {"in_features": list(student_shapes), **options}

    def forward(self, student: DetectorOutputs, guide: DetectorOutputs) -> Dict[str, torch.Tensor]:
        terms = []
        for f in self.in_features:
            s, t = align_pair(student.features[f], guide.features[f])
            terms.append(F.mse_loss(attention_map(s, self.p), attention_map(t, self.p)))
        return {"loss_at": self.weight * torch.stack(terms).mean()}


def fsp_matrix(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """
    The FSP ("flow of solution procedure") matrix of two levels.

    Args:
        x: N x C1 x H1 x W1, the finer level (pooled to ``y``'s size).
        y: N x C2 x H x W.

    Returns:
        Tensor: N x C1 x C2, ``x^T y / (H W)`` over positions.
    """
    x = pool_to(x, y.shape[-2:])
    # float32: under AMP an fp16 sum over H*W positions overflows before the division.
    return torch.einsum("nchw,ndhw->ncd", x.float(), y.float()) / (y.shape[-2] * y.shape[-1])


@DISTILL_LOSS_REGISTRY.register()
class FSPLoss(DistillLoss):
    """``mean_l ||G(S_l, S_l+1) - G(T_l, T_l+1)||^2`` over consecutive levels; logs ``loss_fsp``."""

    CONFIG_NODE = "FSP"

    @classmethod
    def add_config(cls, cfg):
        # M-KD FSP relation (Yim et al.): for consecutive levels, G = x^T y / (H W) over channels;
        # L_fsp = mean_l ||G_S - G_T||^2.
        cfg.MODEL.DISTILL.FSP = CN()
        # Weight of L_fsp, >= 0 (0.1: it hurt at every weight measured, least at 0.1).
        cfg.MODEL.DISTILL.FSP.WEIGHT = cls.keyword_defaults()["weight"]

    @configurable
    def __init__(self, *, in_features: List[str], channels: List[int], weight: float = 0.1):
        """
        Args:
            in_features: levels, fine to coarse (at least two).
            channels: per level, ``min(student, guide)`` channels: both sides are cropped to it.
            weight: weight of the term, >= 0.
        """
        super().__init__()
        self.check_weight("FSP.WEIGHT", weight)
        if len(in_features) < 2:
            raise ValueError(f"FSPLoss relates consecutive levels; got only {list(in_features)}")
        self.in_features, self.channels, self.weight = list(in_features), list(channels), weight

    @classmethod
    def from_shapes(cls, student_shapes, guide_shapes, guide=None, max_iter=0, **options):
        return {
            "in_features": list(student_shapes),
            "channels": [
                min(student_shapes[f].channels, guide_shapes[f].channels) for f in student_shapes
            ],
            **options,
        }

    def _matrices(self, features):
        maps = [crop_channels(features[f], c) for f, c in zip(self.in_features, self.channels)]
        return [fsp_matrix(a, b) for a, b in zip(maps, maps[1:])]

    def forward(self, student: DetectorOutputs, guide: DetectorOutputs) -> Dict[str, torch.Tensor]:
        pairs = zip(self._matrices(student.features), self._matrices(guide.features))
        terms = [F.mse_loss(s, t) for s, t in pairs]
        return {"loss_fsp": self.weight * torch.stack(terms).mean()}
