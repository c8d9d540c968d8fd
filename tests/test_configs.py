"""Every config file shipped in configs/ merges into a SharedKD config (yaml) or loads and names
what train_net.py reads (LazyConfig .py); every study file loads."""

import glob
import os

import pytest
from detectron2.config import get_cfg

from shared_kd.analysis.study import load_study_spec
from shared_kd.config import add_sharedkd_config
from shared_kd.detector_config import load_detector_config
from shared_kd.lazy import is_lazy_config, load_lazy_config, target_name

from .conftest import REPO_ROOT

STUDIES_DIR = os.path.join(REPO_ROOT, "configs", "studies")
CONFIGS = sorted(
    p
    for p in glob.glob(os.path.join(REPO_ROOT, "configs", "**", "*.yaml"), recursive=True)
    if not p.startswith(STUDIES_DIR + os.sep)  # study files, not detectron2 configs
)
STUDIES = sorted(glob.glob(os.path.join(STUDIES_DIR, "*.yaml")))
LAZY_CONFIGS = sorted(
    p
    for p in glob.glob(os.path.join(REPO_ROOT, "configs", "**", "*.py"), recursive=True)
    if not os.path.basename(p).startswith("base_")  # bases: read through their leaves
)


def test_configs_exist():
    assert len(CONFIGS) >= 2


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_config_merges(path):
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    cfg.merge_from_file(path)
    assert cfg.MODEL.META_ARCHITECTURE
    assert cfg.DATASETS.TRAIN, "a shipped config names its training set"


@pytest.mark.parametrize("path", LAZY_CONFIGS, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_lazy_config_loads_with_what_training_reads(path):
    cfg = load_lazy_config(path)
    assert {"model", "dataloader", "optimizer", "lr_multiplier", "train"} <= set(cfg)
    assert cfg.dataloader.train.dataset.names and cfg.train.output_dir.startswith("./output/")
    if target_name(cfg.model) == "DistillationDetector":
        assert cfg.model.losses and cfg.model.guides
        assert load_detector_config(path).input_format == "BGR"  # read as its student
        for guide in cfg.model.guides:  # every guide's config can be read
            config_file = guide.config_file
            if not config_file.startswith("model_zoo:"):
                config_file = os.path.join(REPO_ROOT, config_file)
            assert load_detector_config(config_file).build_model  # found and parsed


def test_lazy_configs_exist():
    assert len(LAZY_CONFIGS) >= 6


@pytest.mark.slow
def test_every_guide_config_a_shipped_config_names_exists():
    for path in CONFIGS:
        cfg = get_cfg()
        add_sharedkd_config(cfg)
        cfg.merge_from_file(path)
        if cfg.MODEL.META_ARCHITECTURE != "DistillationDetector":
            continue
        teacher = cfg.MODEL.DISTILL.TEACHER.CONFIG_FILE
        if teacher.startswith("model_zoo:common/models/mask_rcnn_vitdet"):
            continue  # detectron2 main only (tested there)
        if teacher.startswith("model_zoo:"):
            assert load_detector_config(teacher).is_lazy == teacher.endswith(".py")
        else:
            assert os.path.isfile(os.path.join(REPO_ROOT, teacher)), (path, teacher)


def test_studies_exist():
    assert len(STUDIES) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("path", STUDIES, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_study_file_loads_and_names_shipped_configs(path):
    spec = load_study_spec(path)
    assert spec.seeds and len(spec.arms) >= 2
    out = os.path.join("output", "studies", spec.name)
    for run in spec.guide_runs(out) + spec.arm_runs(out):
        config_file = os.path.join(REPO_ROOT, run.stage.config_file)
        # every placeholder is filled, and the overrides are valid keys of that config
        assert not any("{" in str(o) for o in run.stage.opts), run.stage.opts
        if is_lazy_config(config_file):
            load_lazy_config(config_file, list(run.stage.opts))
            continue
        cfg = get_cfg()
        add_sharedkd_config(cfg)
        cfg.merge_from_file(config_file)
        cfg.merge_from_list(list(run.stage.opts))


def _merged(config_file, opts):
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, config_file))
    cfg.merge_from_list(opts)
    cfg.OUTPUT_DIR = ""
    return cfg


TEACHER = ["MODEL.DISTILL.TEACHER.WEIGHTS", "teacher.pth"]


def _arm_cfg(study, name):
    """The config an arm of a study file trains, with a stand-in teacher checkpoint."""
    spec = load_study_spec(os.path.join(STUDIES_DIR, study))
    (arm,) = [a for a in spec.arms if a["name"] == name]
    opts = [o for o in arm.get("opts", []) if "{teacher}" not in str(o)]
    return _merged(arm["config"], [o for o in opts if o != TEACHER[0]] + TEACHER)


@pytest.mark.parametrize(
    "family, arm, losses",
    [
        ("faster_rcnn", "PKD, clipped", ["PKDLoss"]),
        ("retinanet", "soft targets, foreground-normalised, weight 1", ["SoftTargetKDLoss"]),
    ],
)
def test_the_recipe_is_the_arm_its_study_measured(family, arm, losses):
    """configs/shapes/recipe_*.yaml is the best arm of configs/studies/mkd_<family>.yaml (its
    config and overrides), up to the output folder: the README's figures are its own; the COCO
    recipe has the same losses and clipping."""
    recipe = _merged(f"configs/shapes/recipe_{family}_R34_to_R18_FPN_tiny.yaml", TEACHER)
    assert recipe == _arm_cfg(f"mkd_{family}.yaml", arm)
    assert recipe.MODEL.DISTILL.LOSSES == losses and recipe.SOLVER.CLIP_GRADIENTS.ENABLED
    coco = _merged(f"configs/COCO/recipe_{family}_R101_to_R50_FPN_2x.yaml", [])
    assert coco.MODEL.DISTILL.LOSSES == losses
    assert coco.MODEL.DISTILL.KD == recipe.MODEL.DISTILL.KD
    assert coco.SOLVER.CLIP_GRADIENTS == recipe.SOLVER.CLIP_GRADIENTS


@pytest.mark.parametrize(
    "family, arm",
    [
        ("faster_rcnn", "soft targets, T 2 -> 1, weight 0.3"),
        ("retinanet", "soft targets, foreground-normalised, weight 0.3"),
    ],
)
def test_the_recommended_mkd_config_is_the_arm_its_study_measured(family, arm):
    """mkd_*_recommended.yaml (the M-KD defaults, soft targets alone) is the study's arm of
    soft targets at weight 0.3 from T 2 (RetinaNet: divided by its foreground count), up to the
    output folder."""
    config = f"configs/shapes/mkd_{family}_R34_to_R18_FPN_tiny_recommended.yaml"
    recommended = _merged(config, TEACHER)
    assert recommended == _arm_cfg(f"mkd_{family}.yaml", arm)
    kd = recommended.MODEL.DISTILL.KD
    assert kd.T_START == 2.0 and kd.WEIGHT == 0.3 and kd.DENSE_NORMALIZER == "foreground"
