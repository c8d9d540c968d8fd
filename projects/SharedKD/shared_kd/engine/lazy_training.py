"""
Training and evaluation of a LazyConfig (``.py``) model with ``train_net.py``, as detectron2's
``tools/lazyconfig_train_net.py`` does them: ``instantiate`` the model, optimizer and loaders;
``AMPTrainer`` when ``train.amp.enabled``, else ``SimpleTrainer``; ``create_ddp_model``; its
hooks, with ``EvalHook`` running ``dataloader.evaluator``. Added for every model, as for yaml
ones: the output-folder check (``--resume`` / ``--overwrite``), atomic ``weights_only``
checkpoints, re-seeding at checkpoint boundaries, checks of the config before anything is
built; and for a distillation model the student's export when training ends. Unlike the yaml
Trainer, the data stream is the config's own loader: a resumed run restarts it.

The config has detectron2's LazyConfig training layout: ``model``, ``dataloader.{train,test,
evaluator}``, ``optimizer``, ``lr_multiplier`` and ``train`` (``configs/common/train.py``).
"""

import copy
import logging
import os
from typing import Optional

import detectron2.utils.comm as comm
import torch
from detectron2.config import instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, default_setup, default_writers, hooks
from detectron2.evaluation import COCOEvaluator, inference_on_dataset, print_csv_format
from detectron2.utils.logger import setup_logger
from omegaconf import DictConfig

from ..benchmark import write_cost_report
from ..checkpoint import SafeCheckpointer
from ..config import resolve_config_file
from ..detector_config import DetectorConfig
from ..lazy import LazyConfigError, load_lazy_config, target_name, target_of
from ..losses.feature_distance import DEFAULT_LOG_PERIOD
from ..names import DISTILL_META_ARCH
from ..utils.env import detectron2_has_compiled_ops
from .hooks import ExportStudentHook, ReseedHook
from .launch import create_ddp_model
from .output_dir import check_output_dir

__all__ = ["build_lazy_trainer", "do_test", "lazy_main", "setup_lazy"]

logger = logging.getLogger(__name__)

# The keys of detectron2's configs/common/train.py that training reads.
TRAIN_KEYS = ("output_dir", "init_checkpoint", "max_iter", "amp", "ddp", "checkpointer")


def _check(cfg: DictConfig, source: str, eval_only: bool) -> None:
    """Raise a :class:`LazyConfigError` naming what the config lacks for this run."""
    needed = (
        ("model", "dataloader", "train")
        if eval_only
        else (
            "model",
            "dataloader",
            "optimizer",
            "lr_multiplier",
            "train",
        )
    )
    missing = [k for k in needed if k not in cfg]
    missing += [f"train.{k}" for k in TRAIN_KEYS if "train" in cfg and k not in cfg.train]
    if not eval_only and "dataloader" in cfg and "train" not in cfg.dataloader:
        missing.append("dataloader.train")
    if missing:
        raise LazyConfigError(
            f"LazyConfig {source!r} lacks {missing}: train_net.py reads a .py config as "
            "detectron2's tools/lazyconfig_train_net.py does (model, dataloader, optimizer, "
            "lr_multiplier and train, as in detectron2's configs/common/train.py)."
        )
    device = cfg.train.get("device", "cuda")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise LazyConfigError(
            f"train.device is {device!r} but this machine has no CUDA: pass train.device=cpu."
        )
    if not eval_only and cfg.train.amp.enabled and not str(device).startswith("cuda"):
        raise LazyConfigError(
            "train.amp.enabled is True, but detectron2's AMPTrainer trains on CUDA only: pass "
            "train.amp.enabled=False to train on the CPU."
        )
    model_format = cfg.model.get("input_format")
    mapper = cfg.dataloader.get("train", {}).get("mapper", {})
    data_format = mapper.get("image_format") if isinstance(mapper, DictConfig) else None
    if model_format and data_format and model_format != data_format:
        raise LazyConfigError(
            f"model.input_format is {model_format!r} but dataloader.train.mapper.image_format "
            f"is {data_format!r}: the model would read its images in another channel order."
        )


def setup_lazy(args) -> DictConfig:
    """
    The LazyConfig of ``args.config_file`` with ``args.opts`` (``key=value``) applied and
    checked, then detectron2's ``default_setup`` (logger, ``config.yaml``, seed).
    """
    args.config_file = resolve_config_file(args.config_file)  # model_zoo:<path>, logged below
    cfg = load_lazy_config(args.config_file, args.opts)
    _check(cfg, args.config_file, args.eval_only)
    output_dir = cfg.train.output_dir
    if not args.eval_only:  # before default_setup writes anything into it
        overwrite = getattr(args, "overwrite", False)
        check_output_dir(output_dir, args.resume, overwrite, key="train.output_dir")
    default_setup(cfg, args)
    setup_logger(output=output_dir, distributed_rank=comm.get_rank(), name="shared_kd")
    return cfg


def _evaluator(cfg: DictConfig):
    """``dataloader.evaluator``; a ``COCOEvaluator`` writes under ``train.output_dir/inference``
    unless told otherwise, and uses pycocotools where detectron2 has no compiled ops."""
    node = copy.deepcopy(cfg.dataloader.evaluator)
    target = target_of(node)
    if isinstance(target, type) and issubclass(target, COCOEvaluator):
        if node.get("output_dir") is None:
            node.output_dir = os.path.join(cfg.train.output_dir, "inference")
        if not detectron2_has_compiled_ops():
            node.use_fast_impl = False  # the fast evaluator is C++ (detectron2._C)
    return instantiate(node)


def do_test(cfg: DictConfig, model) -> Optional[dict]:
    """Evaluate ``model`` on ``dataloader.test`` with ``dataloader.evaluator`` (if any)."""
    if "evaluator" not in cfg.dataloader:
        return None
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), _evaluator(cfg))
    print_csv_format(results)
    return results


def build_lazy_trainer(cfg: DictConfig, resume: bool = False):
    """
    The trainer of a LazyConfig run, with its hooks, resumed or initialised.

    Returns:
        (trainer, checkpointer, start_iter): ``trainer.train(start_iter, cfg.train.max_iter)``
        runs it; ``checkpointer.model`` is the model without DDP.
    """
    model = instantiate(cfg.model)
    logger.info(f"Model:\n{model}")
    model.to(cfg.train.get("device", "cuda"))
    cfg.optimizer.params.model = model  # DistillationDetector's parameters: student, losses
    try:
        optimizer = instantiate(cfg.optimizer)
    finally:  # the config is saved again (the student's export): it must not hold the model
        cfg.optimizer.params.model = None
    train_loader = instantiate(cfg.dataloader.train)
    ddp_model = create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(
        ddp_model, train_loader, optimizer
    )
    output_dir = cfg.train.output_dir
    # The trainer's state (iteration, optimizer, LR scheduler) is saved beside the model.
    checkpointer = SafeCheckpointer(model, output_dir, trainer=trainer)
    period = cfg.train.checkpointer.get("period", 5000)
    distill = target_name(cfg.model) == DISTILL_META_ARCH
    log_period = cfg.train.get("log_period", DEFAULT_LOG_PERIOD)
    if distill:
        model.set_log_period(log_period)
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            ReseedHook(cfg.train.get("seed", -1), period),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
            if comm.is_main_process()
            else None,
            # Before the final evaluation: the export must not depend on it succeeding.
            ExportStudentHook(cfg, model, output_dir) if distill else None,
            hooks.EvalHook(cfg.train.get("eval_period", 0), lambda: do_test(cfg, ddp_model)),
            hooks.PeriodicWriter(
                default_writers(output_dir, cfg.train.max_iter),
                period=log_period,
            )
            if comm.is_main_process()
            else None,
        ]
    )
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    # The checkpoint stores the iteration that had finished: continue at the next one.
    start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
    return trainer, checkpointer, start_iter


def lazy_main(args):
    """``train_net.py``'s ``main`` for a ``.py`` config."""
    cfg = setup_lazy(args)
    if args.eval_only:
        # No DDP wrapper: inference_on_dataset shards the images itself, and a DDP forward
        # (buffer broadcast) would wait on ranks that got no image.
        model = instantiate(cfg.model)
        model.to(cfg.train.get("device", "cuda"))
        SafeCheckpointer(model, save_dir=cfg.train.output_dir).resume_or_load(
            cfg.train.init_checkpoint, resume=args.resume
        )
        results = do_test(cfg, model)
        if comm.is_main_process() and "test" in cfg.dataloader:
            # What the evaluated model costs, beside its metrics (cost.json, cost.md).
            config = DetectorConfig(args.config_file, cfg, cfg.model)  # its test data
            write_cost_report(model, config, cfg.train.output_dir)
        return results
    trainer, _, start_iter = build_lazy_trainer(cfg, resume=args.resume)
    trainer.train(start_iter, cfg.train.max_iter)
    return None
