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

import os
from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import configurable

from ..checkpoint import load_checkpoint_file
from ..modeling.alignment import align_pair
from ..modeling.autoencoder import conv_encoder, weights_fingerprint
from ..modeling.outputs import DetectorOutputs
from .build import DISTILL_LOSS_REGISTRY

__all__ = ["InheritExploreLoss", "load_teacher_encoders"]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.flatten(1).float(), dim=1)


def load_teacher_encoders(path, in_features, teacher_channels, latent, teacher_fingerprint):
    """
    The frozen per-level encoders ``E`` of a stage-A checkpoint, checked against this teacher.

    Raises:
        FileNotFoundError, ValueError: a missing file, an auto-encoder of another teacher, or one
        whose levels, channels or latent size do not match.
    """
    key = "MODEL.DISTILL.INHERIT_EXPLORE.AE_WEIGHTS"
    if not path:
        raise ValueError(
            f"{key} is empty: train the teacher's auto-encoder first (a config with "
            "META_ARCHITECTURE 'TeacherAutoEncoder') and point this at its model_final.pth."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Auto-encoder checkpoint {path!r} not found ({key}).")
    state = load_checkpoint_file(path)  # weights_only: tensors and plain containers
    state = state.get("model", state)
    if "teacher_fingerprint" not in state:
        raise ValueError(f"{path!r} is not a TeacherAutoEncoder checkpoint ({key}).")
    saved = state["teacher_fingerprint"]
    if saved.shape != teacher_fingerprint.shape or not torch.allclose(
        saved, teacher_fingerprint, rtol=1e-6, atol=1e-6
    ):
        raise ValueError(
            f"The auto-encoder {path!r} was trained on another teacher than "
            "MODEL.DISTILL.TEACHER.WEIGHTS. Train it again with this teacher (stage A)."
        )
    encoders = nn.ModuleDict(
        {f: conv_encoder(c, latent) for f, c in zip(in_features, teacher_channels)}
    )
    # stage A's keys: autoencoders.<level>.encoder.<i>.weight -> <level>.<i>.weight
    found = {}
    for f in in_features:
        prefix = f"autoencoders.{f}.encoder."
        found.update(
            {f + "." + k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        )
    try:
        encoders.load_state_dict(found, strict=True)
    except RuntimeError as e:
        raise ValueError(
            f"The auto-encoder {path!r} does not fit (levels {in_features}, teacher channels "
            f"{teacher_channels}, MODEL.DISTILL.INHERIT_EXPLORE.LATENT {latent}): {e}"
        ) from e
    return encoders.requires_grad_(False)


@DISTILL_LOSS_REGISTRY.register()
class InheritExploreLoss(nn.Module):
    """Inherit and explore losses; logs ``loss_ie_inherit`` and ``loss_ie_explore``."""

    PER_GUIDE = False  # against the teacher's auto-encoder only

    @configurable
    def __init__(
        self,
        *,
        in_features: List[str],
        student_channels: List[int],
        teacher_encoders: nn.ModuleDict,
        latent: int,
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
        if inherit_weight < 0 or explore_weight < 0:
            raise ValueError(
                "MODEL.DISTILL.INHERIT_EXPLORE.INHERIT_WEIGHT/EXPLORE_WEIGHT must be >= 0, got "
                f"{inherit_weight}, {explore_weight}"
            )
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
    def from_config(cls, cfg, student_shapes, guide_shapes, guide=None):
        ie = cfg.MODEL.DISTILL.INHERIT_EXPLORE
        in_features = list(student_shapes)
        if guide is None:
            raise ValueError("InheritExploreLoss needs the teacher model to check its auto-encoder")
        encoders = load_teacher_encoders(
            ie.AE_WEIGHTS,
            in_features,
            [guide_shapes[f].channels for f in in_features],
            ie.LATENT,
            weights_fingerprint(guide),
        )
        return {
            "in_features": in_features,
            "student_channels": [student_shapes[f].channels for f in in_features],
            "teacher_encoders": encoders,
            "latent": ie.LATENT,
            "inherit_weight": ie.INHERIT_WEIGHT,
            "explore_weight": ie.EXPLORE_WEIGHT,
        }

    def forward(
        self, student: DetectorOutputs, teacher: DetectorOutputs
    ) -> Dict[str, torch.Tensor]:
        inherit, explore = [], []
        for f in self.in_features:
            s, h = student.features[f], self.split[f]
            with torch.no_grad():
                code = self.teacher_encoders[f](teacher.features[f])
            s_inh, t_inh = align_pair(self.inherit[f](s[:, :h]), code)
            s_exp, t_exp = align_pair(self.explore[f](s[:, h:]), code)
            inherit.append((_unit(s_inh) - _unit(t_inh)).abs().mean())
            explore.append(-(_unit(s_exp) - _unit(t_exp)).abs().mean())
        return {
            "loss_ie_inherit": self.inherit_weight * torch.stack(inherit).mean(),
            "loss_ie_explore": self.explore_weight * torch.stack(explore).mean(),
        }
