"""Shared-KD's losses (METHODS.md, "Shared-KD") against values computed by hand on small tensors."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.utils.events import EventStorage
from torch.testing import assert_close

from shared_kd.config import add_sharedkd_config
from shared_kd.layers.alignment import align_pair
from shared_kd.layers.outputs import DetectorOutputs
from shared_kd.losses import (
    DISTILL_LOSS_REGISTRY,
    SharedKDLoss,
    TeacherShareModule,
    build_distill_losses,
    cross_layer_pairs,
)
from shared_kd.losses.shared_kd import gate_logits, warmup_factor

IDENT = "loss_sharedkd_ident"
CROSS = "loss_sharedkd_cross"


def _run(loss, student, teacher):
    """Call ``loss`` on feature dicts, each wrapped in a fresh DetectorOutputs (empty cache)."""
    return loss(DetectorOutputs(student), DetectorOutputs(teacher))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# The paper's settings (the keyword defaults are the study's, see test_keyword_defaults_*): the
# tests below check the paper's formulas by hand, every term on, on raw maps.
PAPER = dict(alpha=2.0, cross=True, normalize="none", tsm_init_fine=0.5, tsm_learn_gates=True)


def _loss(levels=("p2", "p3"), teacher_channels=None, **kwargs):
    """A SharedKDLoss built from keywords at the paper's settings (TSM, identical and cross on)
    unless told."""
    teacher_channels = teacher_channels or [2] * len(levels)
    kwargs = {**PAPER, **kwargs}
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


@pytest.mark.parametrize("gate", ["softmax", "sigmoid"])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_tsm_is_the_papers_formula_with_trained_gates(mode, gate):
    tsm = TeacherShareModule([4, 4, 4], upsample=mode, gate=gate)
    for conv in tsm.fuse:
        nn.init.normal_(conv.weight)
        nn.init.normal_(conv.bias)
    t = [torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4), torch.randn(2, 4, 2, 2)]
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    out, gates = tsm(t, return_gates=True)
    assert_close(tsm(t)[0], out[0])
    for level, conv in enumerate(tsm.fuse):
        fine = t[level]
        up = F.interpolate(t[level + 1], size=fine.shape[-2:], mode=mode, **kwargs)
        logits = conv(torch.cat([fine, up], dim=1))
        if gate == "softmax":  # a0 = e^l0 / (e^l0 + e^l1), a1 = 1 - a0
            a0 = 1 / (1 + torch.exp(logits[:, 1:] - logits[:, :1]))
            a = torch.cat([a0, 1 - a0], dim=1)
            assert_close(gates[level].sum(1), torch.ones_like(gates[level][:, 0]))
        else:
            a = 1 / (1 + torch.exp(-logits))
        assert_close(gates[level], a)
        assert_close(out[level], fine * a[:, :1] + up * a[:, 1:])
    assert out[-1] is t[-1]
    # fusing only the channels a loss compares gives the same values as cropping the result
    assert_close(tsm(t, channels=[2, 3])[0], out[0][:, :2])


def _train_tsm_and_student(gate, steps=200, normalize="none"):
    """
    Train the identical-layer loss with the student's features and the TSM as the only
    parameters, against fixed random teacher features, as distillation does. Returns the loss
    before and after, and per fused level RMS(T') / RMS(T) at the end.
    """
    torch.manual_seed(0)
    levels = ["p2", "p3", "p4"]
    shapes = [(2, 8, 8, 8), (2, 8, 4, 4), (2, 8, 2, 2)]
    teacher = {f: torch.randn(s) for f, s in zip(levels, shapes)}
    student = {f: (0.3 * torch.randn(s)).requires_grad_() for f, s in zip(levels, shapes)}
    loss = _loss(levels, [8, 8, 8], cross=False, tsm_gate=gate, normalize=normalize)
    # Adam: every student element and gate weight moves at a similar pace, whatever the
    # number of elements a mean spreads its gradient over.
    opt = torch.optim.Adam(list(student.values()) + list(loss.tsm.parameters()), lr=0.02)
    values = []
    for _ in range(steps):
        value = _run(loss, student, teacher)[IDENT]
        values.append(value.item())
        opt.zero_grad()
        value.backward()
        opt.step()
    with torch.no_grad():
        fused = loss.tsm([teacher[f] for f in levels])
    ratios = [
        float(t_fused.pow(2).mean().sqrt() / teacher[f].pow(2).mean().sqrt())
        for f, t_fused in zip(levels[:-1], fused[:-1])
    ]
    return values[0], values[-1], ratios


def test_trained_tsm_keeps_the_teachers_scale():
    """The collapse that sigmoid gates trained by L_ident went into cannot happen any more."""
    first, last, ratios = _train_tsm_and_student("softmax")
    assert last < 0.5 * first  # the student learns the target
    # a convex mix of two unit-variance maps keeps at least 1/sqrt(2) of their RMS
    assert min(ratios) >= 0.5, ratios


def test_sigmoid_gates_collapse_when_trained():
    """The first reading of the paper, kept reachable: its target shrinks towards zero."""
    first, last, ratios = _train_tsm_and_student("sigmoid")
    assert last < 0.5 * first
    assert max(ratios) < 0.5, ratios


def test_tsm_rejects_bad_options():
    with pytest.raises(ValueError):
        TeacherShareModule([2, 2], upsample="bicubic")
    with pytest.raises(ValueError):
        TeacherShareModule([2, 2], kernel_size=5)
    with pytest.raises(ValueError):
        TeacherShareModule([2, 2], gate="tanh")


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


def _cfg(losses=None, paper=True):
    """A SharedKD config; ``paper``: Shared-KD as the paper sets it (the values below assume it)."""
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    if losses is not None:
        cfg.MODEL.DISTILL.LOSSES = losses
    if paper:
        c = cfg.MODEL.DISTILL.SHARED_KD
        c.NORMALIZE, c.ALPHA, c.TSM_LEARN_GATES, c.CROSS = "none", 2.0, True, True
    return cfg


def test_config_defaults_are_the_studys_choice():
    """PKD-style distance at PKD's weight, a fixed TSM mix 0.75 / 0.25, no cross-layer term."""
    cfg = _cfg(paper=False)
    loss = build_distill_losses(cfg, STUDENT_SHAPES, [TEACHER_SHAPES])["SharedKDLoss"][0]
    assert (loss.normalize, loss.alpha, loss.cross) == ("channel", 15.0, False)
    assert not any(p.requires_grad for p in loss.tsm.parameters())
    s = {"p2": torch.randn(2, 2, 4, 4), "p3": torch.randn(2, 2, 2, 2)}
    t = {"p2": torch.randn(2, 4, 4, 4), "p3": torch.randn(2, 3, 2, 2)}
    out = _run(loss, s, t)
    assert set(out) == {IDENT}
    # 0.75 of p2 and 0.25 of p3 (upsampled), standardised per channel like the student
    t_fused = 0.75 * t["p2"][:, :2] + 0.25 * _up2(t["p3"][:, :2])

    def std(x):
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        return (x - mean) / (x.std(dim=(0, 2, 3), keepdim=True) + 1e-6)

    expected = 15.0 * (_mse(std(s["p2"]), std(t_fused)) + _mse(std(s["p3"]), std(t["p3"][:, :2])))
    assert_close(out[IDENT], expected / 2)


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


# ----------------------------------------------------------------------------- options
# CROSS_DIRECTION, CROSS_WEIGHT, ALPHA_WARMUP_ITERS, NORMALIZE, FOREGROUND_WEIGHT and the TSM
# health scalars.


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


def test_cross_layer_pairs_directions():
    # adjacent: (0,1) (1,0) (1,2) (2,1); the guide is the first index
    assert cross_layer_pairs(3, "adjacent", "both") == [(0, 1), (1, 0), (1, 2), (2, 1)]
    assert cross_layer_pairs(3, "adjacent", "fine_to_coarse") == [(0, 1), (1, 2)]
    assert cross_layer_pairs(3, "adjacent", "coarse_to_fine") == [(1, 0), (2, 1)]
    assert sorted(cross_layer_pairs(3, "all", "fine_to_coarse")) == [(0, 1), (0, 2), (1, 2)]
    assert sorted(cross_layer_pairs(3, "all", "coarse_to_fine")) == [(1, 0), (2, 0), (2, 1)]
    assert cross_layer_pairs(1, "adjacent", "fine_to_coarse") == []
    assert _loss(levels=("p2", "p3", "p4"), cross_direction="coarse_to_fine").pairs == [
        (1, 0),
        (2, 1),
    ]
    with pytest.raises(ValueError, match="CROSS_DIRECTION.*'upward'"):
        cross_layer_pairs(3, "adjacent", "upward")
    with pytest.raises(ValueError, match="CROSS_DIRECTION"):
        _loss(cross_direction="upward")


@pytest.mark.parametrize("direction", ["fine_to_coarse", "coarse_to_fine"])
def test_cross_direction_decides_which_level_learns(direction):
    # One pair either way, both comparing S_p3 with pool(S_p2): the same value, but only the
    # guided level gets a gradient: dL/dS_guided = alpha * 2 (guided - guide) / n.
    s2 = torch.randn(1, 2, 4, 4, requires_grad=True)
    s3 = torch.randn(1, 2, 2, 2, requires_grad=True)
    loss = _loss(alpha=2.0, identical=False, cross_direction=direction)
    out = _run(loss, {"p2": s2, "p3": s3}, {})[CROSS]
    assert_close(out, 2.0 * _mse(s3, _pool2(s2)))
    out.backward()
    if direction == "fine_to_coarse":  # p2 guides p3
        assert s2.grad is None
        assert_close(s3.grad, 2.0 * 2 * (s3 - _pool2(s2)).detach() / s3.numel())
    else:  # p3 guides p2: d/dS_p2 of mse(pool(S_p2), S_p3); every S_p2 value is 1/4 of a mean
        assert s3.grad is None
        expected = _up2(2.0 * 2 * (_pool2(s2) - s3).detach() / s3.numel()) / 4
        assert_close(s2.grad, expected)


def test_cross_weight_scales_only_the_cross_term():
    s = {"p2": torch.randn(1, 2, 4, 4), "p3": torch.randn(1, 2, 2, 2)}
    t = {"p2": torch.randn(1, 2, 4, 4), "p3": torch.randn(1, 2, 2, 2)}
    base = _run(_loss(alpha=2.0), s, t)
    quarter = _run(_loss(alpha=2.0, cross_weight=0.25), s, t)
    zero = _run(_loss(alpha=2.0, cross_weight=0.0), s, t)
    assert_close(quarter[IDENT], base[IDENT])
    assert_close(zero[IDENT], base[IDENT])
    # by hand: alpha 2 * cross weight 0.25 * mean of the two pairs' equal terms
    assert_close(quarter[CROSS], 2.0 * 0.25 * _mse(s["p3"], _pool2(s["p2"])))
    assert_close(quarter[CROSS], 0.25 * base[CROSS])
    assert_close(zero[CROSS], torch.tensor(0.0))


def test_warmup_factor():
    assert warmup_factor(None, 10) == 1.0  # outside of training
    assert warmup_factor(5, 0) == 1.0  # no warm-up
    assert warmup_factor(0, 10) == pytest.approx(0.1)
    assert warmup_factor(4, 10) == pytest.approx(0.5)
    assert warmup_factor(9, 10) == 1.0
    assert warmup_factor(1000, 10) == 1.0


@pytest.mark.parametrize("start_iter, factor", [(0, 0.1), (4, 0.5), (9, 1.0), (25, 1.0)])
def test_alpha_warmup_scales_both_terms_inside_training(start_iter, factor):
    # min(1, (k + 1) / W) with W = 10
    s = {"p2": torch.randn(1, 2, 4, 4), "p3": torch.randn(1, 2, 2, 2)}
    t = {"p2": torch.randn(1, 2, 4, 4), "p3": torch.randn(1, 2, 2, 2)}
    plain = _loss(alpha=2.0, max_iter=1000)
    warm = _loss(alpha=2.0, alpha_warmup_iters=10, max_iter=1000)
    with EventStorage(start_iter=start_iter):
        reference = _run(plain, s, t)  # no warm-up: alpha in full at every iteration
        out = _run(warm, s, t)
    outside = _run(warm, s, t)
    for key in (IDENT, CROSS):
        assert reference[key] > 0
        assert_close(out[key], factor * reference[key])
        assert_close(outside[key], reference[key])  # no storage: no scaling


def test_normalize_channel_identical_term_by_hand():
    # TSM off. p2: teacher 3 channels at 2x the student's size -> pooled and cropped to 2
    # channels, then both maps standardised per channel; p3: same shapes.
    s2, s3 = torch.randn(2, 2, 4, 4), torch.randn(2, 2, 2, 2)
    t2, t3 = torch.randn(2, 3, 8, 8), torch.randn(2, 2, 2, 2)
    loss = _loss(teacher_channels=[3, 2], alpha=2.0, teacher_share=False, normalize="channel")
    out = _run(loss, {"p2": s2, "p3": s3}, {"p2": t2, "p3": t3})
    ident = (
        _mse(_standardize(s2), _standardize(_pool2(t2[:, :2])))
        + _mse(_standardize(s3), _standardize(t3))
    ) / 2
    assert_close(out[IDENT], 2.0 * ident)
    # the cross term standardises too: both pairs compare S_p3 with pool(S_p2)
    assert_close(out[CROSS], 2.0 * _mse(_standardize(s3), _standardize(_pool2(s2))))

    # invariant to a per-channel affine transform of the teacher (positive scale, any shift)
    scale = torch.tensor([0.2, 5.0, 40.0]).view(1, 3, 1, 1)
    shift = torch.tensor([3.0, -7.0, 0.5]).view(1, 3, 1, 1)
    moved = _run(loss, {"p2": s2, "p3": s3}, {"p2": scale * t2 + shift, "p3": 9.0 * t3 - 1.0})
    assert_close(moved[IDENT], out[IDENT], rtol=1e-4, atol=1e-5)
    # the raw distance is not: the check above is not vacuous
    raw = _loss(teacher_channels=[3, 2], alpha=2.0, teacher_share=False)
    a = _run(raw, {"p2": s2, "p3": s3}, {"p2": t2, "p3": t3})[IDENT]
    b = _run(raw, {"p2": s2, "p3": s3}, {"p2": scale * t2 + shift, "p3": 9.0 * t3 - 1.0})[IDENT]
    assert not torch.allclose(a, b, rtol=1e-2)


def test_normalize_channel_with_tsm_is_invariant_to_scaling_the_teacher():
    # zero-init TSM: T'_p2 = (T_p2 + up(T_p3)) / 2 is linear in the teacher
    s = {"p2": torch.randn(2, 2, 4, 4), "p3": torch.randn(2, 2, 2, 2)}
    t = {"p2": torch.randn(2, 2, 4, 4), "p3": torch.randn(2, 2, 2, 2)}
    loss = _loss(alpha=1.0, cross=False, normalize="channel")
    out = _run(loss, s, t)[IDENT]
    expected = (
        _mse(_standardize(s["p2"]), _standardize(0.5 * t["p2"] + 0.5 * _up2(t["p3"])))
        + _mse(_standardize(s["p3"]), _standardize(t["p3"]))
    ) / 2
    assert_close(out, expected)
    scaled = _run(loss, s, {f: 6.0 * x for f, x in t.items()})[IDENT]
    assert_close(scaled, out, rtol=1e-4, atol=1e-5)


def test_foreground_weight_by_hand():
    # One level, stride 4, 4x4 map: position centres at 2, 6, 10, 14.
    # Image 0, box (0, 0, 8, 8): rows 0-1, columns 0-1 weigh 3; image 1 has no box.
    s = torch.randn(2, 3, 4, 4)
    t = torch.randn(2, 3, 4, 4)
    boxes = [torch.tensor([[0.0, 0.0, 8.0, 8.0]]), torch.zeros(0, 4)]
    loss = _loss(("p2",), [3], strides=[4], alpha=2.0, cross=False, foreground_weight=3.0)
    assert loss.tsm is None
    out = loss(DetectorOutputs({"p2": s}, gt_boxes=boxes), DetectorOutputs({"p2": t}))
    w = torch.ones(2, 1, 4, 4)
    w[0, 0, :2, :2] = 3.0
    err = ((s - t) ** 2).sum(1, keepdim=True) / 3  # per position, mean over channels
    assert_close(w.sum(), torch.tensor(4 * 3.0 + 28 * 1.0))  # 32 positions, 4 of them boxed
    assert_close(out[IDENT], 2.0 * (err * w).sum() / w.sum())
    # the unweighted loss differs
    plain = _loss(("p2",), [3], alpha=2.0, cross=False)
    unweighted = plain(DetectorOutputs({"p2": s}), DetectorOutputs({"p2": t}))[IDENT]
    assert_close(unweighted, 2.0 * err.mean())
    assert not torch.allclose(unweighted, out[IDENT])


def test_foreground_weight_on_a_pooled_student_uses_the_pooled_stride():
    # Student 8x8 at stride 4, teacher 4x4: the student is pooled to 4x4, whose positions are
    # 8 input pixels apart (centres 4, 12, 20, 28). Box (0, 0, 13, 13): rows 0-1, columns 0-1;
    # box (17, 25, 40, 40): rows 3, columns 2-3 (at stride 4 the mask would be another).
    s = torch.randn(1, 2, 8, 8)
    t = torch.randn(1, 2, 4, 4)
    boxes = [torch.tensor([[0.0, 0.0, 13.0, 13.0], [17.0, 25.0, 40.0, 40.0]])]
    loss = _loss(levels=("p2",), strides=[4], alpha=1.0, cross=False, foreground_weight=2.0)
    out = loss(DetectorOutputs({"p2": s}, gt_boxes=boxes), DetectorOutputs({"p2": t}))
    w = torch.ones(1, 1, 4, 4)
    w[0, 0, :2, :2] = 2.0
    w[0, 0, 3, 2:] = 2.0
    err = ((_pool2(s) - t) ** 2).sum(1, keepdim=True) / 2
    assert_close(out[IDENT], (err * w).sum() / w.sum())


def test_foreground_weight_needs_boxes_and_strides():
    s, t = {"p2": torch.randn(1, 2, 4, 4)}, {"p2": torch.randn(1, 2, 4, 4)}
    loss = _loss(levels=("p2",), strides=[4], cross=False, foreground_weight=2.0)
    with pytest.raises(ValueError, match="ground-truth boxes"):
        _run(loss, s, t)  # DetectorOutputs without gt_boxes
    with pytest.raises(ValueError, match="stride"):
        _loss(levels=("p2",), foreground_weight=2.0)
    with pytest.raises(ValueError, match="stride"):
        _loss(levels=("p2", "p3"), strides=[4], foreground_weight=2.0)
    # weight 1 needs neither
    assert set(_run(_loss(levels=("p2",), cross=False), s, t)) == {IDENT}


def test_new_options_reject_bad_values():
    with pytest.raises(ValueError, match="CROSS_WEIGHT"):
        _loss(cross_weight=-0.5)
    with pytest.raises(ValueError, match="FOREGROUND_WEIGHT"):
        _loss(strides=[4, 8], foreground_weight=0.5)
    with pytest.raises(ValueError, match="NORMALIZE.*'l1'"):
        _loss(normalize="l1")
    with pytest.raises(ValueError):
        _loss(tsm_gate="tanh")


def _distill_scalars(storage):
    return {k: v for k, v in storage.latest().items() if k.startswith("distill/")}


def test_tsm_health_scalars_on_a_logging_iteration():
    # zero-init TSM: gates 0.5 / 0.5, T'_p2 = 0.5 T_p2 + 0.5 up(T_p3)
    s = {"p2": torch.randn(2, 2, 4, 4), "p3": torch.randn(2, 2, 2, 2)}
    t = {"p2": torch.randn(2, 2, 4, 4), "p3": torch.randn(2, 2, 2, 2)}
    loss = _loss(max_iter=1000)
    with EventStorage(start_iter=19) as storage:
        _run(loss, s, t)
    scalars = _distill_scalars(storage)
    names = ["distill/tsm_gate0_p2", "distill/tsm_gate1_p2", "distill/tsm_rms_ratio_p2"]
    assert set(scalars) == set(names)  # nothing for the coarsest level, which is not fused
    fused = 0.5 * t["p2"] + 0.5 * _up2(t["p3"])
    rms_fused = ((fused**2).sum() / fused.numel()).sqrt()
    ratio = rms_fused / ((t["p2"] ** 2).sum() / t["p2"].numel()).sqrt()
    assert scalars["distill/tsm_gate0_p2"] == (pytest.approx(0.5), 19)
    assert scalars["distill/tsm_gate1_p2"] == (pytest.approx(0.5), 19)
    assert scalars["distill/tsm_rms_ratio_p2"][0] == pytest.approx(float(ratio), rel=1e-5)
    assert 0 < ratio < 1  # two independent maps mixed half and half: RMS about 1/sqrt(2)
    for name in names:
        assert storage.smoothing_hints()[name] is False

    # constant maps: T_p2 = 2, T_p3 = 4 -> T'_p2 = 3, ratio 3 / 2
    with EventStorage(start_iter=39) as storage:
        _run(loss, s, {"p2": torch.full((2, 2, 4, 4), 2.0), "p3": torch.full((2, 2, 2, 2), 4.0)})
    assert storage.latest()["distill/tsm_rms_ratio_p2"] == (pytest.approx(1.5), 39)


def test_tsm_health_ratio_uses_the_compared_channels():
    # teacher 4 channels, student 2: the ratio compares T'_p2 and T_p2 on the first 2 channels
    s = {"p2": torch.randn(1, 2, 4, 4), "p3": torch.randn(1, 2, 2, 2)}
    t = {"p2": torch.randn(1, 4, 4, 4), "p3": torch.randn(1, 4, 2, 2)}
    t["p2"][:, 2:] *= 100.0  # channels the loss crops away: would dominate a full-width ratio
    loss = _loss(teacher_channels=[4, 4], max_iter=1000)
    with EventStorage(start_iter=19) as storage:
        _run(loss, s, t)
    fused = 0.5 * t["p2"][:, :2] + 0.5 * _up2(t["p3"][:, :2])
    ratio = fused.pow(2).mean().sqrt() / t["p2"][:, :2].pow(2).mean().sqrt()
    assert storage.latest()["distill/tsm_rms_ratio_p2"][0] == pytest.approx(float(ratio), rel=1e-5)


def test_tsm_health_scalars_three_levels_and_last_iteration():
    levels = ("p2", "p3", "p4")
    s = {f: torch.randn(1, 2, 8 >> i, 8 >> i) for i, f in enumerate(levels)}
    t = {f: torch.randn(1, 2, 8 >> i, 8 >> i) for i, f in enumerate(levels)}
    loss = _loss(levels=levels, max_iter=50)
    with EventStorage(start_iter=49) as storage:  # the last iteration, off the period
        _run(loss, s, t)
    assert set(_distill_scalars(storage)) == {
        f"distill/tsm_{kind}_{f}" for kind in ("gate0", "gate1", "rms_ratio") for f in ("p2", "p3")
    }


def test_tsm_health_scalars_only_on_logging_iterations():
    s = {"p2": torch.randn(1, 2, 4, 4), "p3": torch.randn(1, 2, 2, 2)}
    t = {"p2": torch.randn(1, 2, 4, 4), "p3": torch.randn(1, 2, 2, 2)}
    loss = _loss(max_iter=1000)
    with EventStorage(start_iter=3) as storage:
        out = _run(loss, s, t)
    assert set(out) == {IDENT, CROSS}  # the loss ran
    assert _distill_scalars(storage) == {}
    assert not any(k.startswith("distill/") for k in storage.histories())
    # outside of training (no storage) nothing is logged and nothing fails
    assert set(_run(loss, s, t)) == {IDENT, CROSS}
    # without a TSM there is nothing to log, even on a logging iteration
    with EventStorage(start_iter=19) as storage:
        _run(_loss(teacher_share=False, max_iter=1000), s, t)
    assert _distill_scalars(storage) == {}


def test_tsm_health_follows_the_trainers_log_period():
    # a trainer writing every 5 iterations: health on iterations 4, 9, ..., not on 19 alone
    s = {"p2": torch.randn(1, 2, 4, 4), "p3": torch.randn(1, 2, 2, 2)}
    t = {"p2": torch.randn(1, 2, 4, 4), "p3": torch.randn(1, 2, 2, 2)}
    loss = _loss(max_iter=1000)
    loss.log_period = 5
    for it, logged in ((4, True), (9, True), (7, False)):
        with EventStorage(start_iter=it) as storage:
            _run(loss, s, t)
        assert bool(_distill_scalars(storage)) is logged, it


def test_new_config_keys_reach_the_loss():
    cfg = _cfg()
    c = cfg.MODEL.DISTILL.SHARED_KD
    c.ALPHA_WARMUP_ITERS = 100
    c.CROSS_WEIGHT = 0.5
    c.CROSS_DIRECTION = "fine_to_coarse"
    c.NORMALIZE = "channel"
    c.FOREGROUND_WEIGHT = 2.5
    c.TSM_GATE = "sigmoid"
    cfg.SOLVER.MAX_ITER = 1234
    loss = build_distill_losses(cfg, STUDENT_SHAPES, [TEACHER_SHAPES])["SharedKDLoss"][0]
    assert loss.alpha_warmup_iters == 100
    assert loss.cross_weight == 0.5
    assert loss.pairs == [(0, 1)]
    assert loss.normalize == "channel"
    assert loss.foreground_weight == 2.5
    assert loss.strides == [4, 8]  # from the student's ShapeSpecs
    assert loss.tsm.gate == "sigmoid"
    assert loss.max_iter == 1234
    # the defaults are the paper's
    loss = build_distill_losses(_cfg(), STUDENT_SHAPES, [TEACHER_SHAPES])["SharedKDLoss"][0]
    assert (loss.alpha_warmup_iters, loss.cross_weight, loss.normalize) == (0, 1.0, "none")
    assert loss.foreground_weight == 1.0 and loss.tsm.gate == "softmax"
    assert loss.pairs == [(0, 1), (1, 0)]
