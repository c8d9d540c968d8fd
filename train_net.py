#!/usr/bin/env python
"""
SharedKD training script, in the shape of detectron2's project ``train_net.py`` scripts.

Trains and evaluates a detector (a teacher, a plain student, or a distilled student) from one
yaml config:

    python train_net.py --config-file configs/shapes/faster_rcnn_R18_FPN_tiny.yaml
    python train_net.py --config-file <cfg> --eval-only MODEL.WEIGHTS <checkpoint>
    python train_net.py --config-file <cfg> --resume
    python train_net.py --config-file <cfg> --num-gpus 8 [--num-machines M --machine-rank R ...]

Trailing ``KEY VALUE`` pairs override the config, as in detectron2.
"""

import logging
import os

import detectron2.utils.comm as comm
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.engine import (
    DefaultTrainer,
    default_argument_parser,
    default_setup,
    hooks,
    launch,
)
from detectron2.evaluation import COCOEvaluator, verify_results
from detectron2.utils.logger import setup_logger

import shared_kd  # noqa: F401  (registers the shapes datasets)
from shared_kd.config import add_sharedkd_config
from shared_kd.engine import ExportStudentHook
from shared_kd.modeling import DistillationDetector
from shared_kd.utils.env import detectron2_has_compiled_ops

logger = logging.getLogger("shared_kd")


class Trainer(DefaultTrainer):
    """DefaultTrainer with COCO evaluation and, for distillation runs, the student's export."""

    def build_hooks(self):
        ret = super().build_hooks()
        model = self.checkpointer.model  # the checkpointer holds the model without DDP
        if isinstance(model, DistillationDetector):
            # Before the final evaluation: the export must not depend on it succeeding.
            at = next(i for i, h in enumerate(ret) if isinstance(h, hooks.EvalHook))
            ret.insert(at, ExportStudentHook(self.cfg, model))
        return ret

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        # The fast evaluator is C++ (detectron2._C); pycocotools gives the same numbers, slower.
        return COCOEvaluator(
            dataset_name, output_dir=output_folder, use_fast_impl=detectron2_has_compiled_ops()
        )


def setup(args):
    """Create the config from the file and the command line, then detectron2's default setup."""
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    # Log shared_kd's messages (teacher loading, export) like detectron2's own.
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="shared_kd")
    return cfg


def main(args):
    cfg = setup(args)
    if not detectron2_has_compiled_ops():
        logger.warning(
            "detectron2 has no compiled ops (e.g. the 0.6+noops fallback): COCO evaluation "
            "uses pycocotools; deformable conv and rotated boxes are unavailable."
        )

    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
