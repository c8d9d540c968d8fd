"""
M-KD's inherit/explore, stage A: per-level auto-encoders trained on a frozen teacher's features.

``train_net.py`` trains it like any model (``MODEL.META_ARCHITECTURE: "TeacherAutoEncoder"``,
with ``MODEL.DISTILL.TEACHER`` naming the teacher); its ``model_final.pth`` is the checkpoint
that stage B reads (``MODEL.DISTILL.INHERIT_EXPLORE.AE_WEIGHTS``, :func:`load_teacher_encoders`).
The checkpoint carries a fingerprint of the teacher's weights, so that stage B can refuse an
auto-encoder of another teacher.
"""

from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY

from ..layers.encoders import LevelAutoEncoder, same_fingerprint, weights_fingerprint
from ..layers.levels import resolve_in_features
from .guide import Guide, as_guide, build_guide, check_input_formats, in_input_format

__all__ = ["TeacherAutoEncoder"]


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
