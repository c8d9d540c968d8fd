"""What the analysis tools share: loading a trained detector from a config and a checkpoint."""

import os
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from detectron2.config import CfgNode

from ..config import load_config, resolve_config_file
from ..data.register import register_config_datasets
from ..export import student_config
from ..modeling.teacher import build_frozen_detector

__all__ = ["load_detector", "load_detector_config"]


def load_detector_config(
    config_file: str, opts: Sequence[str] = (), device: Optional[str] = None
) -> CfgNode:
    """
    The plain detectron2 config of a trained detector, frozen.

    A SharedKD distillation config (``MODEL.META_ARCHITECTURE: DistillationDetector``) gives its
    student's config (:func:`shared_kd.export.student_config`): the student is the model that
    a distillation run trains and evaluates.

    Args:
        config_file: a detectron2 yaml config (plain, exported student, or distillation);
            ``model_zoo:<name>`` names one of detectron2's model-zoo configs.
        opts: KEY VALUE overrides, merged after the file.
        device: where the model runs; None keeps the config's ``MODEL.DEVICE`` if it is usable
            here, and falls back to "cpu" on a machine without CUDA.
    """
    config_file = resolve_config_file(config_file)
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"Config file {config_file!r} not found")
    cfg = load_config(config_file, opts)  # SharedKD's own configs carry MODEL.DISTILL keys
    register_config_datasets(cfg)  # a config.sharedkd.yaml names its own datasets
    cfg = student_config(cfg)
    if device is None:
        device = cfg.MODEL.DEVICE
        if device.startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"
    cfg.MODEL.DEVICE = device
    cfg.freeze()
    return cfg


def load_detector(
    config_file: str,
    weights: str,
    opts: Sequence[str] = (),
    device: Optional[str] = None,
    weights_flag: str = "--weights",
) -> Tuple[nn.Module, CfgNode]:
    """
    Build a detector with ``build_model`` and load trained weights into it strictly
    (:func:`shared_kd.modeling.build_frozen_detector`).

    The checkpoint may be a plain detectron2 one (e.g. an exported student) or a SharedKD
    distillation checkpoint, whose ``student.*`` weights are loaded and the rest (the Teacher
    Share Module's ``losses.*``) left out. Loading is strict (missing, unexpected or misshapen
    keys are an error), since an analysis of half-random weights would mislead silently. Nothing
    is written: the checkpoint's folder is only read.

    Args:
        config_file, opts, device: as for :func:`load_detector_config`.
        weights: path (or detectron2 URL) of the checkpoint.
        weights_flag: how the caller names ``weights``, for error messages (e.g. a CLI flag).

    Returns:
        (model, cfg): the model in eval mode with ``requires_grad=False``, and its config
        (``MODEL.WEIGHTS`` set to ``weights``).
    """
    cfg = load_detector_config(config_file, opts, device)
    cfg.defrost()
    cfg.MODEL.WEIGHTS = weights
    cfg.freeze()
    return build_frozen_detector(cfg, weights, config_file, key=weights_flag), cfg
