#!/usr/bin/env bash
# SharedKD's check on the GPU machine, in two halves (details: tools/gpu_check.py).
#
#   tools/gpu_check.sh --prepare [--dest DIR] [--force]
#       Here (a package index reachable): download into .gpu_wheels/ (git-ignored) every wheel
#       and sdist the GPU machine lacks, for its Python 3.12 on manylinux x86_64, and check that
#       the set is complete. `tools/gpu_check.sh --verify` checks an existing folder offline.
#
#   tools/gpu_check.sh [--out DIR] [--device auto|cuda|cpu] [--budget SECONDS] [--parts ...]
#       There (no network): install from .gpu_wheels/ only, then (a) the `gpu` tests, (b)
#       train_net.py on a tiny Shared-KD config with AMP, (c) tools/benchmark.py at COCO scale;
#       writes gpu_check.json, gpu_check.md and gpu_check.log to --out ($OUT when set) and
#       prints the markdown. Without CUDA (--device cpu) it is a quick smoke run of the same
#       steps (`make gpu-check` on a CPU machine; the test suite runs it too).
#
# On the device, in one `run` call, with carry [".gpu_wheels"]:
#   bash tools/gpu_check.sh --out "$OUT"
#
# PYTHON picks the interpreter (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
case "${1:-}" in
  --prepare) shift; exec "$PY" tools/gpu_check.py prepare "$@" ;;
  --verify) shift; exec "$PY" tools/gpu_check.py verify "$@" ;;
  -h|--help) exec "$PY" tools/gpu_check.py check --help ;;
esac
exec "$PY" tools/gpu_check.py check "$@"
