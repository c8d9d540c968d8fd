"""LazyConfig files: which system a file uses, checked key=value overrides."""

import os

import pytest
from detectron2.config import LazyConfig

from shared_kd.lazy import (
    LazyConfigError,
    check_lazy_overrides,
    is_lazy_config,
    load_lazy_config,
    target_name,
)

from .conftest import REPO_ROOT

SHAPES = os.path.join(REPO_ROOT, "configs", "shapes")
STUDENT = os.path.join(SHAPES, "faster_rcnn_R18_FPN_tiny.py")
DISTILL = os.path.join(SHAPES, "sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.py")


def test_the_config_system_of_a_file(tmp_path):
    assert is_lazy_config(STUDENT)
    assert not is_lazy_config(os.path.join(SHAPES, "faster_rcnn_R18_FPN_tiny.yaml"))
    saved = tmp_path / "config.yaml"  # as LazyConfig.save writes it
    LazyConfig.save(LazyConfig.load(STUDENT), str(saved))
    assert is_lazy_config(str(saved))
    tagged = tmp_path / "tagged.yaml"  # python tags (tuples) are read without running them
    tagged.write_text("model:\n  _target_: x.Y\n  sizes: !!python/tuple [1, 2]\n")
    assert is_lazy_config(str(tagged))
    assert not is_lazy_config(str(tmp_path / "missing.yaml"))


def test_overrides_apply_and_name_existing_keys():
    cfg = load_lazy_config(DISTILL, ["train.max_iter=7", "model.losses.SharedKDLoss.alpha=3.0"])
    assert cfg.train.max_iter == 7 and cfg.model.losses.SharedKDLoss.alpha == 3.0
    assert target_name(cfg.model) == "DistillationDetector"
    assert target_name(cfg.model.student) == "GeneralizedRCNN"
    # a keyword of a LazyCall that the file leaves at its default
    cfg = load_lazy_config(STUDENT, ["model.backbone.bottom_up.freeze_at=2", "model.vis_period=5"])
    assert cfg.model.vis_period == 5


@pytest.mark.parametrize(
    "override, match",
    [
        ("train.max_iters=7", "has no key 'max_iters'; did you mean max_iter"),
        ("model.backbone.out_channel=3", "did you mean out_channels"),
        ("modle.vis_period=1", "the config of .* has no key 'modle'"),
        ("SOLVER.MAX_ITER", "is not key=value"),
    ],
)
def test_bad_overrides_are_named(override, match):
    with pytest.raises(LazyConfigError, match=match):
        load_lazy_config(STUDENT, [override])


def test_a_file_that_does_not_load_is_named(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from detectron2.config import NoSuchThing\n")
    with pytest.raises(LazyConfigError, match="bad.py' cannot be loaded: ImportError"):
        load_lazy_config(str(bad))
    cfg = load_lazy_config(STUDENT)
    with pytest.raises(LazyConfigError, match="did you mean"):
        check_lazy_overrides(cfg, ["dataloader.train.num_worker=0"], "x.py")


def test_a_key_can_be_deleted():
    cfg = load_lazy_config(STUDENT, ["~dataloader.evaluator"])  # train without evaluating
    assert "evaluator" not in cfg.dataloader and "test" in cfg.dataloader
    with pytest.raises(LazyConfigError, match="nothing to delete"):
        load_lazy_config(STUDENT, ["~dataloader.evaluatr"])
