"""
M-KD's inherit/explore, stage A: per-level auto-encoders trained on a frozen teacher's features.

``train_net.py`` trains it like any model (``MODEL.META_ARCHITECTURE: "TeacherAutoEncoder"``,
with ``MODEL.DISTILL.TEACHER`` naming the teacher); its ``model_final.pth`` is the checkpoint
that stage B reads (``MODEL.DISTILL.INHERIT_EXPLORE.AE_WEIGHTS``, :func:`load_teacher_encoders`).
The checkpoint carries a fingerprint of the teacher's weights, so that stage B can refuse an
auto-encoder of another teacher.
"""

import os
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY

from ..checkpoint import load_checkpoint_file
from .guide import Guide, as_guide, build_guide, check_input_formats, in_input_format
from .levels import resolve_in_features

__all__ = [
    "LevelAutoEncoder",
    "TeacherAutoEncoder",
    "conv_encoder",
    "load_teacher_encoders",
    "same_fingerprint",
    "weights_fingerprint",
]


def conv_encoder(in_channels: int, latent: int) -> nn.Sequential:
    """Two 3x3 convs mapping ``N x in_channels x H x W`` to ``N x latent x H x W``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, latent, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(latent, latent, 3, padding=1),
    )


class LevelAutoEncoder(nn.Module):
    """Encoder ``E`` (C -> latent) and decoder ``D`` (latent -> C) for one FPN level."""

    def __init__(self, channels: int, latent: int):
        super().__init__()
        self.encoder = conv_encoder(channels, latent)
        self.decoder = nn.Sequential(
            nn.Conv2d(latent, latent, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(latent, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``D(E(x))``, the same shape as ``x``."""
        return self.decoder(self.encoder(x))


def weights_fingerprint(model: nn.Module) -> torch.Tensor:
    """
    A cheap identity of a model's weights: the float64 sum of every parameter and buffer (on
    CPU). Different architectures or trained weights give different vectors.
    """
    tensors = list(model.parameters()) + list(model.buffers())
    return torch.stack([t.detach().double().sum() for t in tensors]).cpu()


def same_fingerprint(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two :func:`weights_fingerprint` vectors are of the same weights (up to rounding)."""
    return a.shape == b.shape and torch.allclose(a.cpu(), b.cpu(), rtol=1e-6, atol=1e-6)


@META_ARCH_REGISTRY.register()
class TeacherAutoEncoder(nn.Module):
    """
    Trains ``L_ae = mean_l ||T_l - D(E(T_l))||^2`` on the frozen teacher's FPN levels.

    Training returns ``{"loss_ae": ...}``; evaluation returns the same reconstruction error
    (there is nothing to detect, so its configs set ``DATASETS.TEST`` to ``()``).
    """

    @configurable
    def __init__(
        self,
        *,
        teacher: Union[Guide, nn.Module],
        in_features: List[str],
        shapes: Dict[str, ShapeSpec],
        latent: int,
        input_format: Optional[str] = None,
    ):
        """
        Args:
            teacher: the frozen teacher (a :class:`Guide`, or a bare detector).
            in_features: its levels to encode, fine to coarse.
            shapes: its levels' shapes.
            latent: channels of the latent code.
            input_format: the channel order of the training images; None: the teacher's.
        """
        super().__init__()
        if latent < 1:
            raise ValueError(f"MODEL.DISTILL.INHERIT_EXPLORE.LATENT must be >= 1, got {latent}")
        guide = as_guide(teacher, input_format or "BGR")
        teacher = guide.model
        self._flip = check_input_formats(
            input_format or guide.input_format, guide.input_format, "teacher"
        )
        self._teacher = (teacher,)  # frozen and kept out of parameters()/state_dict()
        self.in_features = list(in_features)
        self.autoencoders = nn.ModuleDict(
            {f: LevelAutoEncoder(shapes[f].channels, latent) for f in self.in_features}
        )
        self.register_buffer("teacher_fingerprint", weights_fingerprint(teacher))
        self._register_load_state_dict_pre_hook(self._refuse_other_teachers)

    def _refuse_other_teachers(self, state_dict, prefix, *args):
        # Resuming with another TEACHER.WEIGHTS would mix two teachers in one auto-encoder.
        saved = state_dict.get(prefix + "teacher_fingerprint")
        if saved is not None and not same_fingerprint(saved, self.teacher_fingerprint):
            raise ValueError(
                "This auto-encoder checkpoint was trained on another teacher than "
                "MODEL.DISTILL.TEACHER.WEIGHTS; start a new OUTPUT_DIR instead of resuming."
            )

    @classmethod
    def from_config(cls, cfg):
        d = cfg.MODEL.DISTILL
        teacher = build_guide(
            d.TEACHER.CONFIG_FILE, d.TEACHER.WEIGHTS, d.TEACHER.OPTS, cfg.MODEL.DEVICE
        )
        shapes = teacher.model.backbone.output_shape()
        return {
            "teacher": teacher,
            "in_features": resolve_in_features(d.IN_FEATURES, shapes, "teacher"),
            "shapes": shapes,
            "latent": d.INHERIT_EXPLORE.LATENT,
            "input_format": cfg.INPUT.FORMAT,
        }

    @property
    def teacher(self):
        return self._teacher[0]

    @property
    def device(self):
        return self.teacher_fingerprint.device

    def forward(self, batched_inputs):
        with torch.no_grad():
            images = self.teacher.preprocess_image(in_input_format(batched_inputs, self._flip))
            features = self.teacher.backbone(images.tensor)
        terms = [
            F.mse_loss(self.autoencoders[f](features[f]), features[f]) for f in self.in_features
        ]
        return {"loss_ae": torch.stack(terms).mean()}


def load_teacher_encoders(path, in_features, teacher_channels, latent, teacher_fingerprint):
    """
    The frozen per-level encoders ``E`` of a :class:`TeacherAutoEncoder` checkpoint (stage A),
    checked against the teacher that stage B distils from.

    Args:
        path: the checkpoint (``MODEL.DISTILL.INHERIT_EXPLORE.AE_WEIGHTS``).
        in_features: the levels to load, fine to coarse.
        teacher_channels: the teacher's channels of each level.
        latent: channels of the latent code (``MODEL.DISTILL.INHERIT_EXPLORE.LATENT``).
        teacher_fingerprint: :func:`weights_fingerprint` of the teacher.

    Returns:
        nn.ModuleDict: level -> encoder, frozen.

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
    if not same_fingerprint(state["teacher_fingerprint"], teacher_fingerprint):
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
