"""shared_kd.engine.trainer: the helpers of train_net.py's Trainer.

Training with it end to end (checkpoints, exact resume, DDP, the student's export) is in
test_train_net.py, test_resume.py, test_distributed.py and test_distill_train_net.py (slow).
"""

import itertools
import os

from detectron2.data.samplers import TrainingSampler
from detectron2.engine import hooks
from detectron2.utils.env import seed_all_rng
from torch.utils.data import DataLoader

from shared_kd.data.sampler import ResumableLoader, ResumableSampler
from shared_kd.engine.trainer import Trainer, _restart_data_iterator
from shared_kd.utils.env import detectron2_has_compiled_ops
from shared_kd.utils.testing import get_tiny_cfg


def _shapes_cfg(tmp_path):
    cfg = get_tiny_cfg("faster_rcnn")
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("shapes_train",), ("shapes_val",)
    cfg.DATALOADER.NUM_WORKERS = 0  # no worker processes
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.OUTPUT_DIR = str(tmp_path)
    return cfg


def _file_names(batches):
    return [[d["file_name"] for d in batch] for batch in batches]


def test_the_train_loader_resumes_at_an_iteration(tmp_path):
    cfg = _shapes_cfg(tmp_path)
    seed_all_rng(0)  # the sampler's seed, as train_net.py's setup gives every run the same
    loader = Trainer.build_train_loader(cfg)
    assert isinstance(loader, ResumableLoader) and loader.images_per_iter == 2
    assert isinstance(loader.sampler, ResumableSampler)
    assert isinstance(loader.sampler.sampler, TrainingSampler)
    uninterrupted = _file_names(itertools.islice(loader, 3))
    seed_all_rng(0)
    resumed = Trainer.build_train_loader(cfg)
    resumed.start_at(2)  # a run resumed from the checkpoint of iteration 2
    assert _file_names(itertools.islice(resumed, 1)) == uninterrupted[2:]
    # shapes images are all square: no aspect-ratio bucket holds a partial batch


def test_the_evaluator_is_cocos_with_the_fast_path_only_when_compiled(tmp_path):
    cfg = _shapes_cfg(tmp_path)
    evaluator = Trainer.build_evaluator(cfg, "shapes_val")
    assert evaluator._output_dir == os.path.join(str(tmp_path), "inference", "shapes_val")
    assert evaluator._use_fast_impl is detectron2_has_compiled_ops()
    assert Trainer.build_evaluator(cfg, "shapes_val", "elsewhere")._output_dir == "elsewhere"


class _Stateful:
    """What SimpleTrainer gives the checkpoint: the optimizer's state."""

    def __init__(self):
        self.loaded = None

    def state_dict(self):
        return {"optimizer": {"momentum": 1.5}}

    def load_state_dict(self, state):
        self.loaded = state


def test_the_optimizer_state_is_checkpointed_with_any_detectron2():
    trainer = Trainer.__new__(Trainer)  # only the state: no model, no data
    trainer.iter, trainer._hooks, trainer._trainer = 41, [hooks.IterationTimer()], _Stateful()
    state = trainer.state_dict()
    assert state["iteration"] == 41 and state["_trainer"] == {"optimizer": {"momentum": 1.5}}
    trainer.iter = 0
    trainer.load_state_dict(state)
    assert trainer.iter == 41 and trainer._trainer.loaded == {"optimizer": {"momentum": 1.5}}


class _NewTrainer:
    """detectron2 > 0.6: the data iterator is made at first use."""

    _data_loader_iter_obj = "old"

    @property
    def _data_loader_iter(self):
        if self._data_loader_iter_obj is None:
            self._data_loader_iter_obj = iter(self.data_loader)
        return self._data_loader_iter_obj


class _OldTrainer:
    """detectron2 0.6: the data iterator is made in __init__."""


def test_restart_data_iterator_for_both_detectron2s():
    new = _NewTrainer()
    new.data_loader = DataLoader([10, 11, 12])
    _restart_data_iterator(new)
    assert new._data_loader_iter_obj is None and next(new._data_loader_iter).tolist() == [10]

    old = _OldTrainer()
    old.data_loader = DataLoader([20, 21])
    old._data_loader_iter = "old"
    _restart_data_iterator(old)
    assert next(old._data_loader_iter).tolist() == [20]
