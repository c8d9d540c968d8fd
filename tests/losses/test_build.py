"""shared_kd.losses.build: the registry of distillation losses, their config nodes, building
them from a config or from keywords."""

import types

import pytest
import torch
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec

from shared_kd.config import add_sharedkd_config
from shared_kd.losses import (
    DISTILL_LOSS_REGISTRY,
    DistillLoss,
    PKDLoss,
    SharedKDLoss,
    build_distill_losses,
    build_distill_losses_from_options,
)

from .test_base import _Constant
from .test_shared_kd import STUDENT_SHAPES, TA_SHAPES, TEACHER_SHAPES, _cfg

SHAPES = {"p2": ShapeSpec(channels=2, stride=4)}


@pytest.fixture
def registry(monkeypatch):
    """Register test-only classes under a name; they are gone after the test."""

    def register(name, cls):
        monkeypatch.setitem(DISTILL_LOSS_REGISTRY._obj_map, name, cls)

    return register


# -------------------------------------------------------- registration and config nodes


def test_a_new_loss_registers_its_node_and_builds(registry):
    registry("_Constant", _Constant)
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    assert cfg.MODEL.DISTILL.CONSTANT.VALUE == 1.5
    cfg.MODEL.DISTILL.CONSTANT.VALUE = 4.0
    cfg.MODEL.DISTILL.LOSSES = ["_Constant"]
    (teacher, ta) = build_distill_losses(cfg, SHAPES, [SHAPES, SHAPES])["_Constant"]
    assert (teacher.value, teacher.guide_index, ta.guide_index) == (4.0, 0, 1)


def test_a_subclass_may_share_its_parents_node(registry):
    class _Variant(_Constant):
        pass

    registry("_Constant", _Constant)
    registry("_Variant", _Variant)
    cfg = get_cfg()
    add_sharedkd_config(cfg)  # the inherited add_config runs once
    assert cfg.MODEL.DISTILL.CONSTANT.VALUE == 1.5


def test_a_node_clash_and_a_foreign_class_are_errors(registry):
    class _Clash(DistillLoss):
        @classmethod
        def add_config(cls, cfg):
            # Takes the teacher's node.
            cfg.MODEL.DISTILL.TEACHER = CN()

    registry("_Clash", _Clash)
    with pytest.raises(ValueError, match="_Clash.add_config replaced MODEL.DISTILL.TEACHER"):
        add_sharedkd_config(get_cfg())

    cfg = get_cfg()
    registry("_Clash", _Constant)
    add_sharedkd_config(cfg)
    cfg.MODEL.DISTILL.LOSSES = ["_Clash"]
    registry("_Clash", torch.nn.Identity)
    with pytest.raises(TypeError, match="does not subclass"):
        add_sharedkd_config(get_cfg())
    with pytest.raises(TypeError, match="does not subclass"):
        build_distill_losses(cfg, SHAPES, [SHAPES])


def test_build_rejects_unknown_and_duplicated_names():
    with pytest.raises(KeyError, match="NoSuchLoss"):
        build_distill_losses(_cfg(["NoSuchLoss"]), STUDENT_SHAPES, [TEACHER_SHAPES])
    with pytest.raises(ValueError, match="lists a loss twice"):
        build_distill_losses(
            _cfg(["SharedKDLoss", "SharedKDLoss"]), STUDENT_SHAPES, [TEACHER_SHAPES]
        )
    with pytest.raises(ValueError, match="LOSSES is empty"):
        build_distill_losses(_cfg([]), STUDENT_SHAPES, [TEACHER_SHAPES])


# ----------------------------------------------------------------------- building, by guide


class _TeacherOnly(_Constant):
    """A loss of the teacher alone (as inherit/explore is)."""

    PER_GUIDE = False


class _GuideValue(_Constant):
    """``value``: the ``value`` of the guide it was built for (0 without one)."""

    @classmethod
    def from_config(cls, cfg, student_shapes, guide_shapes, guide=None):
        return {"value": 0.0 if guide is None else guide.value}


def test_a_teacher_only_loss_is_built_once(registry):
    registry("_TeacherOnly", _TeacherOnly)
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    cfg.MODEL.DISTILL.LOSSES = ["_TeacherOnly"]
    (only,) = build_distill_losses(cfg, SHAPES, [SHAPES, SHAPES, SHAPES])["_TeacherOnly"]
    assert only.guide_index == 0


def test_each_instance_gets_its_guide(registry):
    registry("_GuideValue", _GuideValue)
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    cfg.MODEL.DISTILL.LOSSES = ["_GuideValue"]
    guides = [types.SimpleNamespace(value=1.0), types.SimpleNamespace(value=2.0)]
    built = build_distill_losses(cfg, SHAPES, [SHAPES, SHAPES], guides)["_GuideValue"]
    assert [(m.value, m.guide_index) for m in built] == [(1.0, 0), (2.0, 1)]
    without = build_distill_losses(cfg, SHAPES, [SHAPES, SHAPES])["_GuideValue"]
    assert [m.value for m in without] == [0.0, 0.0]  # no guide models given: None each


# ------------------------------------------------------------------------------ from keywords


def test_from_options_builds_what_the_keywords_say_in_order():
    losses = build_distill_losses_from_options(
        {"SharedKDLoss": {"alpha": 10.0}, "PKDLoss": {}},
        STUDENT_SHAPES,
        [TEACHER_SHAPES, TA_SHAPES],
    )
    assert list(losses) == ["SharedKDLoss", "PKDLoss"]
    shared, pkd = losses["SharedKDLoss"], losses["PKDLoss"]
    assert all(isinstance(m, SharedKDLoss) for m in shared)
    assert all(isinstance(m, PKDLoss) for m in pkd)
    assert [m.alpha for m in shared] == [10.0, 10.0]
    assert [m.guide_index for m in shared] == [0, 1] == [m.guide_index for m in pkd]
    # each guide's instance is of its own widths: min(4, 3) fused channels vs. the TA's 2
    assert [m.tsm.fused_channels for m in shared] == [[3], [2]]


def test_from_options_of_names_or_none_keeps_the_defaults():
    default = SharedKDLoss.keyword_defaults()["alpha"]
    for options in (["SharedKDLoss"], {"SharedKDLoss": None}, {"SharedKDLoss": {}}):
        (loss,) = build_distill_losses_from_options(options, STUDENT_SHAPES, [TEACHER_SHAPES])[
            "SharedKDLoss"
        ]
        assert loss.alpha == default == 15.0


def test_from_options_names_what_is_wrong():
    with pytest.raises(ValueError, match="the distiller's losses is empty"):
        build_distill_losses_from_options({}, STUDENT_SHAPES, [TEACHER_SHAPES])
    with pytest.raises(KeyError, match="Unknown distillation loss 'NoSuchLoss' in the distiller"):
        build_distill_losses_from_options(["NoSuchLoss"], STUDENT_SHAPES, [TEACHER_SHAPES])
    with pytest.raises(ValueError, match=r"has no option \['alpah'\]"):
        build_distill_losses_from_options(
            {"SharedKDLoss": {"alpah": 1.0}}, STUDENT_SHAPES, [TEACHER_SHAPES]
        )


def test_from_options_refuses_a_list_naming_a_loss_twice():
    # a list of names becomes a dict: the duplicate must be caught before it is folded away
    with pytest.raises(ValueError, match="twice"):
        build_distill_losses_from_options(
            ["SharedKDLoss", "SharedKDLoss"], STUDENT_SHAPES, [TEACHER_SHAPES]
        )
