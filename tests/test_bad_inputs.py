"""
Every bad input of docs/TROUBLESHOOTING.md's table stops with an error that names the
problem and the fix. ``BAD_INPUTS`` is that table: (id, how to break a good setup, the error
class, a pattern its message must match).
"""

import json
import os

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from shared_kd.checkpoint import CheckpointReadError, TeacherLoadError
from shared_kd.data import DatasetError, check_datasets
from shared_kd.data.register import (
    absolute_dataset_paths,
    check_num_classes,
    register_config_datasets,
)
from shared_kd.engine import OutputDirInUseError, Trainer, check_output_dir
from shared_kd.lazy import LazyConfigError
from shared_kd.utils.testing import get_tiny_cfg, random_batch

from .coco_subset import write_coco_subset
from .conftest import REPO_ROOT
from .modeling.test_distiller import _save_guide
from .modeling.test_mkd_distiller import mkd_cfg


def _set(**changes):
    """A change to MODEL.DISTILL: ``KD__T_START=0`` sets MODEL.DISTILL.KD.T_START to 0."""

    def change(cfg, tmp_path):
        for key, value in changes.items():
            node = cfg.MODEL.DISTILL
            *path, last = key.split("__")
            for p in path:
                node = node[p]
            node[last] = value

    return change


def _malformed_teacher_config(cfg, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("MODEL:\n  RESNETS: [unclosed\n")
    cfg.MODEL.DISTILL.TEACHER.CONFIG_FILE = str(path)


def _truncated_teacher_weights(cfg, tmp_path):
    path = tmp_path / "truncated.pth"
    with open(cfg.MODEL.DISTILL.TEACHER.WEIGHTS, "rb") as f:
        path.write_bytes(f.read()[:1000])
    cfg.MODEL.DISTILL.TEACHER.WEIGHTS = str(path)


def _weights_of_another_architecture(cfg, tmp_path):
    _, weights, _ = _save_guide(tmp_path, "retinanet", "retina", fpn_channels=64)
    cfg.MODEL.DISTILL.TEACHER.WEIGHTS = weights


def _teacher_with_other_classes(cfg, tmp_path):
    config, weights, _ = _save_guide(tmp_path, "faster_rcnn", "five", num_classes=5)
    cfg.MODEL.DISTILL.TEACHER.CONFIG_FILE, cfg.MODEL.DISTILL.TEACHER.WEIGHTS = config, weights
    cfg.MODEL.DISTILL.ASSISTANTS.CONFIG_FILES, cfg.MODEL.DISTILL.ASSISTANTS.WEIGHTS = [], []
    cfg.MODEL.DISTILL.LOSSES = ["SoftTargetKDLoss"]


def _autoencoder_of_another_teacher(cfg, tmp_path):
    torch.manual_seed(7)  # same architecture, other weights
    teacher_cfg = get_tiny_cfg("faster_rcnn", fpn_channels=64)
    torch.save({"model": build_model(teacher_cfg).state_dict()}, tmp_path / "other.pth")
    cfg.MODEL.DISTILL.TEACHER.WEIGHTS = str(tmp_path / "other.pth")


def _lazy_teacher(body):
    """A .py teacher: detectron2's tiny R34 twin, then ``body`` (lines of the file)."""
    shapes = os.path.join(REPO_ROOT, "configs", "shapes")

    def change(cfg, tmp_path):
        path = tmp_path / "teacher.py"
        path.write_text(
            "from detectron2.config import LazyConfig\n"
            f"model = LazyConfig.load({shapes + '/faster_rcnn_R34_FPN_tiny_teacher.py'!r}).model\n"
            + body
        )
        cfg.MODEL.DISTILL.TEACHER.CONFIG_FILE = str(path)

    return change


def _lazy_teacher_overrides(*opts):
    def change(cfg, tmp_path):
        cfg.MODEL.DISTILL.TEACHER.CONFIG_FILE = os.path.join(
            REPO_ROOT, "configs", "shapes", "faster_rcnn_R34_FPN_tiny_teacher.py"
        )
        cfg.MODEL.DISTILL.TEACHER.OPTS = list(opts)

    return change


BAD_INPUTS = [
    (
        "py teacher without model",
        _lazy_teacher("teacher = model\ndel model\n"),
        LazyConfigError,
        "defines no `model`",
    ),
    (
        "py teacher override of a missing key",
        _lazy_teacher_overrides("model.backbone.out_channel=128"),
        LazyConfigError,
        "has no key 'out_channel'; did you mean out_channels",
    ),
    (
        "py teacher override as KEY VALUE",
        _lazy_teacher_overrides("MODEL.FPN.OUT_CHANNELS", "128"),
        LazyConfigError,
        "is not key=value",
    ),
    (
        "py teacher weights that do not fit",
        _lazy_teacher_overrides("model.backbone.out_channels=96"),
        TeacherLoadError,
        "do not fit the architecture",
    ),
    (
        "teacher of a format that cannot be reconciled",
        _set(TEACHER__OPTS=["INPUT.FORMAT", "L"]),  # a grey-scale teacher of a BGR student
        ValueError,
        "reconciles only BGR and RGB",
    ),
    (
        "model-zoo config this detectron2 lacks",
        _set(TEACHER__CONFIG_FILE="model_zoo:common/models/no_such_vitdet.py"),
        FileNotFoundError,
        "no such model-zoo config",
    ),
    ("teacher config empty", _set(TEACHER__CONFIG_FILE=""), ValueError, "CONFIG_FILE is empty"),
    (
        "teacher config missing",
        _set(TEACHER__CONFIG_FILE="no/such/teacher.yaml"),
        FileNotFoundError,
        "Teacher config 'no/such/teacher.yaml' not found",
    ),
    ("teacher config malformed", _malformed_teacher_config, ValueError, "cannot be read"),
    ("teacher weights empty", _set(TEACHER__WEIGHTS=""), ValueError, "WEIGHTS is empty"),
    (
        "teacher weights missing",
        _set(TEACHER__WEIGHTS="no/such/model_final.pth"),
        FileNotFoundError,
        "Weights 'no/such/model_final.pth' not found",
    ),
    (
        "teacher weights truncated",
        _truncated_teacher_weights,
        TeacherLoadError,
        "TEACHER.WEIGHTS: Cannot read checkpoint",
    ),
    (
        "teacher weights of another architecture",
        _weights_of_another_architecture,
        TeacherLoadError,
        "do not fit the architecture",
    ),
    (
        "teacher with other class count (logit KD)",
        _teacher_with_other_classes,
        ValueError,
        "student has 3 classes and the teacher has 5",
    ),
    (
        "IN_FEATURES not produced",
        _set(IN_FEATURES=["p3", "p4", "p9"]),
        ValueError,
        "names \\['p9'\\], which the student's backbone does not produce",
    ),
    ("unknown loss name", _set(LOSSES=["SharedKD"]), KeyError, "Unknown distillation loss"),
    ("no losses", _set(LOSSES=[]), ValueError, "LOSSES is empty"),
    ("negative ALPHA", _set(SHARED_KD__ALPHA=-1.0), ValueError, "ALPHA must be >= 0"),
    ("negative KD weight", _set(KD__WEIGHT=-1.0), ValueError, "KD.WEIGHT must be >= 0"),
    ("negative AT weight", _set(AT__WEIGHT=-0.5), ValueError, "AT.WEIGHT must be >= 0"),
    ("negative FSP weight", _set(FSP__WEIGHT=-2.0), ValueError, "FSP.WEIGHT must be >= 0"),
    (
        "negative inherit/explore weight",
        _set(INHERIT_EXPLORE__EXPLORE_WEIGHT=-1.0),
        ValueError,
        "EXPLORE_WEIGHT must be >= 0",
    ),
    ("zero temperature", _set(KD__T_START=0.0), ValueError, "T_START/T_END must be > 0"),
    ("negative temperature", _set(KD__T_END=-1.0), ValueError, "T_START/T_END must be > 0"),
    (
        "auto-encoder of another teacher",
        _autoencoder_of_another_teacher,
        ValueError,
        "trained on another teacher",
    ),
    (
        "auto-encoder checkpoint missing",
        _set(INHERIT_EXPLORE__AE_WEIGHTS="no/such/ae.pth"),
        FileNotFoundError,
        "Auto-encoder checkpoint 'no/such/ae.pth' not found",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "break_it, error, match", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_model_input_fails_before_training(tmp_path, break_it, error, match):
    cfg = mkd_cfg(tmp_path)
    break_it(cfg, tmp_path)
    with pytest.raises(error, match=match):
        build_model(cfg)


@pytest.mark.slow
def test_the_good_setup_builds(tmp_path):
    build_model(mkd_cfg(tmp_path))  # so the failures above come from the one change each


@pytest.fixture
def datasets(tmp_path):
    """Register broken datasets: malformed json, no images, images folder missing."""
    images = [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}]
    files = {
        "malformed": "{not json",
        "empty": json.dumps({"images": [], "annotations": [], "categories": []}),
        "no_images": json.dumps(
            {"images": images, "annotations": [], "categories": [{"id": 1, "name": "x"}]}
        ),
    }
    names = []
    for kind, text in files.items():
        (tmp_path / f"{kind}.json").write_text(text)
        name = f"bad_input_{kind}_{tmp_path.name}"
        register_coco_instances(name, {}, str(tmp_path / f"{kind}.json"), str(tmp_path / "x"))
        names.append(name)
    yield dict(zip(files, names))
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.mark.parametrize(
    "kind, match",
    [
        ("malformed", "is not valid json"),
        ("empty", "has no 'images'"),
        ("no_images", "does not exist. Check the dataset's image folder"),
    ],
)
def test_bad_evaluation_dataset_fails_before_training(datasets, kind, match):
    cfg = get_tiny_cfg("faster_rcnn")
    cfg.DATASETS.TEST = (datasets[kind],)
    with pytest.raises(DatasetError, match=match):
        Trainer(cfg)


@pytest.mark.parametrize(
    "kind, match",
    [
        ("malformed", r"DATASETS.TRAIN \[.*\] cannot be loaded \(.*is not valid json"),
        ("empty", "has no 'images'"),
    ],
)
def test_bad_training_dataset_fails_before_training(datasets, kind, match):
    cfg = get_tiny_cfg("faster_rcnn")
    cfg.DATASETS.TRAIN = (datasets[kind],)
    with pytest.raises(DatasetError, match=match):
        Trainer.build_train_loader(cfg)


def test_unregistered_dataset():
    with pytest.raises(DatasetError, match="'nope', which is not a registered dataset"):
        check_datasets(["nope"], "DATASETS.TEST")


@pytest.mark.slow
def test_non_finite_loss_names_the_term_and_iteration(tmp_path):
    cfg = mkd_cfg(tmp_path, losses=["SharedKDLoss"])
    cfg.MODEL.DISTILL.SHARED_KD.ALPHA = float("inf")
    model = build_model(cfg)
    model.train()
    with EventStorage(7), pytest.raises(FloatingPointError) as info:
        model(random_batch(2, size=64))
    message = str(info.value)
    assert "loss_sharedkd_ident" in message and "at iteration 7" in message
    assert "loss_cls" not in message  # the student's own terms are finite


def test_output_dir_of_another_run(tmp_path):
    (tmp_path / "last_checkpoint").write_text("model_final.pth")
    with pytest.raises(OutputDirInUseError, match="Pass --resume to continue it"):
        check_output_dir(str(tmp_path), resume=False, overwrite=False)


def test_unreadable_training_weights(tmp_path):
    (tmp_path / "model.pth").write_bytes(b"not a checkpoint")
    cfg = get_tiny_cfg("faster_rcnn")
    cfg.MODEL.WEIGHTS = str(tmp_path / "model.pth")
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("shapes_train",), ()
    cfg.DATALOADER.NUM_WORKERS = 0
    trainer = Trainer(cfg)
    with pytest.raises(CheckpointReadError, match="Cannot read checkpoint"):
        trainer.resume_or_load(resume=False)


# ---- own datasets (DATASETS.COCO_INSTANCES) --------------------------------------------------


def _entry(cfg):
    return cfg.DATASETS.COCO_INSTANCES[0]


def _own(change):
    """A change to the one DATASETS.COCO_INSTANCES entry, [name, json, images]."""

    def apply(cfg, tmp_path):
        cfg.DATASETS.COCO_INSTANCES = [change(list(_entry(cfg)), tmp_path)]

    return apply


def _rename(name):
    def apply(cfg, tmp_path):
        _entry(cfg)[0] = name
        cfg.DATASETS.TRAIN = (name,)

    return apply


def _more_classes(cfg, tmp_path):
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 5


BAD_DATASETS = [
    (
        "COCO_INSTANCES entry malformed",
        _own(lambda e, tmp: e[:2]),
        DatasetError,
        r"DATASETS.COCO_INSTANCES entries must be \[name, annotation json, image folder\]",
    ),
    (
        "COCO_INSTANCES json missing",
        _own(lambda e, tmp: [e[0], "no/such/train.json", e[2]]),
        DatasetError,
        r"DATASETS.COCO_INSTANCES: the annotation file of 'own_.*', '.*no/such/train.json', "
        "does not exist",
    ),
    (
        "COCO_INSTANCES image folder missing",
        _own(lambda e, tmp: [e[0], e[1], str(tmp / "no_images")]),
        DatasetError,
        r"DATASETS.COCO_INSTANCES: the image folder of 'own_.*', '.*no_images', does not exist",
    ),
    (
        "COCO_INSTANCES name taken (shapes)",
        _rename("shapes_train"),
        DatasetError,
        "DATASETS.COCO_INSTANCES names 'shapes_train', which is already a registered dataset",
    ),
    (
        "COCO_INSTANCES name taken (detectron2 builtin)",
        _rename("coco_2017_train"),
        DatasetError,
        "DATASETS.COCO_INSTANCES names 'coco_2017_train', which is already a registered dataset",
    ),
    (
        "dataset categories != NUM_CLASSES",
        _more_classes,
        DatasetError,
        r"DATASETS.TRAIN names 'own_.*', whose annotation file has 3 categories, but the model "
        r"has 5 classes \(MODEL.ROI_HEADS.NUM_CLASSES\). Set MODEL.ROI_HEADS.NUM_CLASSES 3.",
    ),
]


@pytest.fixture
def own_cfg(tmp_path):
    """A tiny config that trains on its own COCO dataset, named by DATASETS.COCO_INSTANCES."""
    name = f"own_{tmp_path.name}"
    files = write_coco_subset(str(tmp_path), "own", num_images=2)
    cfg = get_tiny_cfg("faster_rcnn")
    cfg.DATASETS.COCO_INSTANCES = [[name, *files]]
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (name,), ()
    yield cfg
    for catalog in (DatasetCatalog, MetadataCatalog):
        if name in catalog.list():
            catalog.remove(name)


def _setup_and_check(cfg):
    """What train_net.py's setup() and Trainer.__init__ do with the datasets, before building."""
    absolute_dataset_paths(cfg)
    register_config_datasets(cfg)
    check_num_classes(cfg, cfg.DATASETS.TRAIN, "DATASETS.TRAIN")
    check_num_classes(cfg, cfg.DATASETS.TEST, "DATASETS.TEST")


@pytest.mark.parametrize(
    "break_it, error, match", [c[1:] for c in BAD_DATASETS], ids=[c[0] for c in BAD_DATASETS]
)
def test_bad_own_dataset_fails_before_training(own_cfg, tmp_path, break_it, error, match):
    break_it(own_cfg, tmp_path)
    with pytest.raises(error, match=match):
        _setup_and_check(own_cfg)


def test_the_good_own_dataset_registers(own_cfg):
    _setup_and_check(own_cfg)  # so the failures above come from the one change each
    assert len(DatasetCatalog.get(own_cfg.DATASETS.TRAIN[0])) == 2


def test_trainer_checks_the_class_count_before_building(own_cfg, tmp_path):
    _setup_and_check(own_cfg)
    own_cfg.MODEL.ROI_HEADS.NUM_CLASSES = 5
    own_cfg.DATASETS.TEST = own_cfg.DATASETS.TRAIN
    own_cfg.OUTPUT_DIR = str(tmp_path / "out")
    with pytest.raises(DatasetError, match="has 3 categories, but the model has 5 classes"):
        Trainer(own_cfg)
