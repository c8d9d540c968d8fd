"""Refuse to train into a folder that holds another run's results."""

import glob
import os
from typing import List

__all__ = ["OutputDirInUseError", "check_output_dir", "previous_run_files"]


class OutputDirInUseError(RuntimeError):
    """OUTPUT_DIR holds a previous run's checkpoints or results."""


def previous_run_files(output_dir: str) -> List[str]:
    """The files in ``output_dir`` that a training run writes (checkpoints, metrics, results)."""
    names = ["last_checkpoint", "metrics.json", "inference"]
    found = [n for n in names if os.path.exists(os.path.join(output_dir, n))]
    found += sorted(os.path.basename(p) for p in glob.glob(os.path.join(output_dir, "model_*.pth")))
    return found


def check_output_dir(output_dir: str, resume: bool, overwrite: bool) -> None:
    """
    Raise unless training may write to ``output_dir``: it holds no previous run, or the user
    asked to continue it (``--resume``) or to replace it (``--overwrite``).
    """
    if resume or overwrite or "://" in output_dir:
        return
    found = previous_run_files(output_dir)
    if found:
        shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise OutputDirInUseError(
            f"OUTPUT_DIR {output_dir!r} already holds a training run ({shown}). Pass --resume to "
            "continue it, set OUTPUT_DIR to a new folder, or pass --overwrite to train over it "
            "(its checkpoints and results are then replaced)."
        )
