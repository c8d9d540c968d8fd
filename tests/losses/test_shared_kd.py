"""Shared-KD's losses (METHODS.md, "Shared-KD") against values computed by hand on small tensors."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from torch.testing import assert_close

from shared_kd.config import add_sharedkd_config
from shared_kd.losses import (
    DISTILL_LOSS_REGISTRY,
    SharedKDLoss,
    TeacherShareModule,
    build_distill_losses,
    cross_layer_pairs,
)
from shared_kd.losses.shared_kd import gate_logits
from shared_kd.modeling.alignment import align_pair
from shared_kd.modeling.outputs import DetectorOutputs

IDENT = "loss_sharedkd_ident"
CROSS = "loss_sharedkd_cross"


def _run(loss, student, teacher):
    """Call ``loss`` on feature dicts, each wrapped in a fresh DetectorOutputs (empty cache)."""
    return loss(DetectorOutputs(student), DetectorOutputs(teacher))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _loss(levels=("p2", "p3"), teacher_channels=None, **kwargs):
    """A SharedKDLoss built from keywords; TSM, identical and cross on unless told."""
    teacher_channels = teacher_channels or [2] * len(levels)
    return SharedKDLoss(in_features=list(levels), teacher_channels=teacher_channels, **kwargs)


def _mse(a, b):
    """Mean over elements of (a - b)^2, written out."""
    return ((a - b) ** 2).sum() / a.numel()


def _pool2(x):
    """2x2 block means of N x C x H x W (H, W even), written out with reshape."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))


def _up2(x):
    """Nearest upsampling by 2: every value repeated in a 2x2 block."""
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


# ----------------------------------------------------------------------------- pairs


def test_cross_layer_pairs():
    assert cross_layer_pairs(3, "adjacent") == [(0, 1), (1, 0), (1, 2), (2, 1)]
    assert cross_layer_pairs(2, "adjacent") == [(0, 1), (1, 0)]
    assert cross_layer_pairs(1, "adjacent") == []
    pairs = cross_layer_pairs(3, "all")
    assert len(pairs) == 6
    assert sorted(pairs) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    with pytest.raises(ValueError, match="bogus"):
        cross_layer_pairs(3, "bogus")
    with pytest.raises(ValueError):
        _loss(cross_pairs="bogus")


# ----------------------------------------------------------------------------- identical


def test_identical_loss_constant_maps_by_hand():
    # S_p2 = 0; T_p2 channels (1, 2, 100, 100): channels 2, 3 are cropped away
    #   -> mse = (1^2 + 2^2) / 2 = 2.5
    # S_p3 = 1; T_p3 channels (3, 1, 50, 50) -> mse = ((3-1)^2 + 0^2) / 2 = 2
    # L_ident = mean(2.5, 2) = 2.25; times alpha = 2 -> 4.5
    s = {"p2": torch.zeros(1, 2, 4, 4), "p3": torch.ones(1, 2, 2, 2)}
    t2 = torch.stack([torch.full((4, 4), v) for v in (1.0, 2.0, 100.0, 100.0)])[None]
    t3 = torch.stack([torch.full((2, 2), v) for v in (3.0, 1.0, 50.0, 50.0)])[None]
    loss = _loss(teacher_channels=[4, 4], alpha=2.0, teacher_share=False, cross=False)
    out = _run(loss, s, {"p2": t2, "p3": t3})
    assert set(out) == {IDENT}
    assert_close(out[IDENT], torch.tensor(4.5))


def test_identical_loss_channel_cropping_random():
    s2, s3 = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 2, 2)
    t2, t3 = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 2, 2)
    loss = _loss(teacher_channels=[4, 4], alpha=3.0, teacher_share=False, cross=False)
    out = _run(loss, {"p2": s2, "p3": s3}, {"p2": t2, "p3": t3})
    expected = 3.0 * (_mse(s2, t2[:, :2]) + _mse(s3, t3[:, :2])) / 2
    assert_close(out[IDENT], expected)


def test_identical_loss_teacher_spatially_larger_is_pooled():
    # T_p2 is a 8x8 checkerboard of 0 and 4 in each channel: every 2x2 block averages to 2.
    # S_p2 = 0 -> mse = 4. T_p3 = arange(32) over 2x4x4; S_p3 = its 2x2 block means
    # -> mse = 0. L_ident = mean(4, 0) = 2; alpha 1.5 -> 3.
    checker = ((torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2).float() * 4.0
    t2 = checker.expand(1, 2, 8, 8).clone()
    t3 = torch.arange(32, dtype=torch.float32).reshape(1, 2, 4, 4)
    s2 = torch.zeros(1, 2, 4, 4)
    # block means of arange(16).reshape(4, 4) and of 16 + the same
    s3 = torch.tensor([[[[2.5, 4.5], [10.5, 12.5]], [[18.5, 20.5], [26.5, 28.5]]]])
    loss = _loss(alpha=1.5, teacher_share=False, cross=False)
    out = _run(loss, {"p2": s2, "p3": s3}, {"p2": t2, "p3": t3})
    assert_close(out[IDENT], torch.tensor(3.0))

    # random maps, with channel cropping too (teacher 3 channels, 2x the student's size)
    s2, s3 = torch.randn(2, 2, 4, 4), torch.randn(2, 2, 2, 2)
    t2, t3 = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4)
    loss = _loss(teacher_channels=[3, 3], alpha=2.0, teacher_share=False, cross=False)
    out = _run(loss, {"p2": s2, "p3": s3}, {"p2": t2, "p3": t3})
    expected = 2.0 * (_mse(s2, _pool2(t2[:, :2])) + _mse(s3, _pool2(t3[:, :2]))) / 2
    assert_close(out[IDENT], expected)


# ----------------------------------------------------------------------------- TSM


def test_tsm_zero_init_fuses_half_and_half_by_hand():
    tsm = TeacherShareModule([1, 1])
    t0 = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    t1 = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    out = tsm([t0, t1])
    assert len(out) == 2
    # up(t1) = [[1,1,2,2],[1,1,2,2],[3,3,4,4],[3,3,4,4]]; T'_0 = 0.5 * t0 + 0.5 * up(t1)
    up = [[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0], [3.0, 3.0, 4.0, 4.0], [3.0, 3.0, 4.0, 4.0]]
    expected = [[0.5 * (4 * r + c) + 0.5 * up[r][c] for c in range(4)] for r in range(4)]
    assert_close(out[0], torch.tensor([[expected]]))
    # first row explicitly: 0.5 * (0, 1, 2, 3) + 0.5 * (1, 1, 2, 2)
    assert_close(out[0][0, 0, 0], torch.tensor([0.5, 1.0, 2.0, 2.5]))
    # the coarsest level passes through, unchanged, as the same object
    assert out[1] is t1


def test_tsm_three_levels_and_channel_cropping():
    tsm = TeacherShareModule([3, 2, 2], kernel_size=1)
    assert tsm.fused_channels == [2, 2]
    t0, t1, t2 = torch.randn(2, 3, 8, 8), torch.randn(2, 2, 4, 4), torch.randn(2, 2, 2, 2)
    out = tsm([t0, t1, t2])
    assert_close(out[0], 0.5 * t0[:, :2] + 0.5 * _up2(t1))
    assert_close(out[1], 0.5 * t1 + 0.5 * _up2(t2))
    assert out[2] is t2


def test_tsm_fuses_only_the_requested_channels():
    tsm = TeacherShareModule([4, 4, 4])
    for conv in tsm.fuse:
        nn.init.normal_(conv.weight)  # gates that depend on every channel
    t = [torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4), torch.randn(2, 4, 2, 2)]
    full = tsm(t)
    cropped = tsm(t, channels=[2, 3, 1])
    assert_close(cropped[0], full[0][:, :2])
    assert_close(cropped[1], full[1][:, :3])
    assert cropped[2] is t[2]  # the coarsest level passes through; align_pair crops it


def test_identical_loss_narrow_student_same_value_and_gradients_as_full_fusion():
    # The loss asks the TSM for the student's channels only; a full fusion cropped by
    # align_pair must give the same loss and the same TSM gradients.
    s = [torch.randn(2, 2, 8, 8, requires_grad=True), torch.randn(2, 3, 4, 4)]
    t = [torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)]
    loss = _loss(teacher_channels=[4, 4], cross=False)
    nn.init.normal_(loss.tsm.fuse[0].weight)
    out = _run(loss, {"p2": s[0], "p3": s[1]}, {"p2": t[0], "p3": t[1]})[IDENT]
    out.backward()
    grads = [p.grad.clone() for p in loss.tsm.parameters()] + [s[0].grad.clone()]
    loss.tsm.zero_grad()
    s[0].grad = None
    fused = loss.tsm(t)  # every channel, cropped afterwards
    ref = 2.0 * (_mse(s[0], fused[0][:, :2]) + _mse(s[1], t[1][:, :3])) / 2
    ref.backward()
    assert_close(out, ref)
    for got, want in zip(grads, [p.grad for p in loss.tsm.parameters()] + [s[0].grad]):
        assert_close(got, want)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_gate_logits_equal_the_conv_of_the_concatenation(k, mode):
    conv = nn.Conv2d(6, 2, k, padding=k // 2)
    fine = torch.randn(2, 3, 6, 8)
    coarse = torch.randn(2, 3, 3, 4)
    kwargs = {} if mode == "nearest" else {"align_corners": False}

    def resize(x):
        return F.interpolate(x, size=(6, 8), mode=mode, **kwargs)

    out = gate_logits(conv, fine, coarse, resize)
    ref = conv(torch.cat([fine, resize(coarse)], dim=1))
    assert_close(out, ref)
    g = torch.randn_like(ref)
    grads = torch.autograd.grad(out, [conv.weight, conv.bias], g)
    for got, want in zip(grads, torch.autograd.grad(ref, [conv.weight, conv.bias], g)):
        assert_close(got, want)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_tsm_is_the_papers_formula_with_trained_gates(mode):
    tsm = TeacherShareModule([4, 4, 4], upsample=mode)
    for conv in tsm.fuse:
        nn.init.normal_(conv.weight)
        nn.init.normal_(conv.bias)
    t = [torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4), torch.randn(2, 4, 2, 2)]
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    out = tsm(t)
    for level, conv in enumerate(tsm.fuse):
        fine = t[level]
        up = F.interpolate(t[level + 1], size=fine.shape[-2:], mode=mode, **kwargs)
        a = torch.sigmoid(conv(torch.cat([fine, up], dim=1)))
        assert_close(out[level], fine * a[:, :1] + up * a[:, 1:])
    assert out[-1] is t[-1]
    # fusing only the channels a loss compares gives the same values as cropping the result
    assert_close(tsm(t, channels=[2, 3])[0], out[0][:, :2])


def test_tsm_rejects_bad_options():
    with pytest.raises(ValueError):
        TeacherShareModule([2, 2], upsample="bicubic")
    with pytest.raises(ValueError):
        TeacherShareModule([2, 2], kernel_size=5)


def test_identical_loss_with_teacher_share_by_hand():
    s2, s3 = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 2, 2)
    t2, t3 = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 2, 2)
    loss = _loss(alpha=2.0, teacher_share=True, cross=False)
    assert isinstance(loss.tsm, TeacherShareModule)
    out = _run(loss, {"p2": s2, "p3": s3}, {"p2": t2, "p3": t3})
    t2_fused = 0.5 * t2 + 0.5 * _up2(t3)
    expected = 2.0 * (_mse(s2, t2_fused) + _mse(s3, t3)) / 2
    assert_close(out[IDENT], expected)

    # constant maps: T_p2 = 2, T_p3 = 4 -> T'_p2 = 3; S = 0 -> mean(9, 16) * alpha 2 = 25
    zeros = {"p2": torch.zeros(1, 2, 4, 4), "p3": torch.zeros(1, 2, 2, 2)}
    teacher = {"p2": torch.full((1, 2, 4, 4), 2.0), "p3": torch.full((1, 2, 2, 2), 4.0)}
    assert_close(_run(loss, zeros, teacher)[IDENT], torch.tensor(25.0))


def test_identical_loss_trains_tsm_not_teacher():
    s2 = torch.randn(1, 2, 4, 4, requires_grad=True)
    s3 = torch.randn(1, 2, 2, 2, requires_grad=True)
    t2, t3 = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 2, 2)
    t2_before, t3_before = t2.clone(), t3.clone()
    loss = _loss(alpha=2.0, cross=False)
    _run(loss, {"p2": s2, "p3": s3}, {"p2": t2, "p3": t3})[IDENT].backward()
    params = list(loss.tsm.parameters())
    assert len(params) == 2  # one conv: weight, bias
    for p in params:
        assert p.grad is not None
        assert p.grad.abs().sum() > 0
    assert s2.grad is not None and s2.grad.abs().sum() > 0
    assert s3.grad is not None and s3.grad.abs().sum() > 0
    assert t2.grad is None and t3.grad is None
    assert not t2.requires_grad and not t3.requires_grad
    assert torch.equal(t2, t2_before) and torch.equal(t3, t3_before)


# ----------------------------------------------------------------------------- cross


def test_cross_loss_two_levels_by_hand():
    # pairs (0, 1) and (1, 0): both compare S_p3 with the 2x2 block means of S_p2.
    s2 = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    s3 = torch.tensor([[[[2.5, 4.5], [10.5, 14.5]]]])  # pooled S_p2 is [[2.5, 4.5], [10.5, 12.5]]
    loss = _loss(teacher_channels=[1, 1], alpha=2.0, identical=False)
    out = _run(loss, {"p2": s2, "p3": s3}, {})
    assert set(out) == {CROSS}
    # mse = (0 + 0 + 0 + 2^2) / 4 = 1; mean over 2 pairs = 1; alpha 2 -> 2
    assert_close(out[CROSS], torch.tensor(2.0))

    s2, s3 = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2)
    out = _run(loss, {"p2": s2, "p3": s3}, {})
    assert_close(out[CROSS], 2.0 * (_mse(s3, _pool2(s2)) + _mse(_pool2(s2), s3)) / 2)


def test_cross_loss_three_levels_by_hand():
    s2, s3, s4 = torch.randn(1, 2, 8, 8), torch.randn(1, 2, 4, 4), torch.randn(1, 2, 2, 2)
    s = {"p2": s2, "p3": s3, "p4": s4}
    loss = _loss(levels=("p2", "p3", "p4"), alpha=0.5, identical=False)
    # (0,1): A(S_p3, like S_p2) = S_p3 vs A(S_p2, like S_p3) = pool(S_p2); (1,0) the same maps;
    # (1,2): S_p4 vs pool(S_p3); (2,1) the same maps.
    a = _mse(s3, _pool2(s2))
    b = _mse(s4, _pool2(s3))
    assert_close(_run(loss, s, {})[CROSS], 0.5 * (a + a + b + b) / 4)

    # "all" adds (0,2) and (2,0): S_p4 vs 4x4 block means of S_p2
    loss_all = _loss(levels=("p2", "p3", "p4"), alpha=0.5, identical=False, cross_pairs="all")
    c = _mse(s4, _pool2(_pool2(s2)))
    assert_close(_run(loss_all, s, {})[CROSS], 0.5 * (2 * a + 2 * b + 2 * c) / 6)


@pytest.mark.parametrize("mode", ["adjacent", "all"])
def test_cross_loss_matches_a_pair_by_pair_computation(mode):
    # Each unordered pair is aligned once and used both ways: same value and gradients as
    # aligning every ordered pair on its own.
    levels = ("p2", "p3", "p4", "p5")
    s = [
        torch.randn(2, c, 16 >> i, 16 >> i, requires_grad=True) for i, c in enumerate([4, 3, 4, 2])
    ]
    loss = _loss(levels=levels, alpha=1.5, identical=False, cross_pairs=mode)
    _run(loss, dict(zip(levels, s)), {})[CROSS].backward()
    grads = [x.grad.clone() for x in s]
    for x in s:
        x.grad = None
    ref = []
    for i, j in cross_layer_pairs(len(levels), mode):
        guided, guide = align_pair(s[j], s[i])
        ref.append(_mse(guided, guide.detach()))
    ref = 1.5 * torch.stack(ref).mean()
    ref.backward()
    assert_close(_run(loss, dict(zip(levels, s)), {})[CROSS], ref)
    for got, x in zip(grads, s):
        assert_close(got, x.grad)


def test_cross_loss_channel_cropping():
    # student levels of different widths are compared on the first min(C) channels
    s2, s3 = torch.randn(1, 3, 4, 4), torch.randn(1, 2, 2, 2)
    loss = _loss(alpha=1.0, identical=False)
    out = _run(loss, {"p2": s2, "p3": s3}, {})
    assert_close(out[CROSS], _mse(s3, _pool2(s2[:, :2])))


def test_cross_loss_stop_gradient():
    # Equal shapes: L = alpha * 0.5 * (mse(S1, sg S0) + mse(S0, sg S1)).
    # dL/dS0 = alpha * 0.5 * 2 (S0 - S1) / n = alpha * (S0 - S1) / n, only from the term where
    # S0 is guided; without stop-gradient it would be twice that.
    alpha = 3.0
    s0 = torch.randn(1, 2, 4, 4, requires_grad=True)
    s1 = torch.randn(1, 2, 4, 4, requires_grad=True)
    loss = _loss(alpha=alpha, identical=False)
    out = _run(loss, {"p2": s0, "p3": s1}, {})[CROSS]
    out.backward()
    n = s0.numel()
    assert_close(s0.grad, alpha * (s0 - s1).detach() / n)
    assert_close(s1.grad, alpha * (s1 - s0).detach() / n)
    # the no-stop-gradient value, for contrast
    s0b, s1b = s0.detach().clone().requires_grad_(), s1.detach().clone().requires_grad_()
    (alpha * 0.5 * (_mse(s1b, s0b) + _mse(s0b, s1b))).backward()
    assert_close(s0b.grad, 2 * s0.grad)


# ----------------------------------------------------------------------------- switches


def test_switches_select_the_terms():
    s = {"p2": torch.randn(1, 2, 4, 4), "p3": torch.randn(1, 2, 2, 2)}
    t = {"p2": torch.randn(1, 2, 4, 4), "p3": torch.randn(1, 2, 2, 2)}
    assert set(_run(_loss(), s, t)) == {IDENT, CROSS}
    assert set(_run(_loss(identical=False), s, t)) == {CROSS}
    assert set(_run(_loss(cross=False), s, t)) == {IDENT}
    assert _run(_loss(identical=False, cross=False), s, t) == {}
    # without L_ident the teacher is not needed at all
    assert set(_run(_loss(identical=False), s, {})) == {CROSS}


def test_tsm_exists_only_when_used():
    assert isinstance(_loss().tsm, TeacherShareModule)
    assert _loss(identical=False).tsm is None
    assert _loss(teacher_share=False).tsm is None
    assert _loss(levels=("p2",)).tsm is None
    assert len(list(_loss(teacher_share=False).parameters())) == 0
    assert len(list(_loss(identical=False).parameters())) == 0


def test_alpha_scales_both_terms_linearly():
    s = {"p2": torch.randn(1, 2, 4, 4), "p3": torch.randn(1, 2, 2, 2)}
    t = {"p2": torch.randn(1, 2, 4, 4), "p3": torch.randn(1, 2, 2, 2)}
    out2 = _run(_loss(alpha=2.0), s, t)
    out5 = _run(_loss(alpha=5.0), s, t)
    out0 = _run(_loss(alpha=0.0), s, t)
    for key in (IDENT, CROSS):
        assert out2[key] > 0
        assert_close(out5[key], 2.5 * out2[key])
        assert_close(out0[key], torch.tensor(0.0))
    with pytest.raises(ValueError, match="ALPHA"):
        _loss(alpha=-1.0)


def test_single_level_cross_is_zero_and_keeps_graph():
    s = torch.randn(1, 2, 4, 4, requires_grad=True)
    t = torch.randn(1, 2, 4, 4)
    loss = _loss(levels=("p2",), alpha=2.0)
    out = _run(loss, {"p2": s}, {"p2": t})
    assert_close(out[CROSS], torch.tensor(0.0), check_dtype=True)
    assert out[CROSS].requires_grad
    assert_close(out[IDENT], 2.0 * _mse(s, t))
    sum(out.values()).backward()
    assert_close(s.grad, 2.0 * 2 * (s - t).detach() / s.numel())


# ----------------------------------------------------------------------------- registry


def _cfg(losses=None):
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    if losses is not None:
        cfg.MODEL.DISTILL.LOSSES = losses
    return cfg


STUDENT_SHAPES = {"p2": ShapeSpec(channels=2, stride=4), "p3": ShapeSpec(channels=2, stride=8)}
TEACHER_SHAPES = {"p2": ShapeSpec(channels=4, stride=4), "p3": ShapeSpec(channels=3, stride=8)}
TA_SHAPES = {"p2": ShapeSpec(channels=2, stride=4), "p3": ShapeSpec(channels=2, stride=8)}


def test_registry_and_build():
    assert DISTILL_LOSS_REGISTRY.get("SharedKDLoss") is SharedKDLoss
    cfg = _cfg()
    cfg.MODEL.DISTILL.SHARED_KD.ALPHA = 5.0
    losses = build_distill_losses(cfg, STUDENT_SHAPES, [TEACHER_SHAPES])
    assert isinstance(losses, nn.ModuleDict)
    assert list(losses.keys()) == ["SharedKDLoss"]
    assert isinstance(losses["SharedKDLoss"], nn.ModuleList)
    assert len(losses["SharedKDLoss"]) == 1  # one guide: the teacher
    loss = losses["SharedKDLoss"][0]
    assert isinstance(loss, SharedKDLoss)
    assert loss.in_features == ["p2", "p3"]
    assert loss.alpha == 5.0
    assert loss.pairs == [(0, 1), (1, 0)]
    assert loss.tsm.fused_channels == [3]  # min(4, 3)
    s = {"p2": torch.randn(1, 2, 4, 4), "p3": torch.randn(1, 2, 2, 2)}
    t = {"p2": torch.randn(1, 4, 4, 4), "p3": torch.randn(1, 3, 2, 2)}
    assert set(_run(loss, s, t)) == {IDENT, CROSS}

    cfg.MODEL.DISTILL.SHARED_KD.TEACHER_SHARE = False
    cfg.MODEL.DISTILL.SHARED_KD.CROSS = False
    loss = build_distill_losses(cfg, STUDENT_SHAPES, [TEACHER_SHAPES])["SharedKDLoss"][0]
    assert loss.tsm is None
    expected = 5.0 * (_mse(s["p2"], t["p2"][:, :2]) + _mse(s["p3"], t["p3"][:, :2])) / 2
    out = _run(loss, s, t)
    assert set(out) == {IDENT}
    assert_close(out[IDENT], expected)


def test_build_one_instance_per_guide():
    # teacher (4 and 3 channels) and one TA (2 channels): each gets its own TSM, of its widths
    losses = build_distill_losses(_cfg(), STUDENT_SHAPES, [TEACHER_SHAPES, TA_SHAPES])
    per_guide = losses["SharedKDLoss"]
    assert isinstance(per_guide, nn.ModuleList) and len(per_guide) == 2
    assert per_guide[0] is not per_guide[1]
    assert per_guide[0].tsm.fused_channels == [3]
    assert per_guide[1].tsm.fused_channels == [2]
    # the guides' modules are passed through as `guide` (None when not given)
    guides = [nn.Identity(), nn.Identity()]
    losses = build_distill_losses(_cfg(), STUDENT_SHAPES, [TEACHER_SHAPES, TA_SHAPES], guides)
    assert len(losses["SharedKDLoss"]) == 2


def test_cross_term_computed_once_for_two_guides(monkeypatch):
    calls = []
    cross_loss = SharedKDLoss.cross_loss

    def counting_cross_loss(self, student):
        calls.append(self)
        return cross_loss(self, student)

    monkeypatch.setattr(SharedKDLoss, "cross_loss", counting_cross_loss)
    cfg = _cfg()
    cfg.MODEL.DISTILL.SHARED_KD.ALPHA = 2.0
    teacher_loss, ta_loss = build_distill_losses(cfg, STUDENT_SHAPES, [TEACHER_SHAPES, TA_SHAPES])[
        "SharedKDLoss"
    ]
    s2 = torch.randn(1, 2, 4, 4, requires_grad=True)
    s3 = torch.randn(1, 2, 2, 2, requires_grad=True)
    student = DetectorOutputs({"p2": s2, "p3": s3})
    teacher = DetectorOutputs({"p2": torch.randn(1, 4, 4, 4), "p3": torch.randn(1, 3, 2, 2)})
    ta = DetectorOutputs({"p2": torch.randn(1, 2, 4, 4), "p3": torch.randn(1, 2, 2, 2)})

    assert "sharedkd_cross" not in student.cache
    out_teacher = teacher_loss(student, teacher)
    assert "sharedkd_cross" in student.cache
    cached = student.cache["sharedkd_cross"]
    assert len(calls) == 1
    # L_cross by hand: pairs (0, 1) and (1, 0) both compare S_p3 with pooled S_p2; alpha 2
    by_hand = 2.0 * (_mse(s3, _pool2(s2)) + _mse(_pool2(s2), s3)) / 2
    assert_close(out_teacher[CROSS], by_hand)

    out_ta = ta_loss(student, ta)
    assert len(calls) == 1  # the second guide's instance reused the first one's value
    assert student.cache["sharedkd_cross"] is cached
    assert_close(out_ta[CROSS], out_teacher[CROSS], rtol=0, atol=0)
    # the identical-layer terms are per guide and differ
    assert not torch.equal(out_ta[IDENT], out_teacher[IDENT])
    # both guides' terms reach the student through the one cached graph
    (out_teacher[CROSS] + out_ta[CROSS]).backward()
    assert s2.grad is not None and s2.grad.abs().sum() > 0

    # the next step (a new DetectorOutputs) computes it again
    teacher_loss(DetectorOutputs({"p2": s2, "p3": s3}), teacher)
    assert len(calls) == 2


def test_build_rejects_unknown_and_duplicated_names():
    with pytest.raises(KeyError, match="NoSuchLoss"):
        build_distill_losses(_cfg(["NoSuchLoss"]), STUDENT_SHAPES, [TEACHER_SHAPES])
    with pytest.raises(ValueError, match="lists a loss twice"):
        build_distill_losses(
            _cfg(["SharedKDLoss", "SharedKDLoss"]), STUDENT_SHAPES, [TEACHER_SHAPES]
        )
    with pytest.raises(ValueError, match="LOSSES is empty"):
        build_distill_losses(_cfg([]), STUDENT_SHAPES, [TEACHER_SHAPES])
