"""shared_kd.layers.encoders: M-KD's per-level encoders and the weights fingerprint that ties an
auto-encoder to its teacher."""

import torch
import torch.nn as nn
from torch.testing import assert_close

from shared_kd.layers.encoders import (
    LevelAutoEncoder,
    conv_encoder,
    same_fingerprint,
    weights_fingerprint,
)


def test_conv_encoder_and_level_autoencoder_shapes():
    x = torch.randn(2, 6, 5, 4)
    enc = conv_encoder(6, 3)
    assert enc(x).shape == (2, 3, 5, 4)
    ae = LevelAutoEncoder(6, 3)
    assert ae(x).shape == x.shape
    assert ae.encoder[0].in_channels == 6 and ae.encoder[-1].out_channels == 3
    assert ae.decoder[-1].out_channels == 6


def test_weights_fingerprint_by_hand():
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, -4.5]]))
        lin.bias.copy_(torch.tensor([0.25, 0.5]))
    fp = weights_fingerprint(lin)
    assert fp.dtype == torch.float64
    assert fp.device.type == "cpu"
    assert_close(fp, torch.tensor([1.5, 0.75], dtype=torch.float64))  # per parameter sums
    with torch.no_grad():
        lin.weight[0, 0] += 1.0
    assert_close(weights_fingerprint(lin), torch.tensor([2.5, 0.75], dtype=torch.float64))


def test_same_fingerprint_up_to_rounding():
    a = torch.tensor([1.5, 0.75], dtype=torch.float64)
    assert same_fingerprint(a, a.clone())
    assert same_fingerprint(a, a + 1e-8)  # rounding (e.g. summed on another device)
    assert not same_fingerprint(a, a + torch.tensor([0.0, 1e-3], dtype=torch.float64))
    assert not same_fingerprint(a, a[:1])  # another architecture: another number of tensors
    # the fingerprints of two layers of one shape with other weights differ
    torch.manual_seed(0)
    assert not same_fingerprint(
        weights_fingerprint(nn.Linear(2, 2)), weights_fingerprint(nn.Linear(2, 2))
    )
