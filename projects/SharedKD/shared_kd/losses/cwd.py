"""
Channel-wise distillation, CWD (Shu et al., "Channel-wise Knowledge Distillation for Dense
Prediction", ICCV 2021), on FPN levels.

Every channel of a map becomes a distribution over its positions,
``phi(x)_c = softmax_(h,w)(x_c / tau)``, and the student matches the teacher channel by channel:

    L = WEIGHT * tau^2 * sum_l mean_(n,c) KL(phi(A(T_l))_nc || phi(A(S_l))_nc)

The student learns where each of the teacher's channels puts its mass (the regions a channel
responds to most), not the scale of the activations. ``A`` is the parameter-free alignment of
the other feature losses (:func:`~shared_kd.layers.alignment.align_pair`; the paper adds a
learned 1x1 conv where the widths differ). The levels' terms are summed, as in the authors'
detection configs (one term per FPN level, weight 5, tau 1). Their code computes the
cross-entropy ``-sum p_T log p_S``; the KL differs from it by the teacher's entropy, a constant:
the same gradients, and 0 for maps that agree.
"""

from typing import Dict, List

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode as CN
from detectron2.config import configurable

from ..layers.alignment import align_pair
from ..layers.outputs import DetectorOutputs
from .base import DistillLoss
from .build import DISTILL_LOSS_REGISTRY

__all__ = ["CWDLoss", "channel_kl"]


def channel_kl(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """
    ``mean_(n,c) KL(softmax_hw(T_nc / tau) || softmax_hw(S_nc / tau))``.

    Args:
        student, teacher: N x C x H x W, the same shape.
        tau: the temperature, > 0.

    Returns:
        Tensor: a float32 scalar (not multiplied by ``tau^2``).
    """
    s = F.log_softmax(student.float().flatten(2) / tau, dim=2)
    t = F.log_softmax(teacher.float().flatten(2) / tau, dim=2)
    return F.kl_div(s, t, reduction="none", log_target=True).sum(2).mean()


@DISTILL_LOSS_REGISTRY.register()
class CWDLoss(DistillLoss):
    """``WEIGHT * tau^2 * sum_l mean_(n,c) KL(phi(A(T_l)) || phi(A(S_l)))``; logs ``loss_cwd``."""

    CONFIG_NODE = "CWD"

    @classmethod
    def add_config(cls, cfg):
        d = cls.keyword_defaults()  # the one source of the defaults
        # Channel-wise distillation, CWD (Shu et al., ICCV 2021): each channel of a level as a
        # distribution over positions, phi(x) = softmax_hw(x / TAU);
        # L = WEIGHT * TAU^2 * sum_l mean_(n,c) KL(phi(A(T_l)) || phi(A(S_l))).
        cfg.MODEL.DISTILL.CWD = CN()
        # Weight of each level's term (the levels' terms are summed), >= 0; the authors' 5.
        cfg.MODEL.DISTILL.CWD.WEIGHT = d["weight"]
        # Temperature tau of the softmax over positions, > 0; the authors' 1 for detection.
        cfg.MODEL.DISTILL.CWD.TAU = d["tau"]

    @configurable
    def __init__(self, *, in_features: List[str], weight: float = 5.0, tau: float = 1.0):
        """
        Args:
            in_features: level names, fine to coarse.
            weight: weight of each level's term, >= 0.
            tau: temperature of the softmax over positions, > 0.
        """
        super().__init__()
        self.check_weight("CWD.WEIGHT", weight)
        if tau <= 0:
            raise ValueError(f"MODEL.DISTILL.CWD.TAU must be > 0, got {tau}")
        self.in_features, self.weight, self.tau = list(in_features), float(weight), float(tau)

    @classmethod
    def from_shapes(cls, student_shapes, guide_shapes, guide=None, max_iter=0, **options):
        return {"in_features": list(student_shapes), **options}

    def forward(self, student: DetectorOutputs, guide: DetectorOutputs) -> Dict[str, torch.Tensor]:
        terms = [
            channel_kl(*align_pair(student.features[f], guide.features[f]), self.tau)
            for f in self.in_features
        ]
        return {"loss_cwd": self.weight * self.tau**2 * torch.stack(terms).sum()}
