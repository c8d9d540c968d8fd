"""M-KD's per-guide losses (METHODS.md, "M-KD") against values computed by hand on small tensors."""

import math

import pytest
import torch
import torch.nn as nn
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.utils.events import EventStorage
from torch.testing import assert_close

from shared_kd.config import add_sharedkd_config
from shared_kd.layers.outputs import DetectorOutputs
from shared_kd.losses import (
    DISTILL_LOSS_REGISTRY,
    AttentionTransferLoss,
    FSPLoss,
    InheritExploreLoss,
    SoftTargetKDLoss,
    build_distill_losses,
)
from shared_kd.losses.mkd import attention_map, fsp_matrix, soft_target_kd, temperature_at


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _out(features=None, logits=None, activation="softmax", normalizer=None):
    return DetectorOutputs(
        features or {},
        class_logits=logits,
        logit_activation=activation,
        logit_normalizer=normalizer,
        cache={},
    )


def _softmax(row, t):
    """softmax(row / t) of a list of floats, with math.exp."""
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


def _softmax_kd_by_hand(student_rows, teacher_rows, t):
    """T^2 * mean over rows of sum_k p_T log(p_T / p_S), with math.exp / math.log."""
    kls = []
    for s_row, t_row in zip(student_rows, teacher_rows):
        p_s, p_t = _softmax(s_row, t), _softmax(t_row, t)
        kls.append(sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s)))
    return t * t * sum(kls) / len(kls)


def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def _sigmoid_kd_by_hand(student_rows, teacher_rows, t):
    """T^2 * mean over rows of the per-class binary KLs, summed over classes."""
    kls = []
    for s_row, t_row in zip(student_rows, teacher_rows):
        kl = 0.0
        for zs, zt in zip(s_row, t_row):
            ps, pt = _sigmoid(zs / t), _sigmoid(zt / t)
            kl += pt * math.log(pt / ps) + (1 - pt) * math.log((1 - pt) / (1 - ps))
        kls.append(kl)
    return t * t * sum(kls) / len(kls)


# ----------------------------------------------------------------------------- temperature


def test_temperature_linear_schedule():
    # T_START 5 -> T_END 1 over 101 iterations (0..100): a step of 4 / 100 = 0.04 per iteration
    assert temperature_at(0, 101, 5.0, 1.0, "linear") == pytest.approx(5.0)
    assert temperature_at(25, 101, 5.0, 1.0, "linear") == pytest.approx(5.0 - 25 * 0.04)  # 4
    assert temperature_at(50, 101, 5.0, 1.0, "linear") == pytest.approx(3.0)
    assert temperature_at(100, 101, 5.0, 1.0, "linear") == pytest.approx(1.0)
    # beyond the last iteration (and before the first) it stays at the end points
    assert temperature_at(101, 101, 5.0, 1.0, "linear") == pytest.approx(1.0)
    assert temperature_at(1000, 101, 5.0, 1.0, "linear") == pytest.approx(1.0)
    assert temperature_at(-3, 101, 5.0, 1.0, "linear") == pytest.approx(5.0)


def test_temperature_cosine_schedule():
    # T = 1 + 4 * 0.5 * (1 + cos(pi * frac)), frac = it / 100
    assert temperature_at(0, 101, 5.0, 1.0, "cosine") == pytest.approx(5.0)
    assert temperature_at(50, 101, 5.0, 1.0, "cosine") == pytest.approx(3.0)
    assert temperature_at(100, 101, 5.0, 1.0, "cosine") == pytest.approx(1.0)
    assert temperature_at(200, 101, 5.0, 1.0, "cosine") == pytest.approx(1.0)
    # quarter point: 1 + 2 * (1 + cos(pi / 4)) = 3 + sqrt(2)
    assert temperature_at(25, 101, 5.0, 1.0, "cosine") == pytest.approx(3.0 + math.sqrt(2.0))
    # three quarters: 1 + 2 * (1 - sqrt(2) / 2) = 3 - sqrt(2)
    assert temperature_at(75, 101, 5.0, 1.0, "cosine") == pytest.approx(3.0 - math.sqrt(2.0))


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_temperature_constant_when_start_equals_end(schedule):
    for it in (0, 1, 50, 100, 500):
        assert temperature_at(it, 101, 2.0, 2.0, schedule) == pytest.approx(2.0)


def test_temperature_single_iteration_run():
    # max_iter 1: the only iteration is the first
    assert temperature_at(0, 1, 5.0, 1.0, "linear") == pytest.approx(5.0)


def test_temperature_bad_schedule_raises():
    with pytest.raises(ValueError, match="step"):
        temperature_at(0, 101, 5.0, 1.0, "step")


# ----------------------------------------------------------------------------- soft targets


def test_soft_target_kd_softmax_closed_form():
    # T = 2. Student logits 0 -> p_S = (1/3, 1/3, 1/3). Teacher (2 ln 2, 0, 0) / 2 = (ln 2, 0, 0)
    # -> exp = (2, 1, 1) -> p_T = (1/2, 1/4, 1/4).
    # KL = 1/2 ln(3/2) + 2 * 1/4 ln(3/4) = 1/2 ln(9/8); times T^2 = 4 -> 2 ln(9/8).
    s = torch.zeros(1, 3)
    t = torch.tensor([[2 * math.log(2.0), 0.0, 0.0]])
    assert_close(soft_target_kd(s, t, 2.0, "softmax"), torch.tensor(2 * math.log(9 / 8)))


def test_soft_target_kd_softmax_two_rows_by_hand():
    s_rows = [[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]
    t_rows = [[3.0, 1.0, 0.0], [0.2, 0.2, 0.2]]
    expected = _softmax_kd_by_hand(s_rows, t_rows, 2.0)
    out = soft_target_kd(torch.tensor(s_rows), torch.tensor(t_rows), 2.0, "softmax")
    assert_close(out, torch.tensor(expected, dtype=torch.float32))
    # one row alone: no mean over rows to take
    out = soft_target_kd(torch.tensor(s_rows[:1]), torch.tensor(t_rows[:1]), 2.0, "softmax")
    assert_close(out, torch.tensor(_softmax_kd_by_hand(s_rows[:1], t_rows[:1], 2.0)))


def test_soft_target_kd_zero_when_logits_equal():
    z = torch.randn(4, 5)
    for activation in ("softmax", "sigmoid"):
        assert_close(soft_target_kd(z, z.clone(), 3.0, activation), torch.tensor(0.0))
    # softmax is shift invariant per row: a constant offset is still 0
    assert_close(soft_target_kd(z, z + 7.0, 3.0, "softmax"), torch.tensor(0.0), atol=1e-5, rtol=0)


def test_soft_target_kd_sigmoid_closed_form_and_by_hand():
    # T = 2. Student logit 0 -> p_S = 1/2; teacher 2 ln 3 -> sigmoid(ln 3) = 3/4:
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2). Second class: equal logits -> 0. Times T^2 = 4.
    s = torch.tensor([[0.0, 1.0]])
    t = torch.tensor([[2 * math.log(3.0), 1.0]])
    expected = 4 * (0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    assert_close(soft_target_kd(s, t, 2.0, "sigmoid"), torch.tensor(expected))

    s_rows = [[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]]
    t_rows = [[-0.5, 1.0, 1.0], [2.0, 0.3, -2.0]]
    expected = _sigmoid_kd_by_hand(s_rows, t_rows, 2.0)
    out = soft_target_kd(torch.tensor(s_rows), torch.tensor(t_rows), 2.0, "sigmoid")
    assert_close(out, torch.tensor(expected, dtype=torch.float32))


def test_soft_target_kd_errors_and_empty():
    with pytest.raises(ValueError, match="shapes differ"):
        soft_target_kd(torch.zeros(2, 3), torch.zeros(2, 4), 2.0, "softmax")
    with pytest.raises(ValueError):
        soft_target_kd(torch.zeros(2, 3), torch.zeros(3, 3), 2.0, "softmax")
    with pytest.raises(ValueError):
        soft_target_kd(torch.zeros(2, 3), torch.zeros(2, 3), 2.0, "tanh")
    for activation in ("softmax", "sigmoid"):
        s = torch.zeros(0, 3, requires_grad=True)
        out = soft_target_kd(s, torch.zeros(0, 3), 2.0, activation)
        assert out.shape == ()
        assert out.item() == 0.0
        assert out.requires_grad  # still attached to the student's graph
        out.backward()
        assert s.grad is not None and s.grad.shape == (0, 3)


# ----------------------------------------------------------------------------- SoftTargetKDLoss


S_ROWS = [[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]
T_ROWS = [[3.0, 1.0, 0.0], [0.2, 0.2, 0.2]]


@pytest.mark.parametrize("start_iter, temperature", [(0, 5.0), (50, 3.0), (100, 1.0), (150, 1.0)])
def test_soft_target_kd_loss_temperature_and_value(start_iter, temperature):
    loss = SoftTargetKDLoss(weight=0.5, t_start=5.0, t_end=1.0, schedule="linear", max_iter=101)
    with EventStorage(start_iter) as storage:
        out = loss(_out(logits=torch.tensor(S_ROWS)), _out(logits=torch.tensor(T_ROWS)))
        logged, logged_iter = storage.latest()["distill/temperature"]
    assert logged == pytest.approx(temperature)
    assert logged_iter == start_iter
    assert set(out) == {"loss_kd"}
    expected = 0.5 * _softmax_kd_by_hand(S_ROWS, T_ROWS, temperature)
    assert_close(out["loss_kd"], torch.tensor(expected, dtype=torch.float32))


def test_soft_target_kd_loss_cosine_and_sigmoid_over_locations():
    loss = SoftTargetKDLoss(
        weight=2.0,
        t_start=5.0,
        t_end=1.0,
        schedule="cosine",
        dense_normalizer="locations",
        max_iter=101,
    )
    with EventStorage(25) as storage:
        # "locations" ignores the student's foreground count: the mean over the 2 rows
        student = _out(logits=torch.tensor(S_ROWS), activation="sigmoid", normalizer=7.0)
        out = loss(student, _out(logits=torch.tensor(T_ROWS), activation="sigmoid"))
        t = storage.latest()["distill/temperature"][0]
    assert t == pytest.approx(3.0 + math.sqrt(2.0))
    expected = 2.0 * _sigmoid_kd_by_hand(S_ROWS, T_ROWS, 3.0 + math.sqrt(2.0))
    assert_close(out["loss_kd"], torch.tensor(expected, dtype=torch.float32))


def test_soft_target_kd_dense_foreground_normaliser_by_hand():
    # the default: the sum over the 2 rows divided by the student's foreground count (0.5 here),
    # i.e. the mean times 2 / 0.5
    loss = SoftTargetKDLoss(weight=2.0, t_start=3.0, t_end=3.0, max_iter=10)
    assert loss.dense_normalizer == "foreground"
    with EventStorage(0):
        student = _out(logits=torch.tensor(S_ROWS), activation="sigmoid", normalizer=0.5)
        out = loss(student, _out(logits=torch.tensor(T_ROWS), activation="sigmoid"))
    expected = 2.0 * _sigmoid_kd_by_hand(S_ROWS, T_ROWS, 3.0) * 2 / 0.5
    assert_close(out["loss_kd"], torch.tensor(expected, dtype=torch.float32))
    # the function alone: sum / normalizer
    direct = soft_target_kd(torch.tensor(S_ROWS), torch.tensor(T_ROWS), 3.0, "sigmoid", 0.5)
    assert_close(direct, torch.tensor(expected / 2.0, dtype=torch.float32))


def test_soft_target_kd_rcnn_ignores_the_dense_normaliser():
    # softmax rows (R-CNN proposals) are averaged whatever DENSE_NORMALIZER says
    loss = SoftTargetKDLoss(weight=1.0, t_start=2.0, t_end=2.0, max_iter=10)
    with EventStorage(0):
        out = loss(_out(logits=torch.tensor(S_ROWS)), _out(logits=torch.tensor(T_ROWS)))
    assert_close(out["loss_kd"], torch.tensor(_softmax_kd_by_hand(S_ROWS, T_ROWS, 2.0)))


def test_soft_target_kd_dense_foreground_needs_the_students_count():
    loss = SoftTargetKDLoss(max_iter=10)
    student = _out(logits=torch.tensor(S_ROWS), activation="sigmoid")  # no loss_normalizer
    with EventStorage(0), pytest.raises(RuntimeError, match="DENSE_NORMALIZER 'locations'"):
        loss(student, _out(logits=torch.tensor(T_ROWS), activation="sigmoid"))
    with pytest.raises(ValueError, match="DENSE_NORMALIZER must be"):
        SoftTargetKDLoss(dense_normalizer="anchors")


def test_soft_target_kd_loss_logs_temperature_once_per_step():
    # two guides (teacher and a TA) in one step share the student's outputs
    losses = [SoftTargetKDLoss(t_start=4.0, t_end=4.0, max_iter=10) for _ in range(2)]
    student = _out(logits=torch.tensor(S_ROWS))
    with EventStorage(3) as storage:
        for loss in losses:
            loss(student, _out(logits=torch.tensor(T_ROWS)))
        assert len(storage.history("distill/temperature").values()) == 1
        assert storage.latest()["distill/temperature"][0] == pytest.approx(4.0)


def test_soft_target_kd_loss_gradient_reaches_student_only():
    # d/dz_S [T^2 KL(p_T || softmax(z_S / T))] = T (p_S - p_T); mean over M rows; times weight
    s = torch.tensor(S_ROWS, requires_grad=True)
    t = torch.tensor(T_ROWS)
    loss = SoftTargetKDLoss(weight=3.0, t_start=2.0, t_end=2.0, max_iter=10)
    with EventStorage(0):
        loss(_out(logits=s), _out(logits=t))["loss_kd"].backward()
    expected = [
        [3.0 * 2.0 * (ps - pt) / 2 for ps, pt in zip(_softmax(sr, 2.0), _softmax(tr, 2.0))]
        for sr, tr in zip(S_ROWS, T_ROWS)
    ]
    assert_close(s.grad, torch.tensor(expected))
    assert t.grad is None and not t.requires_grad
    assert len(list(loss.parameters())) == 0


def test_soft_target_kd_loss_rejects_bad_arguments():
    with pytest.raises(ValueError, match="T_START"):
        SoftTargetKDLoss(t_start=0.0)
    with pytest.raises(ValueError):
        SoftTargetKDLoss(t_start=-1.0)
    with pytest.raises(ValueError):
        SoftTargetKDLoss(t_end=0.0)
    with pytest.raises(ValueError, match="WEIGHT"):
        SoftTargetKDLoss(weight=-0.1)
    with pytest.raises(ValueError):
        SoftTargetKDLoss(schedule="exponential")
    SoftTargetKDLoss(weight=0.0)  # zero is allowed (the term switched off by its weight)


# ----------------------------------------------------------------------------- attention


# channel 0 = [[1, -1], [2, 0]], channel 1 = [[1, 1], [0, 2]]
X_AT = torch.tensor([[[[1.0, -1.0], [2.0, 0.0]], [[1.0, 1.0], [0.0, 2.0]]]])


def test_attention_map_by_hand():
    # p = 2: squares (1, 1, 4, 0) and (1, 1, 0, 4), channel mean (1, 1, 2, 2), norm sqrt(10)
    r10 = math.sqrt(10.0)
    assert_close(attention_map(X_AT, 2.0), torch.tensor([[1 / r10, 1 / r10, 2 / r10, 2 / r10]]))
    # p = 1: |x| (1, 1, 2, 0) and (1, 1, 0, 2), mean (1, 1, 1, 1), norm 2
    assert_close(attention_map(X_AT, 1.0), torch.tensor([[0.5, 0.5, 0.5, 0.5]]))
    # one row per sample, each of unit L2 norm
    a = attention_map(torch.randn(3, 4, 5, 6))
    assert a.shape == (3, 30)
    assert_close(a.norm(dim=1), torch.ones(3))


def test_attention_transfer_loss_by_hand_one_level():
    # student p2 = X_AT -> AT_S = (1, 1, 2, 2) / sqrt(10).
    # teacher p2: 3 channels, 4 x 4. Channels 0 and 1 are checkerboards of 0 and 2 (their
    # 2x2 block means are 1); channel 2 (100 in the top-left block, 0 elsewhere) is cropped
    # away. A(T) = ones(1, 2, 2, 2) -> AT_T = (1, 1, 1, 1) / 2.
    checker = ((torch.arange(4)[:, None] + torch.arange(4)[None, :]) % 2).float() * 2.0
    third = torch.zeros(4, 4)
    third[:2, :2] = 100.0
    t = torch.stack([checker, checker, third])[None]
    r10 = math.sqrt(10.0)
    mse = (2 * (1 / r10 - 0.5) ** 2 + 2 * (2 / r10 - 0.5) ** 2) / 4
    loss = AttentionTransferLoss(in_features=["p2"], weight=1000.0, p=2.0)
    out = loss(_out({"p2": X_AT}), _out({"p2": t}))
    assert set(out) == {"loss_at"}
    assert_close(out["loss_at"], torch.tensor(1000.0 * mse))
    # weight scales linearly
    loss = AttentionTransferLoss(in_features=["p2"], weight=10.0, p=2.0)
    assert_close(loss(_out({"p2": X_AT}), _out({"p2": t}))["loss_at"], torch.tensor(10.0 * mse))


def test_attention_transfer_aligns_before_the_attention_map():
    # METHODS: AT(A(S)) vs AT(A(T)), i.e. pool the teacher's maps first, then square.
    # teacher 1 x 1 x 2 x 4: row 0 = (0, 2, 0, 2), row 1 = (1, 1, 3, 3); student 1 x 1 x 2 x 2.
    # A(T) (1x2 blocks) = [[1, 1], [1, 3]] -> squares (1, 1, 1, 9) -> / sqrt(84).
    # (pooling the squares instead would give (2, 2, 1, 9)).
    t = torch.tensor([[[[0.0, 2.0, 0.0, 2.0], [1.0, 1.0, 3.0, 3.0]]]])
    s = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]]])  # AT_S = (1/2, 1/2, 1/2, 1/2)
    r84 = math.sqrt(84.0)
    at_t = [1 / r84, 1 / r84, 1 / r84, 9 / r84]
    mse = sum((0.5 - v) ** 2 for v in at_t) / 4
    loss = AttentionTransferLoss(in_features=["p3"], weight=1.0)
    assert_close(loss(_out({"p3": s}), _out({"p3": t}))["loss_at"], torch.tensor(mse))


def test_attention_transfer_loss_two_levels_mean():
    # p2 as in the one-level test with an equal teacher -> 0.
    # p3: student 1 x 2 x 1 x 2 with squares' mean (1, 0) -> AT_S = (1, 0); teacher (0, 1):
    # mse = (1 + 1) / 2 = 1. Mean over levels = 0.5; weight 4 -> 2.
    s3 = torch.tensor([[[[1.0, 0.0]], [[-1.0, 0.0]]]])
    t3 = torch.tensor([[[[0.0, 3.0]], [[0.0, 0.0]]]])
    loss = AttentionTransferLoss(in_features=["p2", "p3"], weight=4.0)
    out = loss(_out({"p2": X_AT, "p3": s3}), _out({"p2": X_AT.clone(), "p3": t3}))
    assert_close(out["loss_at"], torch.tensor(2.0))


def test_attention_transfer_loss_random_against_explicit_formula():
    s = {"p2": torch.randn(2, 2, 4, 4), "p3": torch.randn(2, 2, 2, 2)}
    t = {"p2": torch.randn(2, 3, 8, 8), "p3": torch.randn(2, 3, 4, 4)}

    def at(x):  # mean_c x^2, flattened, divided by its L2 norm per sample
        a = (x**2).mean(dim=1).reshape(x.shape[0], -1)
        return a / a.pow(2).sum(dim=1, keepdim=True).sqrt()

    def pool2(x):
        n, c, h, w = x.shape
        return x.reshape(n, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))

    expected = 0
    for f in ("p2", "p3"):
        d = at(s[f]) - at(pool2(t[f][:, :2]))
        expected = expected + (d**2).sum() / d.numel() / 2
    loss = AttentionTransferLoss(in_features=["p2", "p3"], weight=7.0)
    assert_close(loss(_out(s), _out(t))["loss_at"], 7.0 * expected)


def test_attention_transfer_loss_rejects_bad_arguments():
    with pytest.raises(ValueError, match="P"):
        AttentionTransferLoss(in_features=["p2"], p=0.0)
    with pytest.raises(ValueError):
        AttentionTransferLoss(in_features=["p2"], p=-2.0)
    with pytest.raises(ValueError, match="WEIGHT"):
        AttentionTransferLoss(in_features=["p2"], weight=-1.0)


# ----------------------------------------------------------------------------- FSP


def test_fsp_matrix_pooled_to_one_pixel_by_hand():
    # x: channel 0 = [[1, 2], [3, 4]] (mean 2.5), channel 1 = [[0, 0], [0, 4]] (mean 1)
    # y: 1 x 3 x 1 x 1 = (1, 2, -1); H W = 1 -> G = x_pooled^T y
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 4.0]]]])
    y = torch.tensor([1.0, 2.0, -1.0]).reshape(1, 3, 1, 1)
    g = fsp_matrix(x, y)
    assert g.shape == (1, 2, 3)
    assert_close(g, torch.tensor([[[2.5, 5.0, -2.5], [1.0, 2.0, -1.0]]]))


def test_fsp_matrix_by_hand_2x2():
    # x: 1 x 1 x 4 x 4 = arange(16) -> 2x2 block means [[2.5, 4.5], [10.5, 12.5]]
    # y: 1 x 2 x 2 x 2, channel 0 = [[1, 0], [0, 1]], channel 1 = [[0, 2], [2, 0]]
    # G[0, 0] = (2.5 + 12.5) / 4 = 3.75; G[0, 1] = 2 * (4.5 + 10.5) / 4 = 7.5
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    y = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[0.0, 2.0], [2.0, 0.0]]]])
    assert_close(fsp_matrix(x, y), torch.tensor([[[3.75, 7.5]]]))


def _fsp_by_hand(x, y):
    """G[n, c, d] = sum_hw pool(x)[n, c, h, w] y[n, d, h, w] / (H W), with loops."""
    n_, c1, h, w = y.shape[0], x.shape[1], y.shape[2], y.shape[3]
    kh, kw = x.shape[2] // h, x.shape[3] // w
    g = torch.zeros(n_, c1, y.shape[1])
    for n in range(n_):
        for c in range(c1):
            for d in range(y.shape[1]):
                total = 0.0
                for i in range(h):
                    for j in range(w):
                        block = x[n, c, i * kh : (i + 1) * kh, j * kw : (j + 1) * kw]
                        total += float(block.mean()) * float(y[n, d, i, j])
                g[n, c, d] = total / (h * w)
    return g


def test_fsp_loss_three_levels_constant_maps():
    # student: every map 1 -> every G_S entry 1. teacher: 3 channels, the first two 2 (the
    # third, 100, cropped away) -> every G_T entry 4. MSE 9 for both pairs; mean 9; weight 0.5.
    levels = {"p2": 8, "p3": 4, "p4": 2}
    s = {f: torch.ones(1, 2, h, h) for f, h in levels.items()}
    t = {
        f: torch.cat([torch.full((1, 2, h, h), 2.0), torch.full((1, 1, h, h), 100.0)], dim=1)
        for f, h in levels.items()
    }
    loss = FSPLoss(in_features=list(levels), channels=[2, 2, 2], weight=0.5)
    out = loss(_out(s), _out(t))
    assert set(out) == {"loss_fsp"}
    assert_close(out["loss_fsp"], torch.tensor(4.5))


def test_fsp_loss_three_levels_random_by_hand():
    s = {
        "p2": torch.randn(2, 2, 4, 4),
        "p3": torch.randn(2, 2, 2, 2),
        "p4": torch.randn(2, 2, 1, 1),
    }
    t = {
        "p2": torch.randn(2, 3, 4, 4),
        "p3": torch.randn(2, 3, 2, 2),
        "p4": torch.randn(2, 3, 1, 1),
    }
    pairs = [("p2", "p3"), ("p3", "p4")]
    terms = []
    for a, b in pairs:
        d = _fsp_by_hand(s[a], s[b]) - _fsp_by_hand(t[a][:, :2], t[b][:, :2])
        terms.append((d**2).sum() / d.numel())
    expected = 3.0 * (terms[0] + terms[1]) / 2
    loss = FSPLoss(in_features=["p2", "p3", "p4"], channels=[2, 2, 2], weight=3.0)
    assert_close(loss(_out(s), _out(t))["loss_fsp"], expected)


def test_fsp_loss_from_config_crops_to_the_narrower_side():
    cfg = _cfg(["FSPLoss"])
    cfg.MODEL.DISTILL.FSP.WEIGHT = 2.0
    student = {f: ShapeSpec(channels=2, stride=s) for f, s in (("p2", 4), ("p3", 8), ("p4", 16))}
    teacher = {f: ShapeSpec(channels=3, stride=s) for f, s in (("p2", 4), ("p3", 8), ("p4", 16))}
    loss = build_distill_losses(cfg, student, [teacher])["FSPLoss"][0]
    assert isinstance(loss, FSPLoss)
    assert loss.channels == [2, 2, 2]
    assert loss.in_features == ["p2", "p3", "p4"]
    assert loss.weight == 2.0


def test_fsp_loss_rejects_bad_arguments():
    with pytest.raises(ValueError, match="consecutive"):
        FSPLoss(in_features=["p2"], channels=[2])
    with pytest.raises(ValueError):
        FSPLoss(in_features=[], channels=[])
    with pytest.raises(ValueError, match="WEIGHT"):
        FSPLoss(in_features=["p2", "p3"], channels=[2, 2], weight=-1.0)


# ----------------------------------------------------------------------------- registry


def _cfg(losses):
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    cfg.MODEL.DISTILL.LOSSES = losses
    return cfg


def test_registry_names_and_flags():
    for name, cls in [
        ("SoftTargetKDLoss", SoftTargetKDLoss),
        ("AttentionTransferLoss", AttentionTransferLoss),
        ("FSPLoss", FSPLoss),
        ("InheritExploreLoss", InheritExploreLoss),
    ]:
        assert name in DISTILL_LOSS_REGISTRY
        assert DISTILL_LOSS_REGISTRY.get(name) is cls
    assert SoftTargetKDLoss.NEEDS_LOGITS is True
    assert not getattr(AttentionTransferLoss, "NEEDS_LOGITS", False)
    assert not getattr(FSPLoss, "NEEDS_LOGITS", False)
    assert InheritExploreLoss.PER_GUIDE is False
    for cls in (SoftTargetKDLoss, AttentionTransferLoss, FSPLoss):
        assert getattr(cls, "PER_GUIDE", True) is True


def test_build_mkd_losses_one_per_guide_from_config():
    cfg = _cfg(["SoftTargetKDLoss", "AttentionTransferLoss", "FSPLoss"])
    cfg.SOLVER.MAX_ITER = 101
    cfg.MODEL.DISTILL.KD.WEIGHT = 0.25
    cfg.MODEL.DISTILL.KD.SCHEDULE = "cosine"
    cfg.MODEL.DISTILL.AT.WEIGHT = 50.0
    cfg.MODEL.DISTILL.AT.P = 1.0
    shapes = {"p2": ShapeSpec(channels=2, stride=4), "p3": ShapeSpec(channels=2, stride=8)}
    losses = build_distill_losses(cfg, shapes, [shapes, shapes])
    assert list(losses) == ["SoftTargetKDLoss", "AttentionTransferLoss", "FSPLoss"]
    for name in losses:
        assert isinstance(losses[name], nn.ModuleList) and len(losses[name]) == 2
    kd = losses["SoftTargetKDLoss"][1]
    assert (kd.weight, kd.t_start, kd.t_end, kd.schedule, kd.max_iter) == (
        0.25,
        2.0,  # the default T_START
        1.0,
        "cosine",
        101,
    )
    at = losses["AttentionTransferLoss"][0]
    assert (at.in_features, at.weight, at.p) == (["p2", "p3"], 50.0, 1.0)
