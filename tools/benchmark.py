#!/usr/bin/env python
"""
Time what distillation adds to a training iteration, on one batch of the config's train loader.

    python tools/benchmark.py --config-file <distillation config> [--iters 20] [--warmup 5] \\
        [--output out.json] [--random-teacher] [--no-memory] [--num-threads N] [--amp] \\
        [--synthetic HxW] [KEY VALUE ...]

Measures the median wall time of (a) a training step of the student alone, (b) the guides'
forward, (c) a training step of the DistillationDetector and (d) the distillation losses'
forward + backward alone, the peak memory of (a) and (c) (each in a fresh process), and checks
(c) <= 1.02 x ((a) + (b)) and (d) <= 2% of (c). Prints markdown tables; ``--output`` writes
every number as JSON. ``--random-teacher`` builds the guides with random weights (no trained
teacher needed; timing does not depend on weights). ``--amp`` trains (a) and (c)
in detectron2's ``AMPTrainer``, as ``SOLVER.AMP.ENABLED`` does (CUDA only); ``--synthetic
800x1333`` times a batch of ``SOLVER.IMS_PER_BATCH`` random images of that size with random
boxes instead of the train loader's (no dataset needed).
See ``shared_kd/benchmark/training.py``.
"""

import argparse
import json
import os
import sys

import torch
from detectron2.utils.logger import setup_logger

import shared_kd  # noqa: F401  (registers the datasets, meta-architectures and losses)
from shared_kd.benchmark import format_report, load_config, run_benchmark, synthetic_batch


def _size(text):
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        msg = f"expected HEIGHTxWIDTH, e.g. 800x1333, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    return height, width


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("--config-file", required=True, help="a distillation config")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first")
    parser.add_argument("--output", default="", help="write the results to this JSON file")
    parser.add_argument(
        "--random-teacher",
        action="store_true",
        help="random weights for the teacher and teaching assistants (and the inherit/explore "
        "auto-encoder) instead of loading their trained weights",
    )
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the peak-memory measurements"
    )
    parser.add_argument(
        "--num-threads",
        type=int,
        default=0,
        help="torch.set_num_threads (default: torch's choice); on a shared machine, fewer "
        "threads than cores give steadier timings",
    )
    parser.add_argument(
        "--amp",
        action="store_true",
        help="train (a) and (c) in detectron2's AMPTrainer, as SOLVER.AMP.ENABLED does (CUDA only)",
    )
    parser.add_argument(
        "--synthetic",
        type=_size,
        default=None,
        metavar="HxW",
        help="time SOLVER.IMS_PER_BATCH random HxW images with random boxes instead of a batch "
        "of the config's train loader",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)

    setup_logger(name="shared_kd")
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)  # the peak-memory processes use as many
    cfg = load_config(args.config_file, args.opts)
    batch = None
    if args.synthetic is not None:
        batch = synthetic_batch(cfg, *args.synthetic, num_images=cfg.SOLVER.IMS_PER_BATCH)
    result = run_benchmark(
        cfg,
        iters=args.iters,
        warmup=args.warmup,
        random_teacher=args.random_teacher,
        memory=not args.no_memory,
        config_file=args.config_file,
        batch=batch,
        amp=args.amp,
    )
    result["opts"] = list(args.opts)
    result["synthetic"] = list(args.synthetic) if args.synthetic else None
    print(format_report(result))
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)
        print(f"Wrote {args.output}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
