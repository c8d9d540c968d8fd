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
import subprocess
import sys
import time

from detectron2.config import get_cfg

from shared_kd.config import add_sharedkd_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (stage, config stem, the file whose presence means "done", relative to OUTPUT_DIR)
STAGES = [
    ("teacher", "{f}_R34_FPN_tiny_teacher", "model_final.pth"),
    ("teaching assistant", "mkd_{f}_R34_to_R18_FPN96_tiny_ta", "student/model_final.pth"),
    ("teacher auto-encoder", "ae_{f}_R34_FPN_tiny_teacher", "model_final.pth"),
    ("baseline student", "{f}_R18_FPN_tiny", "model_final.pth"),
    ("M-KD student", "mkd_{f}_R34_to_R18_FPN_tiny", "student/model_final.pth"),
]
METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]


def output_dir(config_file):
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    cfg.merge_from_file(config_file)
    return cfg.OUTPUT_DIR


def final_bbox_metrics(out_dir):
    """The last ``bbox/*`` results that train_net.py logged to metrics.json, if any."""
    path = os.path.join(out_dir, "metrics.json")
    if not os.path.isfile(path):
        return None
    found = None
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            if "bbox/AP" in row:
                found = {m: row.get(f"bbox/{m}") for m in METRICS}
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("--family", default="faster_rcnn", choices=["faster_rcnn", "retinanet"])
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args()
    os.chdir(ROOT)  # configs name their inputs relative to the repository root

    rows = []
    for stage, stem, done_file in STAGES:
        config = os.path.join("configs", "shapes", stem.format(f=args.family) + ".yaml")
        out = output_dir(config)
        # --resume: a stage interrupted earlier continues from its last checkpoint (train_net.py
        # refuses to start over a previous run's files without it).
        cmd = [sys.executable, "train_net.py", "--config-file", config, "--resume"]
        done = os.path.isfile(os.path.join(out, done_file))
        print(
            f"[mkd_pipeline] {stage}: {' '.join(cmd[1:])}" + ("  (done, skipped)" if done else "")
        )
        seconds = None
        if not done and not args.dry_run:
            start = time.perf_counter()
            os.makedirs(out, exist_ok=True)
            log_path = os.path.join(out, "pipeline_stage.log")
            with open(log_path, "w") as log:
                res = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
            seconds = time.perf_counter() - start
            if res.returncode != 0:
                sys.exit(f"[mkd_pipeline] {stage} failed (exit {res.returncode}); see {log_path}")
            print(f"[mkd_pipeline] {stage} finished in {seconds:.0f} s")
        rows.append(
            {"stage": stage, "config": config, "seconds": seconds, "bbox": final_bbox_metrics(out)}
        )
    if args.dry_run:
        return

    lines = [
        f"| stage ({args.family}, shapes_val) | " + " | ".join(METRICS) + " | train time (s) |",
        "|---" * (len(METRICS) + 2) + "|",
    ]
    for r in rows:
        ap = r["bbox"]
        cells = [f"{ap[m]:.1f}" if ap and ap[m] is not None else "-" for m in METRICS]
        secs = f"{r['seconds']:.0f}" if r["seconds"] is not None else "(earlier run)"
        lines.append(f"| {r['stage']} | " + " | ".join(cells) + f" | {secs} |")
    table = "\n".join(lines)
    print(table)
    base = os.path.join("output", "shapes", f"mkd_pipeline_{args.family}")
    with open(base + ".md", "w") as f:
        f.write(table + "\n")
    with open(base + ".json", "w") as f:
        json.dump(rows, f, indent=2)
    print(f"[mkd_pipeline] wrote {base}.md and {base}.json")


if __name__ == "__main__":
    main()
