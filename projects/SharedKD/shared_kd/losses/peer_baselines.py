"""
Peer feature-distillation baselines, in the same harness as Shared-KD so that a user compares
methods with one config change (``MODEL.DISTILL.LOSSES``):

- :class:`FitNetsLoss`: FitNets-style hints on every FPN level, ``mean_l ||A(S_l) - A(T_l)||^2``
  (Romero et al., ICLR 2015, without the learned regressor: the same pooling and channel
  cropping as Shared-KD), i.e. Shared-KD's identical-layer term without the TSM;
- :class:`PKDLoss`: PKD (Cao et al., "PKD: General Distillation Framework for Object Detectors
  via Pearson Correlation Coefficient", NeurIPS 2022): both maps standardised per channel,
  ``sum_l ||std(S_l) - std(T_l)||^2 / 2`` (a mean over elements per level), which is
  ``1 - Pearson correlation`` averaged over channels.
"""

from typing import Dict, List

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import configurable

from ..layers.alignment import align_pair
from ..layers.outputs import DetectorOutputs
from .base import DistillLoss
from .build import DISTILL_LOSS_REGISTRY
from .feature_distance import squared_distance

__all__ = ["FitNetsLoss", "PKDLoss"]


def _level_distances(
    student: DetectorOutputs, guide: DetectorOutputs, in_features: List[str], normalize: str
) -> List[torch.Tensor]:
    """``D(A(S_l), A(T_l))`` for every level, fine to coarse."""
    return [
        squared_distance(*align_pair(student.features[f], guide.features[f]), normalize)
        for f in in_features
    ]


@DISTILL_LOSS_REGISTRY.register()
class FitNetsLoss(DistillLoss):
    """``WEIGHT * mean_l ||A(S_l) - A(T_l)||^2``; logs ``loss_fitnets``."""

    CONFIG_NODE = "FITNETS"

    @classmethod
    def add_config(cls, cfg):
        # Peer baseline, FitNets-style hints (Romero et al. 2015) on FPN levels, no learned
        # regressor: L = WEIGHT * mean_l ||A(S_l) - A(T_l)||^2 (Shared-KD's L_ident without a TSM).
        cfg.MODEL.DISTILL.FITNETS = CN()
        # Weight of the term, >= 0.
        cfg.MODEL.DISTILL.FITNETS.WEIGHT = cls.keyword_defaults()["weight"]

    @configurable
    def __init__(self, *, in_features: List[str], weight: float = 2.0):
        """
        Args:
            in_features: level names, fine to coarse.
            weight: weight of the term, >= 0.
        """
        super().__init__()
        self.check_weight("FITNETS.WEIGHT", weight)
        self.in_features, self.weight = list(in_features), float(weight)

    @classmethod
    def from_shapes(cls, student_shapes, guide_shapes, guide=None, max_iter=0, **options):
        return {"in_features": list(student_shapes), **options}

    def forward(self, student: DetectorOutputs, guide: DetectorOutputs) -> Dict[str, torch.Tensor]:
        terms = _level_distances(student, guide, self.in_features, "none")
        return {"loss_fitnets": self.weight * torch.stack(terms).mean()}


@DISTILL_LOSS_REGISTRY.register()
class PKDLoss(DistillLoss):
    """``WEIGHT * sum_l ||std(A(S_l)) - std(A(T_l))||^2 / 2``; logs ``loss_pkd``."""

    CONFIG_NODE = "PKD"

    @classmethod
    def add_config(cls, cfg):
        # Peer baseline, PKD (Cao et al., NeurIPS 2022): Pearson correlation of FPN levels,
        # L = WEIGHT * sum_l ||std(A(S_l)) - std(A(T_l))||^2 / 2, std = per-channel standardisation.
        cfg.MODEL.DISTILL.PKD = CN()
        # Weight of the term (per level: the levels' terms are summed, as in PKD), >= 0.
        cfg.MODEL.DISTILL.PKD.WEIGHT = cls.keyword_defaults()["weight"]

    @configurable
    def __init__(self, *, in_features: List[str], weight: float = 6.0):
        """
        Args:
            in_features: level names, fine to coarse.
            weight: weight of each level's term, >= 0 (PKD sums the levels).
        """
        super().__init__()
        self.check_weight("PKD.WEIGHT", weight)
        self.in_features, self.weight = list(in_features), float(weight)

    @classmethod
    def from_shapes(cls, student_shapes, guide_shapes, guide=None, max_iter=0, **options):
        return {"in_features": list(student_shapes), **options}

    def forward(self, student: DetectorOutputs, guide: DetectorOutputs) -> Dict[str, torch.Tensor]:
        terms = _level_distances(student, guide, self.in_features, "channel")
        return {"loss_pkd": self.weight * torch.stack(terms).sum() / 2}
