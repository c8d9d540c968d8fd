"""The Trainer of ``train_net.py``: detectron2's DefaultTrainer, made safe for distillation."""

import logging
import os
import weakref

import detectron2.utils.comm as comm
from detectron2.data import build_detection_train_loader
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase, hooks
from detectron2.evaluation import COCOEvaluator
from detectron2.utils.logger import setup_logger

from ..checkpoint import SafeCheckpointer
from ..data.checks import LOAD_ERRORS, DatasetError, check_datasets, dataset_error
from ..data.register import check_num_classes
from ..data.sampler import ResumableLoader, ResumableSampler, give_own_generator
from ..modeling import DistillationDetector
from ..utils.env import detectron2_has_compiled_ops
from .hooks import ExportStudentHook, ReseedHook, writer_period
from .launch import create_ddp_model

__all__ = ["Trainer"]

# detectron2 0.6's DefaultTrainer checkpoints the iteration and the hooks (the LR scheduler) but
# not the optimizer, so a resumed run restarted SGD's momentum; later versions save it under
# "_trainer", as this Trainer then does too.
_D2_SAVES_OPTIMIZER = DefaultTrainer.state_dict is not TrainerBase.state_dict

logger = logging.getLogger(__name__)


class Trainer(DefaultTrainer):
    """
    ``DefaultTrainer`` with, for every model (teacher, plain student, distilled student):

    - COCO evaluation (pycocotools when detectron2 has no compiled ops);
    - DDP that also wraps CPU models (GLOO processes, see :mod:`shared_kd.engine.launch`);
    - atomic checkpoints, loaded with ``weights_only`` (see
      :class:`~shared_kd.checkpoint.SafeCheckpointer`);
    - exact resume: the data stream continues at the checkpoint's iteration and the random
      generators are re-seeded at checkpoint boundaries (:class:`ReseedHook`);
    - datasets checked before training;

    and for a :class:`DistillationDetector`, the student's export at the end of training.
    """

    def __init__(self, cfg):
        # Fail before building models if the evaluation data is unusable: it is only read at
        # the end of training otherwise.
        check_datasets(cfg.DATASETS.TEST, "DATASETS.TEST")
        check_num_classes(cfg, cfg.DATASETS.TRAIN, "DATASETS.TRAIN")
        check_num_classes(cfg, cfg.DATASETS.TEST, "DATASETS.TEST")
        # DefaultTrainer has no override point for its DDP wrapper or its checkpointer, so its
        # __init__ is written out here with ours (create_ddp_model also wraps CPU models;
        # SafeCheckpointer saves atomically and loads with weights_only). These lines are
        # DefaultTrainer.__init__'s in detectron2 0.6 and upstream main alike; like it, the
        # SimpleTrainer/AMPTrainer get only (model, data_loader, optimizer), so the keyword
        # arguments that later versions added keep their defaults.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()  # as DefaultTrainer: without default_setup, d2 would log nothing
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())

        # In this order, as DefaultTrainer builds them.
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)

        model = create_ddp_model(model, broadcast_buffers=False)
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(
            model, data_loader, optimizer
        )

        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        # The trainer's state (iteration, scheduler, optimizer) is saved beside the model.
        self.checkpointer = SafeCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg

        self.register_hooks(self.build_hooks())

    @classmethod
    def build_train_loader(cls, cfg):
        """detectron2's training loader over a :class:`ResumableSampler`."""
        try:
            kwargs = build_detection_train_loader.from_config(cfg)
        except DatasetError:
            raise
        except LOAD_ERRORS as e:
            raise dataset_error(cfg.DATASETS.TRAIN, "DATASETS.TRAIN", e) from e
        sampler = ResumableSampler(kwargs["sampler"])
        kwargs["sampler"] = sampler
        loader = build_detection_train_loader(**kwargs)
        give_own_generator(loader)
        return ResumableLoader(loader, sampler, cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size())

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        # The fast evaluator is C++ (detectron2._C); pycocotools gives the same numbers, slower.
        return COCOEvaluator(
            dataset_name, output_dir=output_folder, use_fast_impl=detectron2_has_compiled_ops()
        )

    def build_hooks(self):
        ret = super().build_hooks()
        # First, so that every later hook and the step itself see the re-seeded generators.
        ret.insert(0, ReseedHook(self.cfg.SEED, self.cfg.SOLVER.CHECKPOINT_PERIOD))
        model = self.checkpointer.model  # the checkpointer holds the model without DDP
        if isinstance(model, DistillationDetector):
            # Before the final evaluation: the export must not depend on it succeeding.
            at = next(i for i, h in enumerate(ret) if isinstance(h, hooks.EvalHook))
            ret.insert(at, ExportStudentHook(self.cfg, model, self.cfg.OUTPUT_DIR))
            period = writer_period(ret)
            if period is not None:
                model.set_log_period(period)
        return ret

    def state_dict(self):
        ret = super().state_dict()
        if not _D2_SAVES_OPTIMIZER:
            ret["_trainer"] = self._trainer.state_dict()  # the optimizer (and AMP's scaler)
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if not _D2_SAVES_OPTIMIZER and "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])

    def resume_or_load(self, resume=True):
        """
        detectron2's ``resume_or_load``; a resumed run also continues the data stream where
        the checkpoint left it.
        """
        super().resume_or_load(resume=resume)
        loader = self._trainer.data_loader
        if self.start_iter > 0 and isinstance(loader, ResumableLoader):
            loader.start_at(self.start_iter)
            _restart_data_iterator(self._trainer)
            logger.info(f"Resumed the training data stream at iteration {self.start_iter}")


def _restart_data_iterator(simple_trainer):
    """Make the trainer's next batch come from a new ``iter(data_loader)``."""
    if isinstance(getattr(type(simple_trainer), "_data_loader_iter", None), property):
        simple_trainer._data_loader_iter_obj = None  # detectron2 > 0.6 creates it at first use
    else:  # detectron2 0.6 created it in __init__ (and data workers may have started)
        simple_trainer._data_loader_iter = iter(simple_trainer.data_loader)
