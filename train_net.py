#!/usr/bin/env python
"""
SharedKD training script, in the shape of detectron2's project ``train_net.py`` scripts.

Trains and evaluates a detector (a teacher, a plain student, or a distilled student) from one
config, a yacs yaml or a LazyConfig ``.py``:

    python train_net.py --config-file configs/shapes/faster_rcnn_R18_FPN_tiny.yaml
    python train_net.py --config-file <cfg> --eval-only MODEL.WEIGHTS <checkpoint>
    python train_net.py --config-file <cfg> --resume
    python train_net.py --config-file <cfg> --num-gpus 8 [--num-machines M --machine-rank R ...]
    python train_net.py --config-file configs/shapes/faster_rcnn_R18_FPN_tiny.py train.max_iter=100

Trailing ``KEY VALUE`` pairs override a yaml config, as in detectron2's ``tools/train_net.py``;
``key=value`` pairs a ``.py`` config, as in its ``tools/lazyconfig_train_net.py``, whose
training loop (``shared_kd.engine.lazy_training``) runs those. Without GPUs,
``--num-gpus N`` starts N CPU processes (GLOO). A run refuses to write into an OUTPUT_DIR that
holds another run unless given ``--resume`` (continue it) or ``--overwrite`` (replace it).
"""

import logging

import detectron2.utils.comm as comm
from detectron2.engine import default_argument_parser, default_setup
from detectron2.evaluation import verify_results
from detectron2.utils.logger import setup_logger

import shared_kd  # noqa: F401  (registers the shapes datasets)
from shared_kd.benchmark import write_cost_report
from shared_kd.checkpoint import SafeCheckpointer
from shared_kd.config import load_config, resolve_config_file
from shared_kd.data import check_datasets
from shared_kd.data.register import (
    absolute_dataset_paths,
    check_num_classes,
    register_config_datasets,
)
from shared_kd.detector_config import DetectorConfig
from shared_kd.engine import Trainer, check_output_dir, launch, lazy_main, write_portable_config
from shared_kd.lazy import is_lazy_config
from shared_kd.utils.env import detectron2_has_compiled_ops

logger = logging.getLogger("shared_kd")

__all__ = ["Trainer", "argument_parser", "main", "setup"]


def argument_parser():
    """detectron2's ``default_argument_parser`` plus ``--overwrite``."""
    parser = default_argument_parser()
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="train even if OUTPUT_DIR holds a previous run (its checkpoints and results are "
        "replaced); without it, such a run stops before training unless --resume is given",
    )
    return parser


def setup(args):
    """Create the config from the file and the command line, then detectron2's default setup."""
    # get_cfg -> add_sharedkd_config -> merge_from_file -> merge_from_list
    cfg = load_config(args.config_file, args.opts)
    absolute_dataset_paths(cfg)  # so that saved and exported configs work from any folder
    cfg.freeze()
    register_config_datasets(cfg)  # DATASETS.COCO_INSTANCES, in every process
    if not args.eval_only:  # before default_setup writes anything into OUTPUT_DIR
        check_output_dir(cfg.OUTPUT_DIR, args.resume, getattr(args, "overwrite", False))
    default_setup(cfg, args)
    write_portable_config(cfg)  # a plain model's config.yaml, readable by vanilla detectron2
    # Log shared_kd's messages (teacher loading, export) like detectron2's own.
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="shared_kd")
    return cfg


def main(args):
    if is_lazy_config(resolve_config_file(args.config_file)):
        return lazy_main(args)
    cfg = setup(args)
    if not detectron2_has_compiled_ops():
        logger.warning(
            "detectron2 has no compiled ops (e.g. the 0.6+noops fallback): COCO evaluation "
            "uses pycocotools; deformable conv and rotated boxes are unavailable."
        )

    if args.eval_only:
        check_datasets(cfg.DATASETS.TEST, "DATASETS.TEST")
        check_num_classes(cfg, cfg.DATASETS.TEST, "DATASETS.TEST")
        model = Trainer.build_model(cfg)
        SafeCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
            # What the evaluated model costs, beside its metrics (cost.json, cost.md).
            write_cost_report(model, DetectorConfig(args.config_file, cfg), cfg.OUTPUT_DIR)
        return res

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
