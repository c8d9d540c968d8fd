"""The feature distances shared by Shared-KD, FitNets and PKD, against values computed by hand."""

import math

import pytest
import torch
from detectron2.utils.events import EventStorage
from torch.testing import assert_close

from shared_kd.losses.feature_distance import (
    DEFAULT_LOG_PERIOD,
    NORMALIZATIONS,
    current_iteration,
    foreground_masks,
    foreground_weights,
    is_logging_iteration,
    squared_distance,
    standardize_channels,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


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


def _pearson(a, b):
    """Pearson correlation of two equally long vectors, written out with sums."""
    da, db = a - a.mean(), b - b.mean()
    return (da * db).sum() / ((da**2).sum().sqrt() * (db**2).sum().sqrt())


# ----------------------------------------------------------------------------- standardisation


def test_standardize_channels_by_hand_over_batch_and_positions():
    # x: N=2, C=2, H=1, W=2.
    # channel 0: image 0 (1, 2), image 1 (3, 4): mean 2.5, unbiased var (2.25+0.25+0.25+2.25)/3
    #   = 5/3 -> z = (-1.5, -0.5, 0.5, 1.5) / sqrt(5/3)
    # channel 1: image 0 (10, 10), image 1 (10, 14): mean 11, deviations (-1, -1, -1, 3),
    #   var 12/3 = 4, std 2 -> z = (-0.5, -0.5, -0.5, 1.5). Image 0 alone has std 0 there:
    #   the statistics must be those of the whole batch.
    x = torch.tensor([[[[1.0, 2.0]], [[10.0, 10.0]]], [[[3.0, 4.0]], [[10.0, 14.0]]]])
    s = math.sqrt(5 / 3)
    expected = torch.tensor(
        [[[[-1.5 / s, -0.5 / s]], [[-0.5, -0.5]]], [[[0.5 / s, 1.5 / s]], [[-0.5, 1.5]]]]
    )
    out = standardize_channels(x)
    assert out.shape == x.shape
    assert_close(out, expected)


def test_standardize_channels_random_matches_the_formula():
    x = 3.0 * torch.randn(3, 4, 5, 6) + torch.arange(4.0).view(1, 4, 1, 1)
    out = standardize_channels(x)
    assert_close(out, _standardize(x))
    # every channel: mean 0, unbiased std 1 (up to eps)
    assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    assert_close(out.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-5, rtol=0)


def test_standardize_constant_channel_is_zero_not_nan():
    # std 0: (x - mean) / (0 + eps) = 0 / eps = 0
    x = torch.randn(2, 2, 3, 3)
    x[:, 1] = 7.0
    out = standardize_channels(x)
    assert torch.isfinite(out).all()
    assert_close(out[:, 1], torch.zeros(2, 3, 3))


def test_standardize_one_value_per_channel_is_zero_not_nan():
    # batch 1 and a 1 x 1 level (p7 of a small input): the unbiased std is undefined
    x = torch.randn(1, 3, 1, 1)
    assert torch.equal(standardize_channels(x), torch.zeros_like(x))
    assert squared_distance(x, x + 1.0, "channel") == 0


# ----------------------------------------------------------------------------- distance


def test_squared_distance_none_is_the_mean_squared_difference():
    # S = 0; T channels (1, 2) constant on 2x2 -> ((1 + 4) * 4) / 8 = 2.5
    s = torch.zeros(1, 2, 2, 2)
    t = torch.stack([torch.full((2, 2), 1.0), torch.full((2, 2), 2.0)])[None]
    assert_close(squared_distance(s, t), torch.tensor(2.5))
    assert_close(squared_distance(s, t, "none"), torch.tensor(2.5))
    a, b = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    assert_close(squared_distance(a, b), ((a - b) ** 2).sum() / a.numel())


def test_squared_distance_channel_by_hand():
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    za, zb = _standardize(a), _standardize(b)
    expected = ((za - zb) ** 2).sum() / za.numel()
    assert_close(squared_distance(a, b, "channel"), expected)


def test_squared_distance_channel_is_one_minus_pearson():
    # For standardised maps of M values per channel (unbiased std):
    #   mean_m (za - zb)^2 = (sum za^2 + sum zb^2 - 2 sum za zb) / M
    #                      = ((M-1) + (M-1) - 2 (M-1) rho) / M = 2 (M-1) / M (1 - rho)
    # and the distance is the mean of that over channels (the same M in every channel).
    a = torch.randn(2, 3, 4, 4)
    b = 0.5 * a + torch.randn(2, 3, 4, 4)  # correlated, rho around 0.45
    m = 2 * 4 * 4
    rhos = [_pearson(a[:, c].flatten(), b[:, c].flatten()) for c in range(3)]
    expected = sum(2 * (m - 1) / m * (1 - r) for r in rhos) / 3
    assert_close(squared_distance(a, b, "channel"), expected, rtol=1e-4, atol=1e-5)
    # identical maps: rho = 1 -> 0; opposite maps: rho = -1 -> 4 (M-1) / M
    assert_close(squared_distance(a, a, "channel"), torch.tensor(0.0))
    assert_close(
        squared_distance(a, -a, "channel"), torch.tensor(4 * (m - 1) / m), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("which", ["student", "target"])
def test_squared_distance_channel_is_invariant_to_per_channel_affine_maps(which):
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    scale = torch.tensor([0.5, 3.0, 20.0]).view(1, 3, 1, 1)
    shift = torch.tensor([-4.0, 0.0, 100.0]).view(1, 3, 1, 1)
    reference = squared_distance(a, b, "channel")
    if which == "student":
        moved = squared_distance(scale * a + shift, b, "channel")
    else:
        moved = squared_distance(a, scale * b + shift, "channel")
    assert_close(moved, reference, rtol=1e-4, atol=1e-5)
    # "none" is not invariant: the check above is not vacuous
    assert not torch.allclose(
        squared_distance(scale * a + shift, b), squared_distance(a, b), rtol=1e-2
    )


def test_squared_distance_weighted_mean_by_hand():
    # N=1, C=2, H=1, W=2; S = 0; T channel 0 (1, 2), channel 1 (3, 0)
    # per position, mean over channels: (1 + 9) / 2 = 5 and (4 + 0) / 2 = 2
    # weights (3, 1): (3 * 5 + 1 * 2) / 4 = 4.25 (unweighted: 3.5)
    s = torch.zeros(1, 2, 1, 2)
    t = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])
    w = torch.tensor([[[[3.0, 1.0]]]])
    assert_close(squared_distance(s, t, weights=w), torch.tensor(4.25))
    assert_close(squared_distance(s, t), torch.tensor(3.5))
    # uniform weights give the unweighted mean, whatever their scale
    assert_close(squared_distance(s, t, weights=torch.full_like(w, 7.0)), torch.tensor(3.5))


def test_squared_distance_weighted_random_by_hand():
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    w = torch.rand(2, 1, 4, 4) * 3
    per_position = ((a - b) ** 2).sum(1, keepdim=True) / 3
    assert_close(squared_distance(a, b, weights=w), (per_position * w).sum() / w.sum())
    # with "channel": standardise first (unweighted statistics), then the weighted mean
    za, zb = _standardize(a), _standardize(b)
    per_position = ((za - zb) ** 2).sum(1, keepdim=True) / 3
    assert_close(squared_distance(a, b, "channel", w), (per_position * w).sum() / w.sum())


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_squared_distance_is_float32_for_half_inputs(normalize):
    a = torch.randn(2, 2, 3, 3).to(torch.bfloat16)
    b = torch.randn(2, 2, 3, 3).to(torch.bfloat16)
    out = squared_distance(a, b, normalize)
    assert out.dtype == torch.float32 and out.dim() == 0
    assert_close(out, squared_distance(a.float(), b.float(), normalize))


def test_squared_distance_gradient_reaches_the_student():
    a = torch.randn(1, 2, 3, 3, requires_grad=True)
    b = torch.randn(1, 2, 3, 3)
    squared_distance(a, b).backward()
    assert_close(a.grad, 2 * (a - b).detach() / a.numel())


def test_squared_distance_rejects_unknown_normalisation():
    x = torch.randn(1, 1, 2, 2)
    with pytest.raises(ValueError, match="Unknown normalisation 'batch'"):
        squared_distance(x, x, "batch")
    assert NORMALIZATIONS == ("none", "channel")


# ----------------------------------------------------------------------------- foreground


def test_foreground_masks_centre_rule_by_hand():
    # 4x4 map, stride 8: position centres at 4, 12, 20, 28 in both directions.
    # image 0, box (10, 0, 21, 13): x centres 12, 20 -> columns 1, 2; y centres 4, 12 -> rows 0, 1
    # image 1: box (0, 0, 4, 4) holds centre (4, 4) on its edge -> (0, 0) (edges are inside);
    #   box (27.9, 27.9, 40, 40) -> (3, 3); box (29, 0, 40, 40) holds no centre (28 < 29)
    # image 2: no boxes
    boxes = [
        torch.tensor([[10.0, 0.0, 21.0, 13.0]]),
        torch.tensor([[0.0, 0.0, 4.0, 4.0], [27.9, 27.9, 40.0, 40.0], [29.0, 0.0, 40.0, 40.0]]),
        torch.zeros(0, 4),
    ]
    out = foreground_masks(boxes, (4, 4), 8, torch.device("cpu"))
    expected = torch.tensor(
        [
            [[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
            [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]],
            [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
        ],
        dtype=torch.float32,
    )[:, None]
    assert out.shape == (3, 1, 4, 4)
    assert out.dtype == torch.float32
    assert_close(out, expected)


def test_foreground_masks_non_square_map():
    # H=2, W=3, stride 4: y centres 2, 6; x centres 2, 6, 10.
    # box (5, 0, 11, 3): x 6, 10 -> columns 1, 2; y 2 -> row 0. Transposed axes would differ.
    boxes = [torch.tensor([[5.0, 0.0, 11.0, 3.0]], dtype=torch.float64)]
    out = foreground_masks(boxes, torch.Size([2, 3]), 4.0, "cpu")
    assert_close(out, torch.tensor([[[[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]]]))


def test_foreground_masks_image_without_boxes():
    out = foreground_masks([torch.zeros(0, 4)], (3, 5), 16, "cpu")
    assert out.shape == (1, 1, 3, 5)
    assert_close(out, torch.zeros(1, 1, 3, 5))


def test_foreground_weights_by_hand():
    # 2x2 map, stride 4: centres 2, 6. Box (0, 0, 3, 7) -> column 0, rows 0 and 1.
    like = torch.randn(1, 5, 2, 2)
    w = foreground_weights([torch.tensor([[0.0, 0.0, 3.0, 7.0]])], like, 4, 3.0)
    # 1 + (3 - 1) * mask
    assert_close(w, torch.tensor([[[[3.0, 1.0], [3.0, 1.0]]]]))
    # an image without boxes weighs every position 1
    w = foreground_weights([torch.zeros(0, 4)], like, 4, 3.0)
    assert_close(w, torch.ones(1, 1, 2, 2))


def test_foreground_weights_none_for_weight_one():
    like = torch.randn(1, 2, 2, 2)
    assert foreground_weights([torch.tensor([[0.0, 0.0, 8.0, 8.0]])], like, 4, 1.0) is None
    # no boxes needed when no weighting is asked for
    assert foreground_weights(None, like, 4, 1.0) is None


def test_foreground_weights_without_boxes_raises():
    with pytest.raises(ValueError, match="ground-truth boxes"):
        foreground_weights(None, torch.randn(1, 2, 2, 2), 4, 2.0)


def test_foreground_weighted_distance_by_hand():
    # 2x2 map, stride 4, S = 0, T = 1 in the one channel except T(1, 1) = 3:
    # errors (1, 1; 1, 9). Box (0, 0, 3, 3) -> position (0, 0) weighs 5 (fg weight 5):
    # (5 * 1 + 1 + 1 + 9) / (5 + 3) = 16 / 8 = 2
    s = torch.zeros(1, 1, 2, 2)
    t = torch.tensor([[[[1.0, 1.0], [1.0, 3.0]]]])
    w = foreground_weights([torch.tensor([[0.0, 0.0, 3.0, 3.0]])], s, 4, 5.0)
    assert_close(squared_distance(s, t, weights=w), torch.tensor(2.0))


# ----------------------------------------------------------------------------- iterations


def test_current_iteration():
    assert current_iteration() is None
    with EventStorage(start_iter=7) as storage:
        assert current_iteration() == 7
        storage.iter = 12
        assert current_iteration() == 12
        with EventStorage(start_iter=3):  # the innermost storage wins
            assert current_iteration() == 3
        assert current_iteration() == 12
    assert current_iteration() is None


@pytest.mark.parametrize(
    "iteration, max_iter, expected",
    [
        (0, 100, False),
        (18, 100, False),
        (19, 100, True),  # (19 + 1) % 20 == 0
        (20, 100, False),
        (39, 100, True),
        (98, 100, False),
        (99, 100, True),  # the last iteration
        (49, 50, True),  # the last iteration, off the period
        (48, 50, False),
        (19, 0, True),  # max_iter unknown: the period alone
        (5, 0, False),
    ],
)
def test_is_logging_iteration(iteration, max_iter, expected):
    assert DEFAULT_LOG_PERIOD == 20  # detectron2's PeriodicWriter default
    with EventStorage(start_iter=iteration):
        assert is_logging_iteration(max_iter) is expected


def test_is_logging_iteration_false_outside_of_storage():
    assert is_logging_iteration(100) is False
    assert is_logging_iteration(0) is False
    assert is_logging_iteration(1) is False


def test_standardize_a_constant_channel_has_finite_gradients():
    # one channel takes the same value in every image (a 1 x 1 level, batch 2): its variance is
    # 0, where sqrt's gradient is infinite
    x = torch.tensor([[[[1.0]], [[2.0]]], [[[1.0]], [[3.0]]]], requires_grad=True)  # 2 x 2 x 1 x 1
    standardize_channels(x).pow(2).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert squared_distance(x, torch.randn(2, 2, 1, 1), "channel").isfinite()
