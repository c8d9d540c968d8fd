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

from shared_kd.pipeline import Stage, final_bbox_metrics, markdown_table, mkd_stages, run_stage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pipeline_stages(family):
    """M-KD's sequence with the baseline student (trained alone) before the M-KD student."""
    *guides, student = mkd_stages(family)
    baseline = os.path.join("configs", "shapes", f"{family}_R18_FPN_tiny.yaml")
    return [*guides, Stage.in_config_output_dir("baseline student", baseline), student]


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("--family", default="faster_rcnn", choices=["faster_rcnn", "retinanet"])
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args()
    os.chdir(ROOT)  # configs name their inputs relative to the repository root

    rows = []
    for stage in pipeline_stages(args.family):
        seconds = run_stage(stage, ROOT, prefix="[mkd_pipeline]", dry_run=args.dry_run)
        rows.append(
            {
                "stage": stage.name,
                "config": stage.config_file,
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
