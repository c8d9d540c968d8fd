"""
Frozen detectors: a teacher (or teaching assistant) built from its own config file and weights,
loaded strictly; :func:`build_frozen_detector` is the build-load-freeze step that the analysis
tools and the benchmark share.
"""

import logging
import os
from typing import Optional

import torch.nn as nn
import yaml
from detectron2.modeling import build_model

from ..checkpoint import StrictCheckpointer
from ..config import load_config, resolve_config_file
from ..export import student_config

__all__ = ["build_frozen_detector", "build_teacher", "load_guide_config"]

logger = logging.getLogger(__name__)


# role -> (the config key naming its config file(s), the key naming its weights)
_KEYS = {
    "teacher": ("MODEL.DISTILL.TEACHER.CONFIG_FILE", "MODEL.DISTILL.TEACHER.WEIGHTS"),
    "assistant": ("MODEL.DISTILL.ASSISTANTS.CONFIG_FILES", "MODEL.DISTILL.ASSISTANTS.WEIGHTS"),
}


def load_guide_config(config_file, opts=(), device="cpu", role="teacher"):
    """
    The config of a teacher (or teaching assistant), as a plain detectron2 config.

    A SharedKD distillation config is accepted too (a TA trained as a student): its student is
    the model (:func:`shared_kd.export.student_config`). Relative paths are read from the current
    directory, like ``--config-file``.

    Args:
        config_file (str): the guide's yaml config; ``model_zoo:<name>`` names a config of
            detectron2's model zoo, e.g. ``model_zoo:COCO-Detection/retinanet_R_101_FPN_3x.yaml``.
        opts (list[str]): KEY VALUE overrides.
        device (str): where the guide runs (the student's ``MODEL.DEVICE``).
        role (str): "teacher" or "assistant", for error messages.
    """
    key = _KEYS[role][0]
    if not config_file:
        raise ValueError(
            f"{key} is empty: set it to the {role}'s detectron2 config file (the yaml it was "
            "trained with)."
        )
    config_file = resolve_config_file(config_file)
    if not os.path.isfile(config_file):
        raise FileNotFoundError(
            f"{role.capitalize()} config {config_file!r} not found ({key}); relative paths are "
            "read from the current directory."
        )
    try:
        cfg = load_config(config_file, opts)
    except (OSError, yaml.YAMLError, KeyError, ValueError, TypeError, AssertionError) as e:
        raise ValueError(
            f"{role.capitalize()} config {config_file!r} ({key}) cannot be read: "
            f"{type(e).__name__}: {e}. It must be the detectron2 yaml the {role} was trained "
            "with (its _BASE_ files beside it)."
        ) from e
    cfg = student_config(cfg)
    cfg.MODEL.DEVICE = device
    cfg.MODEL.WEIGHTS = ""
    cfg.freeze()
    return cfg


def build_frozen_detector(
    cfg, weights: Optional[str] = None, config_file: str = "", key: str = "MODEL.WEIGHTS"
) -> nn.Module:
    """
    ``build_model(cfg)`` with ``weights`` loaded strictly (:class:`StrictCheckpointer`: missing,
    unexpected or misshapen keys are an error; a distillation checkpoint loads as its student),
    frozen (``requires_grad=False``) and in eval mode.

    Args:
        cfg: a plain detectron2 config (``MODEL.WEIGHTS`` is not read).
        weights: path (or detectron2 URL) of the checkpoint; None keeps the random
            initialisation (e.g. to time a model without trained weights).
        config_file, key: the config ``cfg`` was read from and the config key (or CLI flag) that
            names ``weights``, for error messages.
    """
    model = build_model(cfg)
    if weights is not None:
        # checkpointables=[]: a training checkpoint's optimizer and scheduler are not the model's.
        StrictCheckpointer(model, config_file, key=key).load(weights, checkpointables=[])
    model.requires_grad_(False)
    model.eval()
    return model


def build_teacher(config_file, weights, opts=(), device="cpu", role="teacher") -> nn.Module:
    """
    Build a guide detector with ``build_model`` and load its weights strictly.

    The returned model is frozen (``requires_grad=False``) and in eval mode; the caller keeps it
    out of its own module tree so that it stays out of optimizers, DDP and checkpoints.
    """
    key = _KEYS[role][1]
    if not weights:
        raise ValueError(f"{key} is empty: set it to the trained {role}'s checkpoint.")
    cfg = load_guide_config(config_file, opts, device, role)
    model = build_frozen_detector(cfg, weights, config_file, key)
    logger.info(f"Loaded frozen guide {cfg.MODEL.META_ARCHITECTURE} from {weights}")
    return model
