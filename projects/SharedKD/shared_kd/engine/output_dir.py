"""What a run writes into OUTPUT_DIR besides detectron2's files, and what it refuses to touch."""

import glob
import os
from typing import List

import detectron2.utils.comm as comm

from ..config import plain_detector_config
from ..export import write_configs
from ..names import AUTOENCODER_META_ARCH, DISTILL_META_ARCH

__all__ = [
    "OutputDirInUseError",
    "check_output_dir",
    "previous_run_files",
    "write_portable_config",
]

# Models that only this project can build: their config.yaml stays as detectron2 wrote it.
PROJECT_META_ARCHS = (DISTILL_META_ARCH, AUTOENCODER_META_ARCH)


class OutputDirInUseError(RuntimeError):
    """OUTPUT_DIR holds a previous run's checkpoints or results."""


def previous_run_files(output_dir: str) -> List[str]:
    """The files in ``output_dir`` that a training run writes (checkpoints, metrics, results)."""
    names = ["last_checkpoint", "metrics.json", "inference"]
    found = [n for n in names if os.path.exists(os.path.join(output_dir, n))]
    found += sorted(os.path.basename(p) for p in glob.glob(os.path.join(output_dir, "model_*.pth")))
    return found


def check_output_dir(
    output_dir: str, resume: bool, overwrite: bool, key: str = "OUTPUT_DIR"
) -> None:
    """
    Raise unless training may write to ``output_dir``: it holds no previous run, or the user
    asked to continue it (``--resume``) or to replace it (``--overwrite``). ``key`` names the
    setting in the message (``train.output_dir`` for a LazyConfig).
    """
    if resume or overwrite or "://" in output_dir:
        return
    found = previous_run_files(output_dir)
    if found:
        shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise OutputDirInUseError(
            f"{key} {output_dir!r} already holds a training run ({shown}). Pass --resume to "
            f"continue it, set {key} to a new folder, or pass --overwrite to train over it "
            "(its checkpoints and results are then replaced)."
        )


def write_portable_config(cfg) -> None:
    """
    After ``default_setup``: replace a plain model's (a teacher's, a baseline's)
    ``OUTPUT_DIR/config.yaml`` by one without this project's keys, which vanilla detectron2
    (``get_cfg().merge_from_file``, ``DefaultPredictor``, its ``demo/demo.py``) reads; see
    :func:`shared_kd.export.write_configs` (``config.sharedkd.yaml`` keeps the dataset key).
    Distillation and auto-encoder runs keep theirs: only this project builds those models (a
    distilled student is exported as a plain model when training ends).
    """
    if not comm.is_main_process() or cfg.MODEL.META_ARCHITECTURE in PROJECT_META_ARCHS:
        return
    write_configs(plain_detector_config(cfg), cfg.OUTPUT_DIR, cfg.DATASETS.COCO_INSTANCES)
