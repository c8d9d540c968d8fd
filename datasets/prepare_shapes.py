#!/usr/bin/env python
"""
Build the embedded shapes dataset (COCO format) into ``$DETECTRON2_DATASETS/shapes``.

Training and tests build it on first use anyway; this script builds it ahead of time, or with
another seed. Usage: ``python datasets/prepare_shapes.py [--root datasets] [--seed 0] [--force]``
"""

import argparse
import json
import os
import time

from shared_kd.data.shapes import build_shapes_dataset, default_root

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("--root", default=default_root(), help="datasets folder")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (0 is registered)")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args()
    start = time.perf_counter()
    folder = build_shapes_dataset(args.root, seed=args.seed, force=args.force)
    for split in ("train", "val"):
        with open(os.path.join(folder, "annotations", f"instances_{split}.json")) as f:
            coco = json.load(f)
        print(f"{split}: {len(coco['images'])} images, {len(coco['annotations'])} objects")
    print(f"shapes dataset ready in {folder} ({time.perf_counter() - start:.1f} s)")
