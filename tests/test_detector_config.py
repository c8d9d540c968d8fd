"""A detector's config of either system, as guides, analysis and benchmark read it."""

import os

import pytest
import torch
from detectron2.config import get_cfg, instantiate
from detectron2.utils.events import EventStorage

from shared_kd.detector_config import load_detector_config
from shared_kd.export import export_student
from shared_kd.lazy import LazyConfigError, load_lazy_config
from shared_kd.utils.testing import random_batch

from .conftest import REPO_ROOT

SHAPES = os.path.join(REPO_ROOT, "configs", "shapes")


def test_yaml_and_lazy_twins_build_the_same_detector():
    yaml_cfg = load_detector_config(os.path.join(SHAPES, "faster_rcnn_R18_FPN_tiny.yaml"))
    lazy_cfg = load_detector_config(os.path.join(SHAPES, "faster_rcnn_R18_FPN_tiny.py"))
    assert not yaml_cfg.is_lazy and lazy_cfg.is_lazy
    assert yaml_cfg.input_format == lazy_cfg.input_format == "BGR"
    assert yaml_cfg.test_datasets == lazy_cfg.test_datasets == ["shapes_val"]
    a, b = yaml_cfg.build_model("cpu"), lazy_cfg.build_model("cpu")
    shapes = {k: tuple(v.shape) for k, v in a.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in b.state_dict().items()}
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = [{"image": torch.rand(3, 128, 128) * 255}]
    with torch.no_grad():
        torch.testing.assert_close(
            a(x)[0]["instances"].scores, b(x)[0]["instances"].scores, rtol=0, atol=0
        )


def test_a_distillation_config_reads_as_its_student():
    for name in (
        "sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.yaml",
        "pkd_faster_rcnn_R34_to_R18_FPN_tiny.py",
    ):
        model = load_detector_config(os.path.join(SHAPES, name)).build_model("cpu")
        assert type(model).__name__ == "GeneralizedRCNN"
        assert model.backbone.output_shape()["p2"].channels == 64


def test_model_zoo_lazy_config():
    config = load_detector_config("model_zoo:new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py")
    assert config.is_lazy and config.input_format == "BGR"


def test_input_format_of_a_lazy_config(tmp_path):
    rgb = tmp_path / "rgb.py"
    rgb.write_text(
        "from detectron2.config import LazyConfig\n"
        f"model = LazyConfig.load({os.path.join(SHAPES, 'faster_rcnn_R18_FPN_tiny.py')!r}).model\n"
        "model.input_format = 'RGB'\n"
    )
    assert load_detector_config(str(rgb)).input_format == "RGB"
    nothing = tmp_path / "nothing.py"
    nothing.write_text(
        "from detectron2.config import LazyConfig\n"
        f"model = LazyConfig.load({os.path.join(SHAPES, 'faster_rcnn_R18_FPN_tiny.py')!r}).model\n"
        "del model.input_format\n"
    )
    with pytest.raises(LazyConfigError, match="names no input format"):
        _ = load_detector_config(str(nothing)).input_format


def test_bad_configs_are_named(tmp_path):
    no_model = tmp_path / "no_model.py"
    no_model.write_text("train = dict(max_iter=1)\n")
    with pytest.raises(LazyConfigError, match="defines no `model`"):
        load_detector_config(str(no_model))
    with pytest.raises(FileNotFoundError, match="upstream detectron2 main"):
        load_detector_config("model_zoo:common/models/mask_rcnn_vitdet_missing.py")
    with pytest.raises(FileNotFoundError, match="Teacher config .* not found"):
        load_detector_config(str(tmp_path / "teacher.py"), role="teacher")
    with pytest.raises(ValueError, match="is empty"):
        load_detector_config("", role="teacher", key="MODEL.DISTILL.TEACHER.CONFIG_FILE")


@pytest.mark.slow
def test_a_lazy_distillation_config_with_a_yaml_student(tmp_path):
    """student=L(yaml_model)(...): built by build_model, read and exported as a yaml config."""
    yaml_student = os.path.join(SHAPES, "faster_rcnn_R18_FPN_tiny.yaml")
    pkd = os.path.join(SHAPES, "pkd_faster_rcnn_R34_to_R18_FPN_tiny.py")
    config = tmp_path / "mixed.py"
    config.write_text(
        "from detectron2.config import LazyCall as L\n"
        "from detectron2.config import LazyConfig\n"
        "from shared_kd.detector_config import yaml_model\n"
        f"base = LazyConfig.load({pkd!r})\n"
        "dataloader, optimizer, lr_multiplier, train = (\n"
        "    base.dataloader, base.optimizer, base.lr_multiplier, base.train)\n"
        "model = base.model\n"
        f"model.student = L(yaml_model)(config_file={yaml_student!r})\n"
        "model.guides[0].weights = None\n"
    )
    read = load_detector_config(str(config))
    assert not read.is_lazy and read.cfg.MODEL.FPN.OUT_CHANNELS == 64  # the yaml's
    cfg = load_lazy_config(str(config))
    model = instantiate(cfg.model)
    assert model.student.device.type == "cpu" and model.input_format == "BGR"
    with EventStorage():
        losses = model(random_batch(2))
    assert "loss_pkd" in losses
    export_student(cfg, model.state_dict(), str(tmp_path / "student"))
    exported = get_cfg()  # vanilla detectron2: a yacs config
    exported.merge_from_file(str(tmp_path / "student" / "config.yaml"))
    assert exported.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"
    assert exported.MODEL.WEIGHTS == str(tmp_path / "student" / "model_final.pth")
