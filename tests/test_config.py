"""shared_kd.config: SharedKD's keys, config files (and model-zoo names), the plain detector's
config."""

import os

from detectron2 import model_zoo
from detectron2.config import get_cfg

from shared_kd.config import (
    MODEL_ZOO_PREFIX,
    add_dataset_config,
    add_sharedkd_config,
    load_config,
    plain_detector_config,
    resolve_config_file,
)
from shared_kd.utils.testing import get_tiny_cfg


def test_the_distillers_defaults():
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    d = cfg.MODEL.DISTILL
    assert d.STUDENT_META_ARCHITECTURE == "GeneralizedRCNN"
    assert d.IN_FEATURES == [] and d.LOSSES == ["SharedKDLoss"] and d.GUIDE_AUTOCAST == "auto"
    assert (d.TEACHER.CONFIG_FILE, d.TEACHER.WEIGHTS, d.TEACHER.OPTS) == ("", "", [])
    assert (d.ASSISTANTS.CONFIG_FILES, d.ASSISTANTS.WEIGHTS) == ([], [])
    assert d.ASSISTANTS.DROP_PROB == 0.0
    assert "SHARED_KD" in d  # every registered loss adds its node
    assert cfg.MODEL.FCOS.IN_FEATURES == ["p3", "p4", "p5", "p6", "p7"]
    assert (cfg.MODEL.FCOS.NUM_CLASSES, cfg.MODEL.FCOS.NORM) == (80, "GN")
    assert cfg.DATASETS.COCO_INSTANCES == []


def test_the_dataset_key_alone():
    cfg = get_cfg()
    add_dataset_config(cfg)
    assert cfg.DATASETS.COCO_INSTANCES == []
    assert "DISTILL" not in cfg.MODEL and "FCOS" not in cfg.MODEL


def test_resolve_config_file():
    assert resolve_config_file("configs/shapes/x.yaml") == "configs/shapes/x.yaml"
    name = "COCO-Detection/retinanet_R_50_FPN_1x.yaml"
    path = resolve_config_file(MODEL_ZOO_PREFIX + name)
    assert MODEL_ZOO_PREFIX == "model_zoo:"
    assert path == model_zoo.get_config_file(name) and os.path.isfile(path)
    assert path.endswith(os.path.join("COCO-Detection", "retinanet_R_50_FPN_1x.yaml"))


def test_load_config_merges_the_file_then_the_overrides(tmp_path):
    path = tmp_path / "distill.yaml"
    path.write_text(
        "MODEL:\n  META_ARCHITECTURE: DistillationDetector\n"
        "  DISTILL:\n    LOSSES: [PKDLoss]\n    ASSISTANTS:\n      DROP_PROB: 0.5\n"
        "SOLVER:\n  MAX_ITER: 90\n"
    )
    cfg = load_config(str(path), ("SOLVER.MAX_ITER", "7", "MODEL.DISTILL.GUIDE_AUTOCAST", "off"))
    assert cfg.MODEL.META_ARCHITECTURE == "DistillationDetector"
    assert cfg.MODEL.DISTILL.LOSSES == ["PKDLoss"] and cfg.MODEL.DISTILL.ASSISTANTS.DROP_PROB == 0.5
    assert cfg.SOLVER.MAX_ITER == 7 and cfg.MODEL.DISTILL.GUIDE_AUTOCAST == "off"
    assert not cfg.is_frozen()
    assert load_config(str(path)).SOLVER.MAX_ITER == 90


def test_plain_detector_config_strips_the_project_keys():
    cfg = get_tiny_cfg("faster_rcnn")
    cfg.DATASETS.COCO_INSTANCES = [["mine", "/a.json", "/imgs"]]
    out = plain_detector_config(cfg)
    assert "DISTILL" not in out.MODEL and "FCOS" not in out.MODEL
    assert "COCO_INSTANCES" not in out.DATASETS
    assert cfg.DATASETS.COCO_INSTANCES == [["mine", "/a.json", "/imgs"]]  # a copy was changed
    assert "DISTILL" in cfg.MODEL

    distill = get_tiny_cfg("retinanet")
    distill.MODEL.META_ARCHITECTURE = "DistillationDetector"
    distill.MODEL.DISTILL.STUDENT_META_ARCHITECTURE = "RetinaNet"
    assert plain_detector_config(distill).MODEL.META_ARCHITECTURE == "RetinaNet"

    fcos = plain_detector_config(get_tiny_cfg("fcos"))
    assert fcos.MODEL.FCOS.NUM_CLASSES == 3  # building an FCOS needs its keys (and shared_kd)
    assert "DISTILL" not in fcos.MODEL
