"""Every config file shipped in configs/ merges into a SharedKD config."""

import glob
import os

import pytest
from detectron2.config import get_cfg

from shared_kd.config import add_sharedkd_config

from .conftest import REPO_ROOT

CONFIGS = sorted(glob.glob(os.path.join(REPO_ROOT, "configs", "**", "*.yaml"), recursive=True))


def test_configs_exist():
    assert len(CONFIGS) >= 2


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_config_merges(path):
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    cfg.merge_from_file(path)
    assert cfg.MODEL.META_ARCHITECTURE
    assert cfg.DATASETS.TRAIN, "a shipped config names its training set"
