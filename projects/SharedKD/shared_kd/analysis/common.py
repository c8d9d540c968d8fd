"""What the analysis tools share: loading a trained detector from a config and a checkpoint."""

from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..data.register import register_coco_datasets
from ..detector_config import DetectorConfig, load_detector_config
from ..modeling.guide import build_frozen_detector

__all__ = ["load_detector", "read_detector_config", "usable_device"]


def usable_device(device: Optional[str]) -> str:
    """``device``, or "cpu" where it names CUDA on a machine without it (None: "cpu")."""
    if device is None or (device.startswith("cuda") and not torch.cuda.is_available()):
        return "cpu"
    return device


def read_detector_config(config_file: str, opts: Sequence[str] = ()) -> DetectorConfig:
    """
    The config of a trained detector (:func:`shared_kd.detector_config.load_detector_config`):
    a yacs yaml or a LazyConfig, plain, exported or a distillation config (its student: the
    model that a distillation run trains and evaluates). The datasets a yaml names in
    ``DATASETS.COCO_INSTANCES`` (a ``config.sharedkd.yaml``) are registered.

    Args:
        config_file: the config; ``model_zoo:<name>`` names one of detectron2's model-zoo
            configs.
        opts: overrides merged after the file (``KEY VALUE`` for yaml, ``key=value`` for Lazy).
    """
    config = load_detector_config(config_file, opts)
    register_coco_datasets(config.datasets)
    return config


def load_detector(
    config_file: str,
    weights: str,
    opts: Sequence[str] = (),
    device: Optional[str] = None,
    weights_flag: str = "--weights",
) -> Tuple[nn.Module, DetectorConfig]:
    """
    Build a detector and load trained weights into it strictly
    (:func:`shared_kd.modeling.build_frozen_detector`).

    The checkpoint may be a plain detectron2 one (e.g. an exported student) or a SharedKD
    distillation checkpoint, whose ``student.*`` weights are loaded and the rest (the Teacher
    Share Module's ``losses.*``) left out. Loading is strict (missing, unexpected or misshapen
    keys are an error), since an analysis of half-random weights would mislead silently. Nothing
    is written: the checkpoint's folder is only read.

    Args:
        config_file, opts: as for :func:`read_detector_config`.
        weights: path (or detectron2 URL) of the checkpoint.
        device: where the model runs; None: a yaml's ``MODEL.DEVICE`` (a Lazy config's
            ``train.device``) if it is usable here, else "cpu".
        weights_flag: how the caller names ``weights``, for error messages (e.g. a CLI flag).

    Returns:
        (model, config): the model in eval mode with ``requires_grad=False``, and its config.
    """
    config = read_detector_config(config_file, opts)
    if device is None:
        device = config.device
    model = build_frozen_detector(config, weights, usable_device(device), key=weights_flag)
    return model, config
