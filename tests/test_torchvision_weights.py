"""torchvision ImageNet weights into detectron2 backbones: the same features on the same image."""

import os

import pytest
import torch
import torchvision
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.backbone import RegNet, build_resnet_backbone
from detectron2.modeling.backbone.regnet import ResBottleneckBlock, SimpleStem

from shared_kd.config import load_config
from shared_kd.torchvision_weights import (
    PIXEL_MEAN,
    PIXEL_STD,
    convert_torchvision,
    student_settings,
)
from shared_kd.utils.testing import get_tiny_cfg

from .conftest import REPO_ROOT, run_in_this_process


def _random_bn_statistics(model):
    """BatchNorm statistics that are not the identity, so that a wrong mapping shows."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def _images():
    torch.manual_seed(0)
    rgb = torch.randint(0, 256, (1, 3, 64, 96)).float()  # detectron2's 0-255 pixels
    mean, std = torch.tensor(PIXEL_MEAN).view(3, 1, 1), torch.tensor(PIXEL_STD).view(3, 1, 1)
    torchvision_input = (rgb / 255 - mean / 255) / (std / 255)  # torchvision's own transform
    bgr = rgb.flip(1)
    s = student_settings("BGR")
    d2_input = (bgr - torch.tensor(s["MODEL.PIXEL_MEAN"]).view(3, 1, 1)) / torch.tensor(
        s["MODEL.PIXEL_STD"]
    ).view(3, 1, 1)
    return torchvision_input, d2_input


def _resnet_trunk(net, x):
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


@pytest.mark.slow
@pytest.mark.parametrize("depth", [18, 50])
def test_a_resnet_gives_the_same_features(depth):
    torch.manual_seed(depth)
    net = _random_bn_statistics(getattr(torchvision.models, f"resnet{depth}")())
    weights = convert_torchvision(net.state_dict(), "BGR")
    cfg = get_tiny_cfg()
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64 if depth < 50 else 256
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    backbone = build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    backbone.load_state_dict(weights, strict=True)  # every key, nothing left over
    tv_in, d2_in = _images()
    with torch.no_grad():
        expected = _resnet_trunk(net, tv_in)
        got = backbone(d2_in)["res5"]
    # fp32 rounding only: FrozenBN folds the statistics into a scale and a bias, BatchNorm does
    # not, and 16 bottleneck blocks accumulate the difference (at most 7e-4 here, on values ~1)
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)


def test_a_regnet_gives_the_same_features():
    torch.manual_seed(1)
    net = _random_bn_statistics(torchvision.models.regnet_y_400mf())
    # detectron2's RegNetY-400MF (pycls's parameters, as torchvision's)
    backbone = RegNet(
        stem_class=SimpleStem,
        stem_width=32,
        block_class=ResBottleneckBlock,
        depth=16,
        w_a=27.89,
        w_0=48,
        w_m=2.09,
        group_width=8,
        se_ratio=0.25,
        norm="FrozenBN",
        out_features=["s4"],
    ).eval()
    backbone.load_state_dict(convert_torchvision(net.state_dict(), "BGR"), strict=True)
    tv_in, d2_in = _images()
    with torch.no_grad():
        expected = net.trunk_output(net.stem(tv_in))
        got = backbone(d2_in)["s4"]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_the_tool_writes_a_checkpoint_a_student_loads(tmp_path):
    net = _random_bn_statistics(torchvision.models.resnet18())
    src, out = tmp_path / "resnet18.pth", tmp_path / "R-18.pth"
    torch.save(net.state_dict(), src)
    tool = os.path.join(REPO_ROOT, "tools", "convert_torchvision.py")
    code, output = run_in_this_process(tool, str(src), str(out))
    assert code == 0, output[-2000:]
    assert "MODEL.PIXEL_STD: [57.375, 57.12, 58.395]" in output
    cfg = load_config(f"{REPO_ROOT}/configs/shapes/faster_rcnn_R18_FPN_tiny.yaml")
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(out))  # detectron2's key matching
    stem = model.backbone.bottom_up.stem.conv1.weight
    torch.testing.assert_close(stem, net.conv1.weight.flip(1))
    code, output = run_in_this_process(tool, str(src), str(out))
    assert code != 0 and "exists" in output  # nothing is replaced


def test_not_a_torchvision_classifier():
    with pytest.raises(ValueError, match="Not a torchvision ResNet or RegNet"):
        convert_torchvision({"backbone.weight": torch.zeros(1)})
