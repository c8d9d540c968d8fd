#!/usr/bin/env python3
"""
SharedKD on the GPU machine, in two halves (``tools/gpu_check.sh`` calls this file).

``prepare`` (here, where a package index is reachable)::

    tools/gpu_check.sh --prepare [--dest .gpu_wheels] [--force]

downloads into ``.gpu_wheels/`` (git-ignored) every wheel and sdist the GPU machine lacks, for its
Python 3.12 on manylinux x86_64: the requirements the check needs, read from the project's
requirement files (``requirements/base.txt``, and ``pytest`` from ``requirements/dev.txt``), that
are not in its package list (``tools/gpu_check_parts/device_packages.txt``, from the device
library's KINDS.md), with their own dependencies, pure-Python sdists built into wheels here, and
the detectron2 v0.6 sdist that ``tools/bootstrap.py`` installs as its fallback (fetched and
sha256-checked by bootstrap itself).
It then checks that the set is complete (:func:`check_prepared`) and writes ``MANIFEST.json``; a
second run with the same inputs does nothing.

the check (there, without network; ``--device cpu`` is the smoke run on a CPU machine)::

    tools/gpu_check.sh [--out DIR] [--device auto|cuda|cpu] [--budget S] [--parts ...]

installs from ``.gpu_wheels/`` only (``tools/bootstrap.py`` with pip set to ``--no-index
--find-links``; skipped when everything already imports), then runs, each part in its own
processes:

- (a) ``tests``: the ``gpu`` pytest marker's tests (``tests/gpu``);
- (b) ``train``: ``train_net.py`` on the tiny shapes configs, a teacher then a Shared-KD student,
  with ``SOLVER.AMP.ENABLED True`` on CUDA: finite losses, the student's AP, iterations/s; then
  the LazyConfig pair (``.py`` teacher in the guides' bf16, ``.py`` student under detectron2's
  ``AMPTrainer``, ``train.amp.enabled=True``) from the same teacher weights;
- (c) ``bench``: ``tools/benchmark.py`` at COCO scale (R101-FPN -> R50-FPN, random weights,
  800x1333, batches of 2 and 8, AMP) for Faster R-CNN and RetinaNet, with the guides' forward in
  their reduced precision and in fp32 for reference, and peak memory beside the paper's Table 4;
- (d) ``cost``: ``tools/cost_report.py`` for the deployment table of ``docs/BENCHMARK.md`` (R101
  teacher, R50 and R18 students at 800x1333: parameters, GFLOPs, latency, peak memory).

It writes ``gpu_check.json``, ``gpu_check.md`` and ``gpu_check.log`` to ``--out`` (``$OUT`` when
set, else ``output/gpu_check``) after every part, so that a run stopped by a time limit still
leaves its report, and prints the markdown at the end. Each part gets a share of ``--budget``
seconds; a part that fails or runs out of time is reported and the next one still runs.

This file is the command line; the jobs live in ``tools/gpu_check_parts/`` (one module each:
``prepare``, ``install``, ``parts``, ``runner``, ``report``; see its ``__init__.py``). Standard
library (and pip's vendored ``packaging``) only: it runs before anything is installed.
"""

import argparse
import importlib.util
import os
import subprocess
import sys


def _load_parts():
    """
    Register ``tools/gpu_check_parts/`` as the package ``gpu_check_parts``, loaded by its path:
    tools/ is not a package, and this works from any working directory, run as a script or
    loaded by path (the tests), without putting tools/ on ``sys.path``.
    """
    name = "gpu_check_parts"
    if name not in sys.modules:
        here = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(here, "__init__.py"), submodule_search_locations=[here]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package
        spec.loader.exec_module(package)


_load_parts()

# E402: the package is importable only once _load_parts() registered it.
from gpu_check_parts import install, parts  # noqa: E402
from gpu_check_parts.common import DEFAULT_DEST, PARTS, ROOT, log  # noqa: E402
from gpu_check_parts.prepare import check_prepared, prepare  # noqa: E402
from gpu_check_parts.runner import Check  # noqa: E402


def _csv(cast):
    return lambda text: [cast(x) for x in text.split(",") if x]


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="download what the GPU machine lacks")
    prep.add_argument("--dest", default=DEFAULT_DEST)
    prep.add_argument("--force", action="store_true", help="download again even if up to date")
    verify = sub.add_parser("verify", help="check a prepared folder offline")
    verify.add_argument("--dest", default=DEFAULT_DEST)

    chk = sub.add_parser("check", help="install offline, then run (a), (b), (c)")
    chk.add_argument(
        "--out", default=os.environ.get("OUT") or os.path.join(ROOT, "output", "gpu_check")
    )
    chk.add_argument("--work", default=os.path.join(ROOT, "output", "gpu_check_work"))
    chk.add_argument("--wheels", default=DEFAULT_DEST, help="the prepared folder")
    chk.add_argument(
        "--install-target",
        default="",
        help="install into this folder (on PYTHONPATH) instead of site-packages; the default "
        f"when site-packages is not writable: {install.TARGET}",
    )
    chk.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    chk.add_argument("--python", default="", help="interpreter for the parts (default: this one)")
    chk.add_argument(
        "--parts", type=_csv(str), default=list(PARTS), help="subset of " + ",".join(PARTS)
    )
    chk.add_argument(
        "--budget", type=float, default=None, help="seconds for everything (CUDA: 380)"
    )
    chk.add_argument("--tests-timeout", type=float, default=150)
    chk.add_argument("--train-iters", type=int, default=None, help="CUDA: 300; CPU: 2")
    chk.add_argument(
        "--bench-families", type=_csv(str), default=None, help="CUDA: faster_rcnn,retinanet"
    )
    chk.add_argument("--bench-batches", type=_csv(int), default=None, help="CUDA: 2,8; CPU: 2")
    chk.add_argument("--bench-size", default=None, help="HxW; CUDA: 800x1333; CPU: 128x128")
    chk.add_argument("--bench-iters", type=int, default=None, help="CUDA: 10; CPU: 1")
    chk.add_argument("--bench-warmup", type=int, default=None, help="CUDA: 3; CPU: 0")
    chk.add_argument("--bench-coco", type=int, default=None, help="1: COCO configs (CUDA default)")
    chk.add_argument("--bench-amp", type=int, default=None, help="1: --amp (CUDA default)")
    chk.add_argument("--bench-memory", type=int, default=None, help="1: peak memory (CUDA default)")
    return parser


def resolve_defaults(args, cuda):
    """Fill the options left unset: the full check on CUDA, a quick smoke run on the CPU."""
    defaults = {
        "budget": (380.0, 900.0),
        "train_iters": (300, 2),
        "bench_batches": ([2, 8], [2]),
        "bench_families": (list(parts.BENCH_CONFIGS), ["retinanet"]),
        "bench_size": ("800x1333", "128x128"),
        "bench_iters": (10, 1),
        "bench_warmup": (3, 0),
        "bench_coco": (1, 0),
        "bench_amp": (1, 0),
        "bench_memory": (1, 0),
    }
    for key, (on_cuda, on_cpu) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, on_cuda if cuda else on_cpu)
    return args


CUDA_PROBE = "import torch; print('CUDA', torch.cuda.is_available())"


def run_check(args):
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    cuda = args.device == "cuda"
    if args.device == "auto":  # torch is there before the install (the GPU machine has it)
        res = subprocess.run(
            [args.python or sys.executable, "-c", CUDA_PROBE], capture_output=True, text=True
        )
        cuda = "CUDA True" in res.stdout
    resolve_defaults(args, cuda)
    check = Check(args, "cuda" if cuda else "cpu")
    check.part("install", lambda: install.part_install(check))
    if "environment" not in check.report:
        install.probe_environment(check)
        check.save()
    check.part("tests", lambda: parts.part_tests(check))
    check.part("train", lambda: parts.part_train(check))
    check.part("bench", lambda: parts.part_bench(check))
    check.part("cost", lambda: parts.part_cost(check))
    check.save()
    with open(os.path.join(check.out, "gpu_check.md")) as f:
        print(f.read())
    log(f"wrote gpu_check.json, gpu_check.md and gpu_check.log to {check.out}")
    return 0 if check.report["ok"] else 1


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "prepare":
        prepare(args.dest, args.force)
        return 0
    if args.command == "verify":
        check_prepared(args.dest)
        return 0
    return run_check(args)


if __name__ == "__main__":
    sys.exit(main())
