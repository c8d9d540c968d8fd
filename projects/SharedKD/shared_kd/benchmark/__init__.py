"""
What distillation costs and what it buys, measured:

- :mod:`.training`: the cost of a training iteration (the student alone, the guides' forward,
  the distillation step, the losses alone), ``tools/benchmark.py``;
- :mod:`.inference`: the cost of a trained model at inference (parameters, GFLOPs, latency,
  peak memory), for the teacher, the student alone and the distilled student side by side,
  ``tools/cost_report.py``.
"""

from .inference import (
    compare_costs,
    costs_markdown,
    inference_cost,
    load_test_images,
    measure_detector,
    measure_in_fresh_process,
    write_cost_report,
)
from .training import (
    FP32_GUIDES,
    FP32_GUIDES_LABEL,
    LOSS_SHARE_TARGET,
    MEASUREMENTS,
    OVERHEAD_TARGET,
    build_distiller,
    build_random_guides,
    build_student,
    calibrate_frozen_bn,
    format_report,
    judge_targets,
    load_batch,
    load_config,
    peak_memory,
    run_benchmark,
    synthetic_batch,
)

__all__ = [
    "FP32_GUIDES",
    "FP32_GUIDES_LABEL",
    "LOSS_SHARE_TARGET",
    "MEASUREMENTS",
    "OVERHEAD_TARGET",
    "build_distiller",
    "build_random_guides",
    "build_student",
    "calibrate_frozen_bn",
    "compare_costs",
    "costs_markdown",
    "format_report",
    "inference_cost",
    "judge_targets",
    "load_batch",
    "load_config",
    "load_test_images",
    "measure_detector",
    "measure_in_fresh_process",
    "peak_memory",
    "run_benchmark",
    "synthetic_batch",
    "write_cost_report",
]
