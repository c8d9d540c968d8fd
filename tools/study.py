#!/usr/bin/env python
"""
Run a seeded study: every arm of a study file at every seed, as plain ``train_net.py`` runs,
then ``study.md`` / ``study.json`` (final metrics, mean +- std over seeds) and ``study.png``
(box AP against iteration, mean and +- std band per arm).

    python tools/study.py configs/studies/faster_rcnn.yaml [--seeds 1 2 3] [--jobs 2]
        [--output-dir output/studies] [--arms NAME ...] [--dry-run] [--opts K V ...]

The guides (teachers) are trained first, once, with every thread; then ``--jobs`` runs go side
by side with ``--threads`` threads each (default: the cores divided among the jobs). Finished
runs are skipped and interrupted ones resume, so the command can be run again to complete or
extend a study (more seeds, more arms); the summary covers what has finished. See
``shared_kd.analysis.study`` for the study file's format.
"""

import argparse
import json
import os
import shlex
import sys
import time

from shared_kd.analysis.study import load_study_spec, plot_study, study_markdown, summarize_study
from shared_kd.data import ensure_shapes_dataset
from shared_kd.pipeline import run_stage, run_stages_side_by_side

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "[study]"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("spec", help="the study file (yaml)")
    parser.add_argument("--output-dir", default=os.path.join("output", "studies"))
    parser.add_argument("--seeds", type=int, nargs="+", help="override the file's seeds")
    parser.add_argument("--arms", nargs="+", help="run only these arms (by name)")
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side")
    parser.add_argument("--threads", type=int, help="threads per run (default: cores / jobs)")
    parser.add_argument("--dry-run", action="store_true", help="print the runs only")
    parser.add_argument(
        "--opts",
        nargs="+",
        default=[],
        metavar="KEY VALUE",
        help="overrides for every run, guides included (e.g. SOLVER.MAX_ITER 20 for a smoke run)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    spec_path = os.path.abspath(args.spec)
    os.chdir(ROOT)  # configs name their inputs relative to the repository root
    spec = load_study_spec(spec_path)
    if args.seeds:
        spec.seeds = list(args.seeds)
    out = os.path.join(args.output_dir, spec.name)
    start = time.perf_counter()
    print(f"{PREFIX} dataset: {ensure_shapes_dataset()}", flush=True)

    for run in spec.guide_runs(out):
        run.stage.opts = list(run.stage.opts) + list(args.opts)
        run_stage(run.stage, ROOT, prefix=PREFIX, dry_run=args.dry_run)

    runs = [r for r in spec.arm_runs(out) if not args.arms or r.arm in args.arms]
    for r in runs:
        r.stage.opts = list(r.stage.opts) + list(args.opts)
    failed = run_stages_side_by_side(
        [r.stage for r in runs],
        ROOT,
        prefix=PREFIX,
        jobs=args.jobs,
        threads=args.threads,
        dry_run=args.dry_run,
    )
    if args.dry_run:
        return None

    summary = summarize_study(spec, out)
    summary["wall_seconds_this_run"] = round(time.perf_counter() - start, 1)
    # quoted, so that it can be pasted into a shell (e.g. SOLVER.STEPS "(3,)")
    summary["command"] = shlex.join(["python", "tools/study.py", *(argv or sys.argv[1:])])
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "study.json"), "w") as f:
        json.dump(summary, f, indent=2)
    table = study_markdown(summary, summary["command"])
    with open(os.path.join(out, "study.md"), "w") as f:
        f.write(table)
    plot_study(summary, os.path.join(out, "study.png"))
    print(table)
    print(f"{PREFIX} wrote {out}/study.md, study.json, study.png")
    print(f"{PREFIX} this run took {summary['wall_seconds_this_run']:.0f} s")
    if failed:
        raise SystemExit(f"{PREFIX} failed runs: {failed} (see their stage.log)")
    return summary


if __name__ == "__main__":
    main()
