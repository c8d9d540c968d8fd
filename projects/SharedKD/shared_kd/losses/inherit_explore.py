"""
M-KD's inherit/explore, stage B (IE-KD, Huang et al. 2021), as METHODS.md reads it.

The student's FPN channels at each level are split in two halves, inherit ``S^inh`` (the first
``C // 2``) and explore ``S^exp`` (the rest). Student-side encoders map each half into the
latent space of the teacher's auto-encoder (trained in stage A, frozen here). With
``F(x) = x / ||x||_2`` per sample (flattened):

    L_inh = ||F(E_inh(S^inh)) - F(E(T))||_1        L_exp = -||F(E_exp(S^exp)) - F(E(T))||_1

each a mean over elements, averaged over levels. For unit vectors of D elements the mean
absolute difference lies in [0, 2 / sqrt(D)], so ``L_exp`` is bounded.
"""

from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import CfgNode as CN
from detectron2.config import configurable

from ..layers.alignment import align_pair
from ..layers.encoders import conv_encoder, load_teacher_encoders, weights_fingerprint
from ..layers.outputs import DetectorOutputs
from .base import DistillLoss
from .build import DISTILL_LOSS_REGISTRY

__all__ = ["InheritExploreLoss"]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.flatten(1).float(), dim=1)


@DISTILL_LOSS_REGISTRY.register()
class InheritExploreLoss(DistillLoss):
    """Inherit and explore losses; logs ``loss_ie_inherit`` and ``loss_ie_explore``."""

    PER_GUIDE = False  # against the teacher's auto-encoder only
    CONFIG_NODE = "INHERIT_EXPLORE"

    @classmethod
    def add_config(cls, cfg):
        d = cls.keyword_defaults()  # the one source of the defaults
        # M-KD inherit/explore (IE-KD): stage A trains per-level auto-encoders on the frozen
        # teacher's features (META_ARCHITECTURE "TeacherAutoEncoder"); stage B splits the student's
        # FPN channels into an inherit and an explore half and compares each, through encoders, with
        # the teacher's latent code.
        cfg.MODEL.DISTILL.INHERIT_EXPLORE = CN()
        # Channels of the latent code (stage A and B must agree), >= 1.
        cfg.MODEL.DISTILL.INHERIT_EXPLORE.LATENT = d["latent"]
        # Stage B: the auto-encoder checkpoint written by stage A (its model_final.pth).
        cfg.MODEL.DISTILL.INHERIT_EXPLORE.AE_WEIGHTS = ""
        # Weight of L_inh = ||F(E_s(S_inh)) - F(E(T))||_1, >= 0.
        cfg.MODEL.DISTILL.INHERIT_EXPLORE.INHERIT_WEIGHT = d["inherit_weight"]
        # Weight of L_exp = -||F(E_s(S_exp)) - F(E(T))||_1, >= 0.
        cfg.MODEL.DISTILL.INHERIT_EXPLORE.EXPLORE_WEIGHT = d["explore_weight"]

    @configurable
    def __init__(
        self,
        *,
        in_features: List[str],
        student_channels: List[int],
        teacher_encoders: nn.ModuleDict,
        latent: int = 32,
        inherit_weight: float = 1.0,
        explore_weight: float = 1.0,
    ):
        """
        Args:
            in_features: levels, fine to coarse.
            student_channels: the student's channels per level (split C // 2 + rest).
            teacher_encoders: frozen level -> encoder ``E`` from stage A.
            latent: channels of the latent code.
            inherit_weight, explore_weight: weights of the two terms, >= 0.
        """
        super().__init__()
        self.check_weight("INHERIT_EXPLORE.INHERIT_WEIGHT", inherit_weight)
        self.check_weight("INHERIT_EXPLORE.EXPLORE_WEIGHT", explore_weight)
        if min(student_channels) < 2:
            raise ValueError("Inherit/explore splits the student's channels: it needs >= 2")
        self.in_features = list(in_features)
        self.teacher_encoders = teacher_encoders
        self.split = {f: c // 2 for f, c in zip(self.in_features, student_channels)}
        self.inherit = nn.ModuleDict(
            {f: conv_encoder(c // 2, latent) for f, c in zip(self.in_features, student_channels)}
        )
        self.explore = nn.ModuleDict(
            {
                f: conv_encoder(c - c // 2, latent)
                for f, c in zip(self.in_features, student_channels)
            }
        )
        self.inherit_weight, self.explore_weight = inherit_weight, explore_weight

    @classmethod
    def from_shapes(
        cls, student_shapes, guide_shapes, guide=None, max_iter=0, ae_weights="", **options
    ):
        """``ae_weights``: stage A's checkpoint, whose encoders are loaded (checked against
        ``guide``, the teacher)."""
        in_features = list(student_shapes)
        if guide is None:
            raise ValueError("InheritExploreLoss needs the teacher model to check its auto-encoder")
        latent = options.get("latent", cls.keyword_defaults()["latent"])
        encoders = load_teacher_encoders(
            ae_weights,
            in_features,
            [guide_shapes[f].channels for f in in_features],
            latent,
            weights_fingerprint(guide),
        )
        return {
            "in_features": in_features,
            "student_channels": [student_shapes[f].channels for f in in_features],
            "teacher_encoders": encoders,
            **options,
        }

    def forward(self, student: DetectorOutputs, guide: DetectorOutputs) -> Dict[str, torch.Tensor]:
        inherit, explore = [], []
        for f in self.in_features:
            s, h = student.features[f], self.split[f]
            with torch.no_grad():
                code = self.teacher_encoders[f](guide.features[f])  # the teacher's: PER_GUIDE False
            s_inh, t_inh = align_pair(self.inherit[f](s[:, :h]), code)
            s_exp, t_exp = align_pair(self.explore[f](s[:, h:]), code)
            inherit.append((_unit(s_inh) - _unit(t_inh)).abs().mean())
            explore.append(-(_unit(s_exp) - _unit(t_exp)).abs().mean())
        return {
            "loss_ie_inherit": self.inherit_weight * torch.stack(inherit).mean(),
            "loss_ie_explore": self.explore_weight * torch.stack(explore).mean(),
        }
