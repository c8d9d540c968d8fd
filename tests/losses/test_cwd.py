"""Channel-wise distillation (CWD) against values computed by hand on small tensors."""

import math

import pytest
import torch
import torch.nn as nn
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from torch.testing import assert_close

from shared_kd.losses import DISTILL_LOSS_REGISTRY, CWDLoss, build_distill_losses
from shared_kd.utils.testing import random_batch

from ..gpu.common import tiny_distill_cfg
from .common import (
    STUDENT_SHAPES,
    TA_SHAPES,
    TEACHER_SHAPES,
    distill_cfg,
    feature_maps,
    pool2,
    run_loss,
)

CWD = "loss_cwd"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _softmax(x, tau):
    """softmax of the flattened ``x / tau``, written out with exp."""
    e = torch.exp(x.flatten() / tau)
    return e / e.sum()


def _cwd(s, t, tau):
    """mean over (n, c) of sum_i p_T,i log(p_T,i / p_S,i), one channel at a time."""
    kls = []
    for n in range(s.shape[0]):
        for c in range(s.shape[1]):
            p_s, p_t = _softmax(s[n, c], tau), _softmax(t[n, c], tau)
            kls.append((p_t * (p_t / p_s).log()).sum())
    return torch.stack(kls).mean()


def test_two_positions_by_hand():
    # S = (0, 0): p_S = (1/2, 1/2). T = (ln 3, 0): p_T = (3/4, 1/4).
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.130812...; weight 2 -> 0.261624...
    s = {"p2": torch.zeros(1, 1, 1, 2)}
    t = {"p2": torch.tensor([math.log(3.0), 0.0]).view(1, 1, 1, 2)}
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    out = run_loss(CWDLoss(in_features=["p2"], weight=2.0), s, t)
    assert set(out) == {CWD}
    assert_close(out[CWD], torch.tensor(2.0 * kl))
    # tau = 2: T / 2 = (ln sqrt(3), 0), p_T = (sqrt(3), 1) / (sqrt(3) + 1); times tau^2 = 4
    r3 = math.sqrt(3.0)
    p = (r3 / (r3 + 1), 1 / (r3 + 1))
    kl2 = p[0] * math.log(2 * p[0]) + p[1] * math.log(2 * p[1])
    out = run_loss(CWDLoss(in_features=["p2"], weight=1.0, tau=2.0), s, t)[CWD]
    assert_close(out, torch.tensor(4.0 * kl2))


def test_channels_averaged_levels_summed_by_hand():
    # p2: channel 0 as above, channel 1 the same in both (KL 0): mean over channels kl / 2.
    # p3: 1 x 1 maps, one position: every distribution is (1), KL 0 whatever the values.
    # loss = weight 3 * (kl / 2 + 0)
    s2 = torch.tensor([[0.0, 0.0], [5.0, -1.0]]).view(1, 2, 1, 2)
    t2 = torch.tensor([[math.log(3.0), 0.0], [5.0, -1.0]]).view(1, 2, 1, 2)
    s = {"p2": s2, "p3": torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)}
    t = {"p2": t2, "p3": torch.tensor([-7.0, 30.0]).view(1, 2, 1, 1)}
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    out = run_loss(CWDLoss(in_features=["p2", "p3"], weight=3.0), s, t)[CWD]
    assert_close(out, torch.tensor(3.0 * kl / 2))


def test_random_with_cropping_and_pooling():
    s, t = feature_maps()
    out = run_loss(CWDLoss(in_features=["p2", "p3"], weight=1.5, tau=2.0), s, t)[CWD]
    p2 = _cwd(s["p2"], pool2(t["p2"][:, :2]), 2.0)
    p3 = _cwd(s["p3"], t["p3"], 2.0)
    assert_close(out, 1.5 * 4.0 * (p2 + p3))
    assert CWDLoss(in_features=["p2"]).weight == 5.0 and CWDLoss(in_features=["p2"]).tau == 1.0
    assert_close(
        run_loss(CWDLoss(in_features=["p2"]), s, t)[CWD],
        5.0 * _cwd(s["p2"], pool2(t["p2"][:, :2]), 1.0),
    )


def test_zero_for_agreeing_maps_and_invariant_to_shifts():
    s, t = feature_maps()
    loss = CWDLoss(in_features=["p2", "p3"])
    same = {"p2": pool2(t["p2"][:, :2]), "p3": t["p3"]}
    assert_close(run_loss(loss, same, t)[CWD], torch.tensor(0.0), atol=1e-6, rtol=0)
    # a softmax ignores a constant added to a whole (image, channel) map
    reference = run_loss(loss, s, t)[CWD]
    assert reference > 0
    shift = {f: x + 10.0 * torch.randn(x.shape[0], x.shape[1], 1, 1) for f, x in t.items()}
    assert_close(run_loss(loss, s, shift)[CWD], reference, rtol=1e-4, atol=1e-6)
    # but not a scale: a sharper teacher is another target
    sharper = {f: 3.0 * x for f, x in t.items()}
    assert not torch.allclose(run_loss(loss, s, sharper)[CWD], reference)


def test_gradient_reaches_the_student_only_by_hand():
    # d/dS_nc of tau^2 KL(p_T || softmax(S_nc / tau)) = tau (p_S - p_T), over N * C (the mean)
    s = torch.randn(2, 3, 2, 2, requires_grad=True)
    t = torch.randn(2, 3, 2, 2)
    loss = CWDLoss(in_features=["p2"], weight=0.5, tau=2.0)
    assert len(list(loss.parameters())) == 0
    run_loss(loss, {"p2": s}, {"p2": t})[CWD].backward()
    p_s = (s.detach().flatten(2) / 2.0).softmax(2).view_as(s)
    p_t = (t.flatten(2) / 2.0).softmax(2).view_as(t)
    assert_close(s.grad, 0.5 * 2.0 * (p_s - p_t) / 6)
    assert t.grad is None


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="CWD.WEIGHT"):
        CWDLoss(in_features=["p2"], weight=-1.0)
    with pytest.raises(ValueError, match="CWD.TAU"):
        CWDLoss(in_features=["p2"], tau=0.0)
    assert CWDLoss(in_features=["p2"], weight=0.0).weight == 0.0


# ----------------------------------------------------------------------------- config, registry


def test_registered_with_its_config_node():
    assert DISTILL_LOSS_REGISTRY.get("CWDLoss") is CWDLoss
    assert (CWDLoss.NEEDS_LOGITS, CWDLoss.PER_GUIDE) == (False, True)
    cfg = distill_cfg([])
    assert (cfg.MODEL.DISTILL.CWD.WEIGHT, cfg.MODEL.DISTILL.CWD.TAU) == (5.0, 1.0)


def test_build_from_config_one_per_guide():
    cfg = distill_cfg(["CWDLoss"])
    cfg.MODEL.DISTILL.CWD.WEIGHT = 0.25
    cfg.MODEL.DISTILL.CWD.TAU = 4.0
    losses = build_distill_losses(cfg, STUDENT_SHAPES, [TEACHER_SHAPES, TA_SHAPES])
    assert isinstance(losses["CWDLoss"], nn.ModuleList) and len(losses["CWDLoss"]) == 2
    loss = losses["CWDLoss"][1]
    assert (loss.in_features, loss.weight, loss.tau) == (["p2", "p3"], 0.25, 4.0)
    assert loss.guide_index == 1  # the teaching assistant's
    cfg.MODEL.DISTILL.CWD.TAU = -1.0
    with pytest.raises(ValueError, match="CWD.TAU"):
        build_distill_losses(cfg, STUDENT_SHAPES, [TEACHER_SHAPES])


@pytest.mark.slow
def test_a_training_step_of_the_distiller(tmp_path):
    model = build_model(tiny_distill_cfg(tmp_path, device="cpu", losses=["CWDLoss"])).train()
    with EventStorage(0):
        losses = model(random_batch(2))
    assert losses[CWD].dim() == 0 and torch.isfinite(losses[CWD]) and losses[CWD] > 0
    losses[CWD].backward()
    grads = [p.grad for p in model.student.backbone.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert all(p.grad is None for p in model.teacher.parameters())
