"""The loss contract: DistillLoss, registration by file, every loss's config node (the registry's
functions, registering and building: test_build.py)."""

import inspect
import os
import sys

import pytest
import torch
from detectron2.config import CfgNode as CN
from detectron2.config import configurable, get_cfg
from detectron2.layers import ShapeSpec
from detectron2.utils.events import EventStorage

import shared_kd.losses
from shared_kd.config import add_sharedkd_config
from shared_kd.losses import (
    DISTILL_LOSS_REGISTRY,
    DistillLoss,
    SharedKDLoss,
)


def _registered():
    return sorted(DISTILL_LOSS_REGISTRY, key=lambda item: item[0])


class _Constant(DistillLoss):
    """A loss with a node of its own: ``loss_constant = MODEL.DISTILL.CONSTANT.VALUE``."""

    @classmethod
    def add_config(cls, cfg):
        # A test node.
        cfg.MODEL.DISTILL.CONSTANT = CN()
        # The value, any float.
        cfg.MODEL.DISTILL.CONSTANT.VALUE = 1.5

    @configurable
    def __init__(self, *, value: float):
        super().__init__()
        self.value = value

    @classmethod
    def from_config(cls, cfg, student_shapes, guide_shapes, guide=None):
        return {"value": cfg.MODEL.DISTILL.CONSTANT.VALUE}

    def forward(self, student, guide):
        return {"loss_constant": torch.tensor(self.value)}


def test_every_registered_loss_keeps_the_contract():
    names = [name for name, _ in _registered()]
    assert {"SharedKDLoss", "FitNetsLoss", "PKDLoss", "SoftTargetKDLoss"} <= set(names)
    assert {"AttentionTransferLoss", "FSPLoss", "InheritExploreLoss"} <= set(names)
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    for name, cls in _registered():
        assert issubclass(cls, DistillLoss), name
        assert getattr(shared_kd.losses, name) is cls and name in shared_kd.losses.__all__
        assert isinstance(cls.NEEDS_LOGITS, bool) and isinstance(cls.PER_GUIDE, bool), name
        params = list(inspect.signature(cls.from_config).parameters)
        assert params == ["cfg", "student_shapes", "guide_shapes", "guide"], name
        assert list(inspect.signature(cls.forward).parameters) == ["self", "student", "guide"]
        assert "add_config" in vars(cls), f"{name} declares no config node"
        # its node is in the config: the keys its add_config adds to a bare MODEL.DISTILL
        bare = get_cfg()
        bare.MODEL.DISTILL = CN()
        cls.add_config(bare)
        assert bare.MODEL.DISTILL and all(
            cfg.MODEL.DISTILL[node] == value for node, value in bare.MODEL.DISTILL.items()
        ), name


def test_every_module_of_the_package_is_imported_and_registers_its_losses():
    package = os.path.dirname(shared_kd.losses.__file__)
    modules = {f[:-3] for f in os.listdir(package) if f.endswith(".py") and f != "__init__.py"}
    assert modules <= {m.split(".")[-1] for m in sys.modules if m.startswith("shared_kd.losses.")}
    for _, cls in _registered():
        if cls.__module__.startswith("shared_kd.losses."):
            assert cls.__module__.split(".")[-1] in modules
    defined = {
        obj
        for m in modules
        for obj in vars(sys.modules[f"shared_kd.losses.{m}"]).values()
        if isinstance(obj, type) and issubclass(obj, DistillLoss) and obj is not DistillLoss
    }
    assert defined <= {cls for _, cls in _registered()}


def test_base_defaults_and_weight_check():
    loss = _Constant(value=1.0)
    assert not loss.NEEDS_LOGITS and loss.PER_GUIDE and loss.needs_guide
    assert loss.guide_index == 0  # the teacher's, until build_distill_losses says otherwise
    DistillLoss.check_weight("X.WEIGHT", 0.0)
    with pytest.raises(ValueError, match=r"MODEL\.DISTILL\.X\.WEIGHT must be >= 0, got -1"):
        DistillLoss.check_weight("X.WEIGHT", -1)
    assert not SharedKDLoss(in_features=["p2"], teacher_channels=[2], identical=False).needs_guide


def test_put_scalar_names_the_guide():
    loss = _Constant(value=1.0)
    with EventStorage(0) as storage:
        loss.put_scalar("gap", 1.0)
        loss.guide_index = 2
        loss.put_scalar("gap", 3.0)
    assert storage.latest()["distill/gap"][0] == 1.0
    assert storage.latest()["distill/assistant2/gap"][0] == 3.0


# --------------------------------------------------------------- one source of defaults

STUDENT = {"p2": ShapeSpec(channels=4, stride=4), "p3": ShapeSpec(channels=4, stride=8)}
GUIDE = {"p2": ShapeSpec(channels=8, stride=4), "p3": ShapeSpec(channels=8, stride=8)}
# Built from keywords without a teacher checkpoint: InheritExploreLoss needs stage A's file.
KEYWORD_BUILT = [name for name, _ in _registered() if name != "InheritExploreLoss"]


@pytest.mark.parametrize("name", [name for name, _ in _registered()])
def test_the_config_defaults_are_the_keyword_defaults(name):
    cls = DISTILL_LOSS_REGISTRY.get(name)
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    options = cls.config_options(cfg)
    defaults = cls.keyword_defaults()
    assert set(options) == set(cls.option_names())
    shared = {k for k in options if k in defaults}
    assert shared, f"{name}: no config key is a keyword of __init__"
    assert {k: options[k] for k in shared} == {k: defaults[k] for k in shared}


@pytest.mark.parametrize("name", KEYWORD_BUILT)
def test_a_loss_from_keywords_is_the_loss_from_the_config(name):
    cls = DISTILL_LOSS_REGISTRY.get(name)
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    cfg.SOLVER.MAX_ITER = 90
    torch.manual_seed(0)
    from_cfg = cls(cfg, STUDENT, GUIDE)
    torch.manual_seed(0)
    from_keywords = cls.from_options(STUDENT, GUIDE, max_iter=90)
    assert vars(from_cfg).keys() == vars(from_keywords).keys()
    plain = lambda m: {k: v for k, v in vars(m).items() if not k.startswith("_")}  # noqa: E731
    assert plain(from_cfg) == plain(from_keywords)
    for k, v in from_cfg.state_dict().items():
        assert torch.equal(v, from_keywords.state_dict()[k])


def test_sharedkd_from_keywords_gets_the_studys_defaults_not_the_papers():
    loss = SharedKDLoss.from_options(STUDENT, GUIDE)
    assert (loss.alpha, loss.normalize, loss.cross) == (15.0, "channel", False)
    assert not any(p.requires_grad for p in loss.parameters())  # fixed 0.75 / 0.25 mix
    direct = SharedKDLoss(in_features=["p2", "p3"], teacher_channels=[8, 8])
    assert (direct.alpha, direct.normalize, direct.cross) == (15.0, "channel", False)
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    cfg.MODEL.DISTILL.SHARED_KD.ALPHA = 10.0
    assert (
        SharedKDLoss(cfg, STUDENT, GUIDE).alpha
        == SharedKDLoss.from_options(STUDENT, GUIDE, alpha=10.0).alpha
    )


def test_an_unknown_option_is_named():
    with pytest.raises(ValueError, match=r"has no option \['alpah'\]; its options are"):
        SharedKDLoss.from_options(STUDENT, GUIDE, alpah=3.0)
