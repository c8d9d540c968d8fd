"""Every config file shipped in configs/ merges into a SharedKD config; every study file loads."""

import glob
import os

import pytest
from detectron2.config import get_cfg

from shared_kd.config import add_sharedkd_config

from .conftest import REPO_ROOT

STUDIES_DIR = os.path.join(REPO_ROOT, "configs", "studies")
CONFIGS = sorted(
    p
    for p in glob.glob(os.path.join(REPO_ROOT, "configs", "**", "*.yaml"), recursive=True)
    if not p.startswith(STUDIES_DIR + os.sep)  # study files, not detectron2 configs
)
STUDIES = sorted(glob.glob(os.path.join(STUDIES_DIR, "*.yaml")))


def test_configs_exist():
    assert len(CONFIGS) >= 2


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_config_merges(path):
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    cfg.merge_from_file(path)
    assert cfg.MODEL.META_ARCHITECTURE
    assert cfg.DATASETS.TRAIN, "a shipped config names its training set"


def test_studies_exist():
    assert len(STUDIES) >= 5


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_study_file_loads_and_names_shipped_configs(path):
    from shared_kd.analysis.study import load_study_spec

    spec = load_study_spec(path)
    assert spec.seeds and len(spec.arms) >= 2
    out = os.path.join("output", "studies", spec.name)
    for run in spec.guide_runs(out) + spec.arm_runs(out):
        cfg = get_cfg()
        add_sharedkd_config(cfg)
        cfg.merge_from_file(os.path.join(REPO_ROOT, run.stage.config_file))
        # every placeholder is filled, and the overrides are valid keys of that config
        assert not any("{" in str(o) for o in run.stage.opts), run.stage.opts
        cfg.merge_from_list(list(run.stage.opts))
