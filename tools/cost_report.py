#!/usr/bin/env python
"""
What a detector costs at inference, and the students against their teacher: parameters,
GFLOPs (as detectron2's tools/analyze_model.py counts them, over real test images), latency at
batch 1 (median and spread of warm runs) and peak memory, each model in a fresh process.

    python tools/cost_report.py --model teacher <config> <weights> \\
        --model "student + Shared-KD" <config> <weights> [--model NAME CONFIG WEIGHTS ...] \\
        [--reference teacher] [--num-images 5] [--latency-runs 20] [--device cpu|cuda] \\
        [--threads N] [--synthetic HxW] [--output-dir DIR]

Configs are yaml or LazyConfig .py (a distillation config measures its student); WEIGHTS may be
"-" for random weights (sizes and FLOPs do not depend on them). Writes cost.json and cost.md to
--output-dir (default: print only).
"""

import argparse
import json
import os

from shared_kd.benchmark import compare_costs, costs_markdown, measure_in_fresh_process
from shared_kd.utils.io import atomic_write


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument(
        "--model", nargs=3, action="append", required=True, metavar=("NAME", "CONFIG", "WEIGHTS")
    )
    parser.add_argument("--reference", help="the model the ratios divide by (default: the first)")
    parser.add_argument("--num-images", type=int, default=5, help="test images for the FLOPs")
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", help="default: each config's own (cpu without CUDA)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--output-dir", help="write cost.json and cost.md here")
    parser.add_argument(
        "--synthetic",
        metavar="HxW",
        help="random images of this size instead of the test set (e.g. 800x1333 for COCO)",
    )
    args = parser.parse_args(argv)
    names = [m[0] for m in args.model]
    if len(set(names)) != len(names):
        raise SystemExit(f"Model names must be distinct: {names}")
    costs = {}
    for name, config, weights in args.model:
        print(f"[cost] {name}: {config}", flush=True)
        costs[name] = measure_in_fresh_process(
            config_file=config,
            weights=None if weights == "-" else weights,
            device=args.device,
            num_images=args.num_images,
            latency_runs=args.latency_runs,
            warmup=args.warmup,
            threads=args.threads,
            synthetic=[int(v) for v in args.synthetic.split("x")] if args.synthetic else None,
        )
    rows = compare_costs(costs, args.reference or names[0])
    table = costs_markdown(rows)
    print(table)
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)

        def write(text):
            def to(path):
                with open(path, "w") as f:
                    f.write(text)

            return to

        atomic_write(os.path.join(args.output_dir, "cost.json"), write(json.dumps(rows, indent=2)))
        atomic_write(os.path.join(args.output_dir, "cost.md"), write(table + "\n"))
        print(f"[cost] wrote {args.output_dir}/cost.json and cost.md")
    return rows


if __name__ == "__main__":
    main()
