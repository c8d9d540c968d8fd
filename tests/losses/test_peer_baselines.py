"""The peer baselines FitNets and PKD against values computed by hand on small tensors."""

import pytest
import torch
import torch.nn as nn
from torch.testing import assert_close

from shared_kd.losses import DISTILL_LOSS_REGISTRY, FitNetsLoss, PKDLoss, build_distill_losses

from .common import (
    STUDENT_SHAPES,
    TA_SHAPES,
    TEACHER_SHAPES,
    distill_cfg,
    feature_maps,
    pool2,
    run_loss,
)

FITNETS = "loss_fitnets"
PKD = "loss_pkd"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _mse(a, b):
    """Mean over elements of (a - b)^2, written out."""
    return ((a - b) ** 2).sum() / a.numel()


def _standardize(x, eps=1e-6):
    """Per channel over N, H, W: (x - mean) / (unbiased std + eps), written out with sums."""
    out = []
    for c in range(x.shape[1]):
        v = x[:, c]
        m = v.numel()
        mean = v.sum() / m
        var = ((v - mean) ** 2).sum() / (m - 1)
        out.append((v - mean) / (var.sqrt() + eps))
    return torch.stack(out, dim=1)


def _channels(values, size):
    """1 x len(values) x size x size, channel k constant at values[k]."""
    return torch.stack([torch.full((size, size), float(v)) for v in values])[None]


# ----------------------------------------------------------------------------- FitNets


def test_fitnets_constant_maps_by_hand():
    # p2: S = 0 (2 channels, 4x4); T (3 channels, 8x8): channel 0 a checkerboard of 0 and 4
    #   (every 2x2 block averages to 2), channel 1 constant 3, channel 2 = 100 (cropped away)
    #   -> mse = (2^2 + 3^2) / 2 = 6.5
    # p3: S = 1; T channels (3, -1) -> mse = ((3-1)^2 + (-1-1)^2) / 2 = 4
    # loss = weight 2 * mean(6.5, 4) = 10.5
    checker = ((torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2).float() * 4.0
    t2 = torch.cat([checker[None, None], _channels([3.0, 100.0], 8)], dim=1)
    s = {"p2": torch.zeros(1, 2, 4, 4), "p3": torch.ones(1, 2, 2, 2)}
    t = {"p2": t2, "p3": _channels([3.0, -1.0], 2)}
    out = run_loss(FitNetsLoss(in_features=["p2", "p3"], weight=2.0), s, t)
    assert set(out) == {FITNETS}
    assert_close(out[FITNETS], torch.tensor(10.5))


def test_fitnets_random_with_cropping_and_pooling():
    s, t = feature_maps()
    out = run_loss(FitNetsLoss(in_features=["p2", "p3"], weight=3.0), s, t)[FITNETS]
    expected = 3.0 * (_mse(s["p2"], pool2(t["p2"][:, :2])) + _mse(s["p3"], t["p3"])) / 2
    assert_close(out, expected)
    # only the listed levels count
    out = run_loss(FitNetsLoss(in_features=["p3"], weight=3.0), s, t)[FITNETS]
    assert_close(out, 3.0 * _mse(s["p3"], t["p3"]))


def test_fitnets_default_weight_and_zero_weight():
    s, t = feature_maps()
    by_hand = (_mse(s["p2"], pool2(t["p2"][:, :2])) + _mse(s["p3"], t["p3"])) / 2
    assert FitNetsLoss(in_features=["p2", "p3"]).weight == 2.0
    assert_close(run_loss(FitNetsLoss(in_features=["p2", "p3"]), s, t)[FITNETS], 2.0 * by_hand)
    assert_close(
        run_loss(FitNetsLoss(in_features=["p2", "p3"], weight=0.0), s, t)[FITNETS],
        torch.tensor(0.0),
    )


def test_fitnets_gradient_reaches_the_student_only():
    s2 = torch.randn(1, 2, 4, 4, requires_grad=True)
    s3 = torch.randn(1, 2, 2, 2, requires_grad=True)
    t2, t3 = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 2, 2)
    loss = FitNetsLoss(in_features=["p2", "p3"], weight=2.0)
    assert len(list(loss.parameters())) == 0
    run_loss(loss, {"p2": s2, "p3": s3}, {"p2": t2, "p3": t3})[FITNETS].backward()
    # d/dS_l of weight * (1/2) * mse_l = weight * (1/2) * 2 (S_l - T_l) / n_l
    assert_close(s2.grad, 2.0 * (s2 - t2).detach() / s2.numel())
    assert_close(s3.grad, 2.0 * (s3 - t3).detach() / s3.numel())
    assert t2.grad is None and t3.grad is None


# ----------------------------------------------------------------------------- PKD


def test_pkd_anticorrelated_maps_by_hand():
    # Per level, S is a negative affine map of the aligned teacher, so every channel has
    # Pearson correlation -1: mean (z_S - z_T)^2 = mean (2 z_T)^2 = 4 (M-1) / M, M = N*H*W.
    # p2: teacher 3 channels at 8x8, aligned = 2x2 block means of its first 2 channels;
    #   M = 2 * 4 * 4 = 32 -> 4 * 31 / 32 = 3.875
    # p3: M = 2 * 2 * 2 = 8 -> 4 * 7 / 8 = 3.5
    # loss = weight 6 * (3.875 + 3.5) / 2 = 22.125
    t2, t3 = torch.randn(2, 3, 8, 8), torch.randn(2, 2, 2, 2)
    s2 = -pool2(t2[:, :2])
    s3 = -2.0 * t3 + 5.0
    out = run_loss(
        PKDLoss(in_features=["p2", "p3"], weight=6.0), {"p2": s2, "p3": s3}, {"p2": t2, "p3": t3}
    )
    assert set(out) == {PKD}
    assert_close(out[PKD], torch.tensor(22.125), rtol=1e-4, atol=1e-5)

    # positively correlated (a positive affine map per channel): 0
    s2 = 3.0 * pool2(t2[:, :2]) + 1.0
    s3 = torch.tensor([0.5, 7.0]).view(1, 2, 1, 1) * t3 - 4.0
    out = run_loss(
        PKDLoss(in_features=["p2", "p3"], weight=6.0), {"p2": s2, "p3": s3}, {"p2": t2, "p3": t3}
    )
    assert_close(out[PKD], torch.tensor(0.0), atol=1e-5, rtol=0)


def test_pkd_random_with_cropping_and_pooling():
    s, t = feature_maps()
    out = run_loss(PKDLoss(in_features=["p2", "p3"], weight=1.5), s, t)[PKD]
    p2 = _mse(_standardize(s["p2"]), _standardize(pool2(t["p2"][:, :2])))
    p3 = _mse(_standardize(s["p3"]), _standardize(t["p3"]))
    # PKD sums the levels (FitNets averages them)
    assert_close(out, 1.5 * (p2 + p3) / 2)
    assert PKDLoss(in_features=["p2"]).weight == 6.0
    assert_close(run_loss(PKDLoss(in_features=["p2"]), s, t)[PKD], 6.0 * p2 / 2)


def test_pkd_is_invariant_to_per_channel_affine_maps_of_the_teacher():
    s, t = feature_maps()
    loss = PKDLoss(in_features=["p2", "p3"], weight=6.0)
    reference = run_loss(loss, s, t)[PKD]
    scale2 = torch.tensor([0.3, 12.0, 5.0]).view(1, 3, 1, 1)
    shift2 = torch.tensor([10.0, -2.0, 0.0]).view(1, 3, 1, 1)
    scale3 = torch.tensor([40.0, 0.7]).view(1, 2, 1, 1)
    moved = {"p2": scale2 * t["p2"] + shift2, "p3": scale3 * t["p3"] - 3.0}
    assert_close(run_loss(loss, s, moved)[PKD], reference, rtol=1e-4, atol=1e-5)
    # FitNets is not: the check above is not vacuous
    fitnets = FitNetsLoss(in_features=["p2", "p3"])
    assert not torch.allclose(
        run_loss(fitnets, s, moved)[FITNETS], run_loss(fitnets, s, t)[FITNETS]
    )


def test_pkd_gradient_reaches_the_student_only():
    s2 = torch.randn(2, 2, 4, 4, requires_grad=True)
    s3 = torch.randn(2, 2, 2, 2, requires_grad=True)
    t2, t3 = torch.randn(2, 3, 8, 8), torch.randn(2, 2, 2, 2)
    loss = PKDLoss(in_features=["p2", "p3"], weight=6.0)
    assert len(list(loss.parameters())) == 0
    run_loss(loss, {"p2": s2, "p3": s3}, {"p2": t2, "p3": t3})[PKD].backward()
    for s in (s2, s3):
        assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t2.grad is None and t3.grad is None
    # by hand: the same gradient as through the written-out formula
    r2 = s2.detach().clone().requires_grad_()
    r3 = s3.detach().clone().requires_grad_()
    by_hand = 6.0 * (
        _mse(_standardize(r2), _standardize(pool2(t2[:, :2])))
        + _mse(_standardize(r3), _standardize(t3))
    )
    (by_hand / 2).backward()
    assert_close(s2.grad, r2.grad, rtol=1e-4, atol=1e-6)
    assert_close(s3.grad, r3.grad, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- errors


def test_negative_weights_raise():
    with pytest.raises(ValueError, match="FITNETS.WEIGHT"):
        FitNetsLoss(in_features=["p2"], weight=-1.0)
    with pytest.raises(ValueError, match="PKD.WEIGHT"):
        PKDLoss(in_features=["p2"], weight=-0.1)
    assert FitNetsLoss(in_features=["p2"], weight=0.0).weight == 0.0
    assert PKDLoss(in_features=["p2"], weight=0.0).weight == 0.0


# ----------------------------------------------------------------------------- registry


def test_registered():
    assert DISTILL_LOSS_REGISTRY.get("FitNetsLoss") is FitNetsLoss
    assert DISTILL_LOSS_REGISTRY.get("PKDLoss") is PKDLoss


def test_config_defaults():
    cfg = distill_cfg([])
    assert cfg.MODEL.DISTILL.FITNETS.WEIGHT == 2.0
    assert cfg.MODEL.DISTILL.PKD.WEIGHT == 6.0


def test_build_fitnets_from_config():
    cfg = distill_cfg(["FitNetsLoss"])
    cfg.MODEL.DISTILL.FITNETS.WEIGHT = 3.5
    losses = build_distill_losses(cfg, STUDENT_SHAPES, [TEACHER_SHAPES, TA_SHAPES])
    assert list(losses.keys()) == ["FitNetsLoss"]
    per_guide = losses["FitNetsLoss"]
    assert isinstance(per_guide, nn.ModuleList) and len(per_guide) == 2  # teacher and TA
    assert per_guide[0] is not per_guide[1]
    for loss in per_guide:
        assert isinstance(loss, FitNetsLoss)
        assert loss.in_features == ["p2", "p3"]
        assert loss.weight == 3.5
    s, t = feature_maps()
    expected = 3.5 * (_mse(s["p2"], pool2(t["p2"][:, :2])) + _mse(s["p3"], t["p3"])) / 2
    assert_close(run_loss(per_guide[0], s, t)[FITNETS], expected)


def test_build_pkd_from_config():
    cfg = distill_cfg(["PKDLoss"])
    cfg.MODEL.DISTILL.PKD.WEIGHT = 0.75
    losses = build_distill_losses(cfg, STUDENT_SHAPES, [TEACHER_SHAPES])
    assert list(losses.keys()) == ["PKDLoss"]
    (loss,) = losses["PKDLoss"]
    assert isinstance(loss, PKDLoss)
    assert loss.in_features == ["p2", "p3"]
    assert loss.weight == 0.75
    s, t = feature_maps()
    p2 = _mse(_standardize(s["p2"]), _standardize(pool2(t["p2"][:, :2])))
    p3 = _mse(_standardize(s["p3"]), _standardize(t["p3"]))
    assert_close(run_loss(loss, s, t)[PKD], 0.75 * (p2 + p3) / 2)


def test_build_both_with_default_weights():
    losses = build_distill_losses(
        distill_cfg(["FitNetsLoss", "PKDLoss"]), STUDENT_SHAPES, [TEACHER_SHAPES]
    )
    assert list(losses.keys()) == ["FitNetsLoss", "PKDLoss"]
    assert losses["FitNetsLoss"][0].weight == 2.0
    assert losses["PKDLoss"][0].weight == 6.0
    s, t = feature_maps()
    assert set(run_loss(losses["FitNetsLoss"][0], s, t)) == {FITNETS}
    assert set(run_loss(losses["PKDLoss"][0], s, t)) == {PKD}
    cfg = distill_cfg(["FitNetsLoss", "PKDLoss"])
    cfg.MODEL.DISTILL.PKD.WEIGHT = -1.0
    with pytest.raises(ValueError, match="PKD.WEIGHT"):
        build_distill_losses(cfg, STUDENT_SHAPES, [TEACHER_SHAPES])
