"""Parameter-free alignment ``A(x, like=y)`` (METHODS.md, "Alignment"), against hand values."""

import pytest
import torch
from torch.testing import assert_close

from shared_kd.layers.alignment import align_pair, crop_channels, pool_to


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _grid(*shape):
    """``arange`` over ``shape`` as float: 0, 1, 2, ... in row-major order."""
    n = 1
    for s in shape:
        n *= s
    return torch.arange(n, dtype=torch.float32).reshape(shape)


# arange(16).reshape(4, 4) = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]];
# its 2x2 block means: (0+1+4+5)/4, (2+3+6+7)/4, (8+9+12+13)/4, (10+11+14+15)/4.
POOLED_4X4 = [[2.5, 4.5], [10.5, 12.5]]


def test_equal_shapes_are_returned_as_the_same_objects():
    x = torch.randn(2, 3, 5, 4)
    y = torch.randn(2, 3, 5, 4)
    ax, ay = align_pair(x, y)
    assert ax is x and ay is y
    assert pool_to(x, (5, 4)) is x
    assert pool_to(x, torch.Size([5, 4])) is x
    assert crop_channels(x, 3) is x


def test_pool_to_averages_2x2_blocks():
    x = _grid(1, 1, 4, 4)
    assert_close(pool_to(x, (2, 2)), torch.tensor([[POOLED_4X4]]))
    # to 1x1: the global mean, (0 + ... + 15) / 16
    assert_close(pool_to(x, (1, 1)), torch.tensor([[[[7.5]]]]))
    # one axis only: rows pooled in pairs, columns kept
    assert_close(
        pool_to(x, (2, 4)),
        torch.tensor([[[[2.0, 3.0, 4.0, 5.0], [10.0, 11.0, 12.0, 13.0]]]]),
    )


def test_pool_to_non_integer_ratio_uses_adaptive_bins():
    # 3 -> 2 along each axis: adaptive bins [0, 2) and [1, 3), which overlap on the middle one.
    # arange(9).reshape(3, 3) = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    x = _grid(1, 1, 3, 3)
    expected = [
        [(0 + 1 + 3 + 4) / 4, (1 + 2 + 4 + 5) / 4],
        [(3 + 4 + 6 + 7) / 4, (4 + 5 + 7 + 8) / 4],
    ]
    assert_close(pool_to(x, (2, 2)), torch.tensor([[expected]]))


def test_crop_channels_keeps_the_first_channels():
    x = _grid(2, 4, 2, 2)
    out = crop_channels(x, 2)
    assert out.shape == (2, 2, 2, 2)
    assert_close(out, torch.stack([x[0, :2], x[1, :2]]))
    # explicit: sample 0, channel 1 is 4..7; sample 1, channel 0 is 16..19
    assert_close(out[0, 1], torch.tensor([[4.0, 5.0], [6.0, 7.0]]))
    assert_close(out[1, 0], torch.tensor([[16.0, 17.0], [18.0, 19.0]]))


def test_unequal_spatial_pools_the_larger_one_only():
    x = _grid(1, 1, 4, 4)
    y = torch.tensor([[[[-1.0, -2.0], [-3.0, -4.0]]]])
    ax, ay = align_pair(x, y)
    assert_close(ax, torch.tensor([[POOLED_4X4]]))
    assert ay is y
    # symmetric: the larger map is pooled whichever side it is on
    ay2, ax2 = align_pair(y, x)
    assert ay2 is y
    assert_close(ax2, torch.tensor([[POOLED_4X4]]))


def test_unequal_channels_keeps_first_min_channels():
    x = _grid(1, 3, 2, 2)
    y = torch.randn(1, 2, 2, 2)
    ax, ay = align_pair(x, y)
    assert ay is y
    assert_close(ax, torch.tensor([[[[0.0, 1.0], [2.0, 3.0]], [[4.0, 5.0], [6.0, 7.0]]]]))
    ay2, ax2 = align_pair(y, x)
    assert ay2 is y
    assert_close(ax2, ax)


def test_unequal_channels_and_spatial_at_once():
    # x: more channels and larger; y: fewer channels, smaller -> x cropped and pooled, y as is.
    x = _grid(1, 4, 4, 4)
    y = torch.randn(1, 2, 2, 2)
    ax, ay = align_pair(x, y)
    assert ay is y
    channel1 = [[v + 16.0 for v in row] for row in POOLED_4X4]  # channel 1 is channel 0 + 16
    assert_close(ax, torch.tensor([[POOLED_4X4, channel1]]))

    # x: more channels but smaller; y: fewer channels but larger -> x cropped, y pooled.
    x = _grid(1, 3, 2, 2)
    y = _grid(1, 1, 4, 4)
    ax, ay = align_pair(x, y)
    assert_close(ax, torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]]))
    assert_close(ay, torch.tensor([[POOLED_4X4]]))


def test_mixed_x_taller_y_wider_both_pooled_to_min_h_min_w():
    # x: 4 x 2, arange = [[0, 1], [2, 3], [4, 5], [6, 7]] -> rows pooled in pairs
    x = _grid(1, 1, 4, 2)
    # y: 2 x 4, arange = [[0, 1, 2, 3], [4, 5, 6, 7]] -> columns pooled in pairs
    y = _grid(1, 1, 2, 4)
    ax, ay = align_pair(x, y)
    assert ax.shape == ay.shape == (1, 1, 2, 2)
    assert_close(ax, torch.tensor([[[[(0 + 2) / 2, (1 + 3) / 2], [(4 + 6) / 2, (5 + 7) / 2]]]]))
    assert_close(ay, torch.tensor([[[[(0 + 1) / 2, (2 + 3) / 2], [(4 + 5) / 2, (6 + 7) / 2]]]]))


def test_batch_is_kept_and_gradient_flows():
    x = torch.randn(3, 4, 4, 4, requires_grad=True)
    y = torch.randn(3, 2, 2, 2)
    ax, ay = align_pair(x, y)
    assert ax.shape == ay.shape == (3, 2, 2, 2)
    ax.sum().backward()
    # each of the first 2 channels' pixels is in exactly one 2x2 block: d/dx = 1/4; others: 0
    expected = torch.zeros(3, 4, 4, 4)
    expected[:, :2] = 0.25
    assert_close(x.grad, expected)
