#!/usr/bin/env python
"""
A qualitative grid: rows are images, columns the ground truth and each model's detections.

    python tools/qualitative.py --model teacher T.yaml T.pth \\
        --model "student alone" S.yaml S.pth --model "Shared-KD student" D.yaml D.pth \\
        --output-dir DIR [--dataset shapes_val] [--num-images 4 | --image-ids 3 17] \\
        [--score-threshold 0.5] [--device cpu]

Writes ``DIR/qualitative.png``. Images are the first N of the dataset (default: the first
model config's ``DATASETS.TEST[0]``) or those named by ``--image-ids``. Each model runs as in
evaluation (its own test-time resize); checkpoints may be plain detectron2 ones or SharedKD
distillation ones (``student.*`` keys).
"""

import argparse
import os

from shared_kd.analysis.qualitative import qualitative_grid


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.strip().split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.strip().split("\n")[1:]),
    )
    parser.add_argument(
        "--model",
        nargs=3,
        action="append",
        required=True,
        metavar=("NAME", "CONFIG", "WEIGHTS"),
        help="a column: title, yaml config, checkpoint",
    )
    parser.add_argument("--dataset", default=None, help="a registered dataset")
    parser.add_argument("--num-images", type=int, default=4, help="the first N images")
    parser.add_argument("--image-ids", nargs="+", default=None, help="these images instead")
    parser.add_argument("--score-threshold", type=float, default=0.5, help="draw scores >= it")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the configs')")
    parser.add_argument("--output-dir", required=True, help="where to write qualitative.png")
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error("--num-images must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    path, (rows, cols) = qualitative_grid(
        [tuple(m) for m in args.model],
        os.path.join(args.output_dir, "qualitative.png"),
        dataset=args.dataset,
        num_images=args.num_images,
        image_ids=args.image_ids,
        score_threshold=args.score_threshold,
        device=args.device,
    )
    print(f"Wrote {path} ({rows} images x {cols} columns)")
    return path


if __name__ == "__main__":
    main()
