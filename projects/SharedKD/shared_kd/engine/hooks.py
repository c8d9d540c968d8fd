"""Trainer hooks for distillation runs."""

import logging
import os

import detectron2.utils.comm as comm
import numpy as np
from detectron2.engine import HookBase, hooks
from detectron2.utils.env import seed_all_rng

from ..export import export_student

__all__ = ["ExportStudentHook", "ReseedHook", "writer_period"]

logger = logging.getLogger(__name__)


class ExportStudentHook(HookBase):
    """When training completes, export the student to ``<output dir>/student`` (main process)."""

    def __init__(self, cfg, model, output_dir: str):
        """
        Args:
            cfg: the distillation config (yacs or Lazy).
            model: the DistillationDetector, not wrapped in DDP.
            output_dir: the run's folder (``OUTPUT_DIR``, ``train.output_dir``).
        """
        self._cfg = cfg
        self._model = model
        self._output_dir = output_dir

    def after_train(self):
        finished = self.trainer.iter + 1 >= self.trainer.max_iter
        if finished and comm.is_main_process():
            path = export_student(
                self._cfg, self._model.state_dict(), os.path.join(self._output_dir, "student")
            )
            logger.info(f"Exported the student to {path}")


class ReseedHook(HookBase):
    """
    Re-seed every random generator (python, numpy, torch) from (SEED, rank, iteration) at the
    first iteration of a run and at every checkpoint boundary.

    A run resumed from a periodic checkpoint then draws the same random numbers (augmentation
    with in-process data loading, proposal sampling, DGKD's guide dropping) as the uninterrupted
    run did from that iteration on. Nothing happens when ``SEED`` is negative (random runs).
    """

    def __init__(self, seed: int, period: int):
        """
        Args:
            seed: ``cfg.SEED``.
            period: ``cfg.SOLVER.CHECKPOINT_PERIOD``.
        """
        self._seed = seed
        self._period = period

    def before_step(self):
        it = self.trainer.iter
        if self._seed < 0 or not (it == self.trainer.start_iter or it % self._period == 0):
            return
        state = np.random.SeedSequence([self._seed, comm.get_rank(), it]).generate_state(1)
        seed_all_rng(int(state[0]) % 2**31)


def writer_period(hook_list):
    """
    The period of the ``PeriodicWriter`` among ``hook_list`` (how often the trainer writes
    scalars), or None when there is none (processes other than the main one write nothing).
    """
    for h in hook_list:
        if isinstance(h, hooks.PeriodicWriter):
            return h._period  # detectron2 keeps it private; v0.6 and main alike
    return None
