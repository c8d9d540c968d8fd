"""Trainer hooks for distillation runs."""

import logging
import os

import detectron2.utils.comm as comm
from detectron2.engine import HookBase

from ..export import export_student

__all__ = ["ExportStudentHook"]

logger = logging.getLogger(__name__)


class ExportStudentHook(HookBase):
    """When training completes, export the student to ``OUTPUT_DIR/student`` (main process)."""

    def __init__(self, cfg, model):
        """
        Args:
            cfg: the distillation config.
            model: the DistillationDetector, not wrapped in DDP.
        """
        self._cfg = cfg
        self._model = model

    def after_train(self):
        finished = self.trainer.iter + 1 >= self.trainer.max_iter
        if finished and comm.is_main_process():
            path = export_student(
                self._cfg, self._model.state_dict(), os.path.join(self._cfg.OUTPUT_DIR, "student")
            )
            logger.info(f"Exported the student to {path}")
