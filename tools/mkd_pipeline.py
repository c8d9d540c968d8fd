#!/usr/bin/env python
"""
The whole M-KD pipeline on the embedded shapes dataset, one ``train_net.py`` run per stage:

    teacher -> teaching assistant -> teacher auto-encoder -> baseline student -> M-KD student

    python tools/mkd_pipeline.py [--family faster_rcnn|retinanet] [--dry-run]

Each stage is skipped when its output already exists (delete the stage's OUTPUT_DIR to redo
it). Every stage is a plain ``train_net.py`` command with its config in ``configs/shapes/``, so
the same sequence runs by hand, or on COCO with the ``configs/COCO/`` files (see README).
At the end an AP table of every stage is printed and written to
``output/shapes/mkd_pipeline_<family>.{md,json}``.
"""

import argparse
import json
import os

from shared_kd.config import load_config
from shared_kd.engine.stages import Stage, final_bbox_metrics, markdown_table, run_stage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (stage, config stem, the file whose presence means "done", relative to OUTPUT_DIR)
STAGES = [
    ("teacher", "{f}_R34_FPN_tiny_teacher", "model_final.pth"),
    ("teaching assistant", "mkd_{f}_R34_to_R18_FPN96_tiny_ta", "student/model_final.pth"),
    ("teacher auto-encoder", "ae_{f}_R34_FPN_tiny_teacher", "model_final.pth"),
    ("baseline student", "{f}_R18_FPN_tiny", "model_final.pth"),
    ("M-KD student", "mkd_{f}_R34_to_R18_FPN_tiny", "student/model_final.pth"),
]


def output_dir(config_file):
    return load_config(config_file).OUTPUT_DIR


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("--family", default="faster_rcnn", choices=["faster_rcnn", "retinanet"])
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args()
    os.chdir(ROOT)  # configs name their inputs relative to the repository root

    rows = []
    for name, stem, done_file in STAGES:
        config = os.path.join("configs", "shapes", stem.format(f=args.family) + ".yaml")
        stage = Stage(name, config, output_dir(config), done_file=done_file)
        seconds = run_stage(stage, ROOT, prefix="[mkd_pipeline]", dry_run=args.dry_run)
        rows.append(
            {
                "stage": name,
                "config": config,
                "seconds": seconds,
                "bbox": final_bbox_metrics(stage.output_dir),
            }
        )
    if args.dry_run:
        return

    table = markdown_table(rows, f"stage ({args.family}, shapes_val)")
    print(table)
    base = os.path.join("output", "shapes", f"mkd_pipeline_{args.family}")
    with open(base + ".md", "w") as f:
        f.write(table + "\n")
    with open(base + ".json", "w") as f:
        json.dump(rows, f, indent=2)
    print(f"[mkd_pipeline] wrote {base}.md and {base}.json")


if __name__ == "__main__":
    main()
