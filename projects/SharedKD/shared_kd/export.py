"""
Export the student of a distillation run as a plain detectron2 model: a checkpoint and a config
that ``DefaultPredictor`` or detectron2's ``tools/train_net.py`` load without ``shared_kd``; for
a LazyConfig run, a LazyConfig ``config.yaml`` whose ``model`` is the student, which
``instantiate`` + ``DetectionCheckpointer`` (or detectron2's ``tools/lazyconfig_train_net.py
--eval-only``) read.

The student's yacs config comes from :func:`shared_kd.config.plain_detector_config`, its weights
from :func:`shared_kd.checkpoint.student_state_dict`.
"""

import copy
import os
from typing import Dict

import torch
from detectron2.config import LazyConfig
from omegaconf import DictConfig

from .checkpoint import student_state_dict
from .config import load_config, plain_detector_config, resolve_config_file
from .lazy import target_name
from .names import DISTILL_META_ARCH
from .utils.io import atomic_write

__all__ = [
    "SHAREDKD_CONFIG",
    "export_student",
    "lazy_student_config",
    "write_configs",
]

# Beside a vanilla config.yaml: the same config with this project's dataset key.
SHAREDKD_CONFIG = "config.sharedkd.yaml"


def write_configs(config, output_dir: str, datasets=()) -> None:
    """
    Write ``config`` (a :func:`~shared_kd.config.plain_detector_config`) as
    ``output_dir/config.yaml``, for vanilla detectron2 tools; when the run registered its own
    datasets (``datasets``, the value of ``DATASETS.COCO_INSTANCES``), also
    ``config.sharedkd.yaml``: the same with that key, which ``train_net.py --eval-only`` reads
    to register them again.
    """
    files = [("config.yaml", config)]
    if datasets:
        with_datasets = config.clone()
        with_datasets.DATASETS.COCO_INSTANCES = [list(d) for d in datasets]
        files.append((SHAREDKD_CONFIG, with_datasets))
    for name, cfg in files:

        def write(p, cfg=cfg):
            with open(p, "w") as f:
                f.write(cfg.dump())

        atomic_write(os.path.join(output_dir, name), write)


def lazy_student_config(cfg: DictConfig) -> DictConfig:
    """
    A LazyConfig distillation config (``model = L(DistillationDetector)(student=..., ...)``) as
    its student's: ``model`` is the student node, the rest (dataloader, optimizer, train) kept.
    """
    if target_name(cfg.model) != DISTILL_META_ARCH:
        raise ValueError("The config's model is not a DistillationDetector: nothing to export")
    out = copy.deepcopy(cfg)
    out.model = copy.deepcopy(cfg.model.student)
    return out


def export_student(cfg, state_dict: Dict[str, torch.Tensor], output_dir: str) -> str:
    """
    Write ``model_final.pth`` ({"model": student weights}) and ``config.yaml`` (and
    ``config.sharedkd.yaml``, see :func:`write_configs`) to ``output_dir``. For a LazyConfig
    run, ``config.yaml`` is the LazyConfig of the student (:func:`lazy_student_config`, with
    ``train.init_checkpoint`` naming the weights), or the yacs config of a yaml student
    (``yaml_model``).

    Args:
        cfg: the distillation config the weights were trained with (yacs or Lazy).
        state_dict: a DistillationDetector state dict (``student.*``, ``losses.*``).
        output_dir: e.g. ``OUTPUT_DIR/student``.

    Returns:
        str: the path of the exported checkpoint.
    """
    os.makedirs(output_dir, exist_ok=True)
    weights = {k: v.detach().cpu() for k, v in student_state_dict(state_dict).items()}
    model_path = os.path.abspath(os.path.join(output_dir, "model_final.pth"))
    atomic_write(model_path, lambda p: torch.save({"model": weights}, p))
    if isinstance(cfg, DictConfig):
        student = cfg.model.student
        if target_name(student) != "yaml_model":
            config = lazy_student_config(cfg)
            config.train.init_checkpoint = model_path
            config.train.output_dir = os.path.abspath(output_dir)
            atomic_write(
                os.path.join(output_dir, "config.yaml"), lambda p: LazyConfig.save(config, p)
            )
            return model_path
        cfg = load_config(resolve_config_file(student.config_file), student.get("opts", ()))
    config = plain_detector_config(cfg)
    config.MODEL.WEIGHTS = model_path
    # Evaluating the export must not write into (and overwrite results of) the training run.
    config.OUTPUT_DIR = os.path.abspath(output_dir)
    write_configs(config, output_dir, cfg.DATASETS.get("COCO_INSTANCES", ()))
    return model_path
