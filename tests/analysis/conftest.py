"""Tiny trained-looking detectors on disk, as the analysis tools get them from users."""

import os

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from shared_kd.utils.testing import get_tiny_cfg

NUM_IMAGES = 2  # shapes_val images per end-to-end run: enough for means, cheap on 2 cores


def _save(folder, name, cfg, seed):
    """Write ``<name>.yaml`` and ``<name>.pth`` (random weights from ``seed``); return paths."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    DetectionCheckpointer(model, save_dir=folder).save(name)
    config = os.path.join(folder, f"{name}.yaml")
    with open(config, "w") as f:
        f.write(cfg.dump())
    return config, os.path.join(folder, f"{name}.pth"), model


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """
    A teacher (FPN width 64) and a narrower student (FPN width 32), both tiny Faster R-CNNs on
    shapes_val, plus the student as a distillation run would leave it: a DistillationDetector
    config and a checkpoint with ``student.*`` and ``losses.*`` keys.
    """
    folder = str(tmp_path_factory.mktemp("analysis_models"))
    out = {}
    for name, width, seed in (("teacher", 64, 0), ("student", 32, 1)):
        cfg = get_tiny_cfg("faster_rcnn", fpn_channels=width)
        cfg.DATASETS.TEST = ("shapes_val",)
        out[name], out[name + "_weights"], model = _save(folder, name, cfg, seed)
    # The student, as a distillation run saves it.
    distill = get_tiny_cfg("faster_rcnn", fpn_channels=32)
    distill.DATASETS.TEST = ("shapes_val",)
    distill.MODEL.META_ARCHITECTURE = "DistillationDetector"
    distill.MODEL.DISTILL.STUDENT_META_ARCHITECTURE = "GeneralizedRCNN"
    distill.MODEL.DISTILL.TEACHER.CONFIG_FILE = out["teacher"]
    distill.MODEL.DISTILL.TEACHER.WEIGHTS = out["teacher_weights"]
    out["distill"] = os.path.join(folder, "distill.yaml")
    with open(out["distill"], "w") as f:
        f.write(distill.dump())
    state = {"student." + k: v for k, v in model.state_dict().items()}
    state["losses.0.tsm.fuse.0.weight"] = torch.zeros(2, 64, 3, 3)  # not the student's: dropped
    out["distill_weights"] = os.path.join(folder, "distill_final.pth")
    torch.save({"model": state, "iteration": 99}, out["distill_weights"])
    return out
