#!/usr/bin/env python
"""
Convert a torchvision ImageNet ResNet or RegNet into detectron2 backbone weights, for a student
that starts from ImageNet instead of random weights (no hand conversion, no channel-flip step).

    python tools/convert_torchvision.py resnet18-f37072fd.pth R-18-torchvision.pth [--format BGR]

The input is a torchvision state dict (the .pth torchvision downloads, or
``torch.save(torchvision.models.resnet18(weights=...).state_dict(), path)``); the output a
checkpoint that ``MODEL.WEIGHTS`` (yaml) or ``train.init_checkpoint`` (.py) names, read with
detectron2's key matching into ``backbone.bottom_up``. ``--format`` is the student's input
format; the tool prints the pixel mean and std the student's config must use with it.
"""

import argparse
import os

import torch

from shared_kd.checkpoint import load_checkpoint_file
from shared_kd.torchvision_weights import convert_torchvision, student_settings
from shared_kd.utils.io import atomic_write


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("input", help="a torchvision ResNet or RegNet state dict (.pth)")
    parser.add_argument("output", help="the detectron2 checkpoint to write (.pth)")
    parser.add_argument(
        "--format", default="BGR", choices=("BGR", "RGB"), help="the student's INPUT.FORMAT"
    )
    args = parser.parse_args(argv)
    if os.path.exists(args.output):
        raise SystemExit(f"{args.output} exists: give another output path (nothing is replaced)")
    state = load_checkpoint_file(args.input)  # weights_only
    weights = convert_torchvision(state.get("state_dict", state), args.format)
    checkpoint = {"model": weights, "__author__": "torchvision", "matching_heuristics": True}
    atomic_write(args.output, lambda p: torch.save(checkpoint, p))
    print(f"Wrote {len(weights)} tensors to {args.output}. Student config:")
    for key, value in student_settings(args.format).items():
        print(f"  {key}: {value}")
    print("  MODEL.RESNETS.STRIDE_IN_1X1: False  # ResNet-50 and deeper: torchvision's stride")


if __name__ == "__main__":
    main()
