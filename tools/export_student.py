#!/usr/bin/env python
"""
Export the student of any SharedKD distillation checkpoint as a plain detectron2 model.

    python tools/export_student.py --config-file <distillation config> \\
        --checkpoint <run>/model_0004999.pth --output-dir <run>/student_4999 [KEY VALUE ...]

Writes ``model_final.pth`` (the student's weights alone) and ``config.yaml`` (the student's
plain detectron2 config), which ``DefaultPredictor`` and detectron2's ``tools/train_net.py
--eval-only`` load without ``shared_kd``; for a LazyConfig (``.py``) run, a LazyConfig
``config.yaml`` of the student, with ``key=value`` overrides. Training runs do this by
themselves at the end, into ``OUTPUT_DIR/student``.

``--format torchscript`` / ``--format onnx`` (repeatable) also write ``model.ts`` /
``model.onnx``: the student traced with ``detectron2.export.TracingAdapter`` on the first image
of its test set, which runs with torch and torchvision alone (or under onnxruntime) and takes
one ``3 x H x W`` uint8 image in the student's input format; ``<file>.json`` names its outputs
(``shared_kd.deploy``: Faster/Mask R-CNN, RetinaNet and FCOS).
"""

import argparse
import os

from shared_kd.analysis.common import load_detector
from shared_kd.benchmark import load_test_images
from shared_kd.checkpoint import load_checkpoint_file
from shared_kd.config import load_config, resolve_config_file
from shared_kd.data.register import absolute_dataset_paths
from shared_kd.deploy import FORMATS, UNSUPPORTED, export_detector
from shared_kd.export import export_student
from shared_kd.lazy import is_lazy_config, load_lazy_config


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("--config-file", required=True, help="the distillation config")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint of that run")
    parser.add_argument("--output-dir", required=True, help="where to write the export")
    parser.add_argument(
        "--format",
        action="append",
        default=[],
        choices=sorted(FORMATS) + sorted(UNSUPPORTED),
        help="also write the student as a program that runs without detectron2 (repeatable)",
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="KEY VALUE (yaml) or key=value (.py) overrides"
    )
    args = parser.parse_args()
    for fmt in args.format:
        if fmt in UNSUPPORTED:
            raise SystemExit(f"--format {fmt}: {UNSUPPORTED[fmt]}")

    if is_lazy_config(resolve_config_file(args.config_file)):
        cfg = load_lazy_config(resolve_config_file(args.config_file), args.opts)
    else:
        cfg = load_config(args.config_file, args.opts)
        absolute_dataset_paths(cfg)  # the export's config.sharedkd.yaml works from any folder
    if not os.path.isfile(args.checkpoint):
        raise SystemExit(f"Checkpoint {args.checkpoint!r} not found")
    checkpoint = load_checkpoint_file(args.checkpoint)  # weights_only=True
    path = export_student(cfg, checkpoint["model"], args.output_dir)
    print(f"Exported the student to {path} and {os.path.dirname(path)}/config.yaml")
    if args.format:
        folder = os.path.dirname(path)
        model, config = load_detector(os.path.join(folder, "config.yaml"), path)
        image = load_test_images(config, 1)[0]["image"]
        for fmt in args.format:
            out = os.path.join(folder, "model" + FORMATS[fmt])
            info = export_detector(model, image, out, fmt, config.input_format)
            print(f"Wrote {out} ({fmt}; outputs {info['outputs']}, see {out}.json)")


if __name__ == "__main__":
    main()
