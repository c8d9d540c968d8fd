"""shared_kd.analysis.common: a trained detector loaded from its config and checkpoint."""

import json

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

from shared_kd.analysis.common import load_detector, read_detector_config, usable_device
from shared_kd.checkpoint import TeacherLoadError
from shared_kd.utils.testing import get_tiny_cfg


def test_usable_device(monkeypatch):
    assert usable_device(None) == "cpu" and usable_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert usable_device("cuda") == "cpu" and usable_device("cuda:1") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert usable_device("cuda:1") == "cuda:1"
    assert usable_device(None) == "cpu"


def test_read_detector_config_registers_the_configs_datasets(tmp_path):
    name = f"common_mine_{tmp_path.name}"
    (tmp_path / "images").mkdir()
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    cfg = get_tiny_cfg("faster_rcnn")
    cfg.DATASETS.COCO_INSTANCES = [[name, str(ann), str(tmp_path / "images")]]
    (tmp_path / "model.yaml").write_text(cfg.dump())
    assert name not in DatasetCatalog.list()
    try:
        config = read_detector_config(str(tmp_path / "model.yaml"), ["MODEL.DEVICE", "cuda"])
        assert name in DatasetCatalog.list()
        assert MetadataCatalog.get(name).json_file == str(ann)
        assert config.datasets == [[name, str(ann), str(tmp_path / "images")]]
        assert config.device == "cuda"  # the overrides are merged
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_load_detector_loads_the_weights_frozen_on_a_usable_device(tiny_models):
    m = tiny_models
    model, config = load_detector(m["student"], m["student_weights"], device="cuda")
    assert config.source == m["student"]
    assert next(model.parameters()).device.type == usable_device("cuda").split(":")[0]
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    saved = torch.load(m["student_weights"], weights_only=True)["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v.cpu(), saved[k]), k


def test_mismatched_weights_are_an_error(tiny_models):
    m = tiny_models
    with pytest.raises(TeacherLoadError, match="shape mismatches"):
        load_detector(m["teacher"], m["student_weights"], weights_flag="--teacher-weights")
    with pytest.raises(FileNotFoundError, match="--student-weights"):
        load_detector(m["student"], "nowhere.pth", weights_flag="--student-weights")
