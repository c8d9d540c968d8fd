"""
The per-level convolutional encoders of M-KD's inherit/explore (stage A trains them on the
teacher, inside :class:`shared_kd.modeling.autoencoder.TeacherAutoEncoder`; stage B's loss loads
them frozen) and the weights fingerprint that ties an auto-encoder to its teacher.
"""

import os

import torch
import torch.nn as nn

from ..checkpoint import load_checkpoint_file

__all__ = [
    "LevelAutoEncoder",
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
