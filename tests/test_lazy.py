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
from shared_kd.pipeline import seed_override

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


def test_overrides_apply_in_order_and_may_add_keys():
    cfg = load_lazy_config(
        DISTILL,
        [
            "model.losses.SharedKDLoss.alpha=3.0",
            "model.losses.SharedKDLoss.cross=True",  # a second option: the distiller checks it
            "+train.note=x",  # + adds a key on purpose
            "~model.in_features.4",  # a list item
        ],
    )
    assert dict(cfg.model.losses.SharedKDLoss) == {"alpha": 3.0, "cross": True}
    assert cfg.train.note == "x" and list(cfg.model.in_features) == ["p2", "p3", "p4", "p5"]
    # checked against the config as the earlier overrides left it
    with pytest.raises(LazyConfigError, match="nothing to delete"):
        load_lazy_config(STUDENT, ["~dataloader.evaluator", "~dataloader.evaluator"])
    with pytest.raises(LazyConfigError, match="train of .* has no key 'note'"):
        load_lazy_config(STUDENT, ["train.note=x"])  # without +: a typo until proven otherwise


def test_a_study_seeds_a_config_without_train_seed():
    coco = os.path.join(REPO_ROOT, "configs", "COCO", "mask_rcnn_regnetx_400mf_FPN_2x.py")
    assert seed_override(STUDENT, 3) == ["train.seed=3"]
    assert seed_override(coco, 3) == ["+train.seed=3"]  # detectron2's common/train.py has none
    assert load_lazy_config(coco, seed_override(coco, 3)).train.seed == 3
    assert seed_override(os.path.join(SHAPES, "faster_rcnn_R18_FPN_tiny.yaml"), 3) == ["SEED", "3"]
