"""
Shared pieces of the ``gpu`` tests: the device they run on, and tiny distillation configs.

They need CUDA and are skipped without it (``make test`` on a CPU machine);
``tools/gpu_check.sh`` runs them on a GPU machine. ``SHAREDKD_GPU_TESTS_DEVICE=cpu`` runs them on
the CPU instead, to check the tests themselves where there is no GPU.
"""

import os

import pytest
import torch
from detectron2.modeling import build_model

from shared_kd.utils.testing import get_tiny_cfg

DEVICE = torch.device(os.environ.get("SHAREDKD_GPU_TESTS_DEVICE", "cuda"))

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        DEVICE.type == "cuda" and not torch.cuda.is_available(),
        reason="needs CUDA (tools/gpu_check.sh runs these on a GPU machine)",
    ),
]


def save_teacher(tmp_path, family, fpn_channels=64, device="cpu"):
    """A randomly initialised tiny teacher saved as (config.yaml, weights.pth)."""
    torch.manual_seed(1)
    cfg = get_tiny_cfg(family, fpn_channels=fpn_channels)
    model = build_model(cfg)
    cfg.MODEL.DEVICE = str(device)
    cfg_path, weights = tmp_path / "teacher.yaml", tmp_path / "teacher.pth"
    cfg_path.write_text(cfg.dump())
    torch.save({"model": model.state_dict()}, weights)
    return str(cfg_path), str(weights)


def tiny_distill_cfg(tmp_path, family="faster_rcnn", device=DEVICE, losses=("SharedKDLoss",)):
    """A tiny distillation config on ``device`` whose trained teacher is a random one."""
    t_cfg, t_weights = save_teacher(tmp_path, family, device=device)
    cfg = get_tiny_cfg(family, fpn_channels=32)
    cfg.MODEL.DEVICE = str(device)
    cfg.MODEL.DISTILL.STUDENT_META_ARCHITECTURE = cfg.MODEL.META_ARCHITECTURE
    cfg.MODEL.META_ARCHITECTURE = "DistillationDetector"
    cfg.MODEL.DISTILL.LOSSES = list(losses)
    cfg.MODEL.DISTILL.TEACHER.CONFIG_FILE = t_cfg
    cfg.MODEL.DISTILL.TEACHER.WEIGHTS = t_weights
    return cfg
