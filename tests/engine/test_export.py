"""
shared_kd.export (kept in tests/engine/: it shares the trained runs of its conftest.py).

A plain model's config.yaml (a teacher's, a baseline's, an exported student's) has none of
SharedKD's keys: vanilla detectron2, without ``import shared_kd``, reads it and predicts.
``config.sharedkd.yaml`` beside it adds DATASETS.COCO_INSTANCES when the run registered its own
datasets, and only then.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from shared_kd.config import add_sharedkd_config, load_config, plain_detector_config
from shared_kd.engine import write_portable_config
from shared_kd.export import SHAREDKD_CONFIG, export_student, write_configs
from shared_kd.utils.testing import get_tiny_cfg

from ..coco_subset import shapes_root
from .conftest import read_yaml

# Vanilla detectron2 only: load each (config, weights), predict on one image, report.
VANILLA = r"""
import json, sys
import torch
import yaml
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.structures import Instances

image = read_image(sys.argv[1], format="BGR")
report = {}
for config, weights in zip(sys.argv[2::2], sys.argv[3::2]):
    cfg = get_cfg()
    cfg.merge_from_file(config)  # raises KeyError on any key vanilla detectron2 lacks
    cfg.MODEL.WEIGHTS = weights
    predictor = DefaultPredictor(cfg)
    instances = predictor(image)["instances"]
    assert isinstance(instances, Instances), type(instances)
    # DefaultPredictor loads non-strictly: check that every weight reached the model.
    saved = torch.load(weights, map_location="cpu", weights_only=False)["model"]
    state = predictor.model.state_dict()
    loaded = all(k in state and torch.equal(state[k], torch.as_tensor(v)) for k, v in saved.items())
    report[config] = {
        "arch": type(predictor.model).__name__,
        "num_params": len(state),
        "num_saved": len(saved),
        "loaded": loaded,
        "fields": sorted(instances.get_fields()),
        "image_size": list(instances.image_size),
        "classes": instances.pred_classes.tolist(),
        "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
    }
report["shared_kd_imported"] = any(m.split(".")[0] == "shared_kd" for m in sys.modules)
print("REPORT" + json.dumps(report))
"""

PROJECT_KEYS = (("MODEL", "DISTILL"), ("MODEL", "FCOS"), ("DATASETS", "COCO_INSTANCES"))


def _project_keys(config):
    return [".".join(k) for k in PROJECT_KEYS if k[1] in config.get(k[0], {})]


@pytest.fixture(scope="module")
def vanilla(own_baseline, shapes_teacher, own_distilled, tmp_path_factory):
    """Predictions of the baseline, the teacher and the exported student by vanilla
    detectron2 in a fresh process (outside the repository, so no local import is found)."""
    models = {
        "baseline": os.path.join(own_baseline[0], "config.yaml"),
        "teacher": os.path.join(shapes_teacher, "config.yaml"),
        "student": os.path.join(own_distilled[0], "student", "config.yaml"),
    }
    args = [os.path.join(shapes_root(), "val", "00001.png")]
    for config in models.values():
        args += [config, os.path.join(os.path.dirname(config), "model_final.pth")]
    res = subprocess.run(
        [sys.executable, "-c", VANILLA, *args],
        cwd=str(tmp_path_factory.mktemp("vanilla")),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(res.stdout.split("REPORT", 1)[1])
    assert report.pop("shared_kd_imported") is False
    return {name: report[config] for name, config in models.items()}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["baseline", "teacher", "student"])
def test_vanilla_detectron2_loads_and_predicts(vanilla, model):
    got = vanilla[model]
    assert got["arch"] == "GeneralizedRCNN"
    assert got["loaded"] and got["num_saved"] == got["num_params"]  # every weight, no extra
    assert {"pred_boxes", "pred_classes", "scores"} <= set(got["fields"])
    assert got["image_size"] == [128, 128]
    assert all(0 <= c < got["num_classes"] == 3 for c in got["classes"])


@pytest.mark.slow
def test_plain_runs_write_portable_configs(own_baseline, shapes_teacher, own_distilled):
    for config in (
        os.path.join(own_baseline[0], "config.yaml"),
        os.path.join(shapes_teacher, "config.yaml"),
        os.path.join(own_distilled[0], "student", "config.yaml"),
    ):
        cfg = read_yaml(config)
        assert _project_keys(cfg) == [], config
        assert cfg["MODEL"]["META_ARCHITECTURE"] == "GeneralizedRCNN"
    teacher = read_yaml(os.path.join(shapes_teacher, "config.yaml"))
    assert teacher["MODEL"]["RESNETS"]["DEPTH"] == 34  # the run's config, not a default one
    assert teacher["MODEL"]["FPN"]["OUT_CHANNELS"] == 128
    assert teacher["SOLVER"]["MAX_ITER"] == 3


@pytest.mark.slow
def test_no_sharedkd_config_without_own_datasets(shapes_teacher, own_baseline):
    assert not os.path.exists(os.path.join(shapes_teacher, SHAREDKD_CONFIG))
    assert os.path.isfile(os.path.join(shapes_teacher, "model_final.pth"))
    assert os.path.isfile(os.path.join(own_baseline[0], SHAREDKD_CONFIG))  # with: written


@pytest.mark.slow
def test_distillation_run_keeps_detectron2s_config(own_distilled):
    cfg = read_yaml(os.path.join(own_distilled[0], "config.yaml"))
    assert cfg["MODEL"]["META_ARCHITECTURE"] == "DistillationDetector"
    assert _project_keys(cfg) == ["MODEL.DISTILL", "MODEL.FCOS", "DATASETS.COCO_INSTANCES"]
    # It reloads with SharedKD's keys, as train_net.py --resume and the analysis tools do.
    assert load_config(os.path.join(own_distilled[0], "config.yaml")).MODEL.DISTILL.LOSSES == [
        "SharedKDLoss"
    ]


# ---- in-process units ---------------------------------------------------------------------


def _vanilla_reads(path):
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    return cfg


@pytest.mark.parametrize("datasets", [[], [["mine", "/d/a.json", "/d/imgs"]]])
def test_write_configs(tmp_path, datasets):
    cfg = get_tiny_cfg("faster_rcnn")
    cfg.DATASETS.COCO_INSTANCES = datasets
    write_configs(plain_detector_config(cfg), str(tmp_path), cfg.DATASETS.COCO_INSTANCES)
    vanilla = _vanilla_reads(tmp_path / "config.yaml")
    assert vanilla.MODEL.ROI_HEADS.NUM_CLASSES == 3
    assert vanilla.MODEL.FPN.OUT_CHANNELS == cfg.MODEL.FPN.OUT_CHANNELS
    sharedkd = tmp_path / SHAREDKD_CONFIG
    assert sharedkd.exists() == bool(datasets)
    if datasets:
        with pytest.raises(KeyError):  # vanilla detectron2 does not know the dataset key
            _vanilla_reads(sharedkd)
        again = load_config(str(sharedkd))
        assert again.DATASETS.COCO_INSTANCES == datasets
        again.DATASETS.COCO_INSTANCES = []
        assert again.dump() == load_config(str(tmp_path / "config.yaml")).dump()


@pytest.mark.parametrize(
    "arch, writes",
    [
        ("GeneralizedRCNN", True),
        ("RetinaNet", True),
        ("DistillationDetector", False),
        ("TeacherAutoEncoder", False),
    ],
)
def test_write_portable_config_only_for_plain_models(tmp_path, arch, writes):
    cfg = get_tiny_cfg("faster_rcnn")
    cfg.MODEL.META_ARCHITECTURE = arch
    cfg.DATASETS.COCO_INSTANCES = [["mine", "/d/a.json", "/d/imgs"]]
    cfg.OUTPUT_DIR = str(tmp_path)
    (tmp_path / "config.yaml").write_text(cfg.dump())  # as default_setup leaves it
    write_portable_config(cfg)
    assert (tmp_path / SHAREDKD_CONFIG).exists() == writes
    if writes:
        assert _vanilla_reads(tmp_path / "config.yaml").MODEL.META_ARCHITECTURE == arch
    else:
        assert (tmp_path / "config.yaml").read_text() == cfg.dump()  # detectron2's own


@pytest.mark.parametrize("datasets", [[], [["mine", "/d/a.json", "/d/imgs"]]])
def test_export_student_writes_the_dataset_config_only_with_datasets(tmp_path, datasets):
    cfg = get_tiny_cfg("faster_rcnn")
    cfg.DATASETS.COCO_INSTANCES = datasets
    state = {f"student.{k}": v for k, v in build_model(cfg).state_dict().items()}
    state["losses.w"] = torch.zeros(1)
    cfg.MODEL.META_ARCHITECTURE = "DistillationDetector"
    out = tmp_path / "student"
    path = export_student(cfg, state, str(out))
    assert path == str(out / "model_final.pth")
    names = sorted(os.listdir(out))
    assert names == sorted(
        ["config.yaml", "model_final.pth"] + ([SHAREDKD_CONFIG] * bool(datasets))
    )
    vanilla = _vanilla_reads(out / "config.yaml")
    assert vanilla.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"
    assert vanilla.MODEL.WEIGHTS == path and vanilla.OUTPUT_DIR == str(out)
    if datasets:
        assert load_config(str(out / SHAREDKD_CONFIG)).DATASETS.COCO_INSTANCES == datasets


def test_get_cfg_has_none_of_the_project_keys():
    # What "vanilla" means above: the keys add_sharedkd_config adds are not detectron2's.
    vanilla, ours = get_cfg(), get_cfg()
    add_sharedkd_config(ours)
    assert _project_keys(yaml_dict(vanilla)) == []
    assert _project_keys(yaml_dict(ours)) == [".".join(k) for k in PROJECT_KEYS]


def yaml_dict(cfg):
    return yaml.safe_load(cfg.dump())
