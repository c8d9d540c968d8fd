"""
Multi-process CPU training through train_net.py's setup and trainers (used by
test_distributed.py and test_multi_machine.py), for yaml and LazyConfig (.py) configs.

    python tests/engine/ddp_train.py --report-dir DIR --config-file CFG [--num-gpus N]
        [--num-machines M --machine-rank R --dist-url tcp://HOST:PORT] [overrides ...]

Each process writes DIR/rank{R}.json (what it saw) and DIR/rank{R}_{init,final}.pth (its model
without DDP, before and after training). Without --num-machines the processes find a free port.
"""

import json
import os
import sys

import detectron2.utils.comm as comm
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import train_net  # noqa: E402
from shared_kd.engine import build_lazy_trainer, launch, setup_lazy  # noqa: E402
from shared_kd.lazy import is_lazy_config  # noqa: E402


def worker(args):
    rank = comm.get_rank()
    if is_lazy_config(args.config_file):
        cfg = setup_lazy(args)
        trainer, checkpointer, start = build_lazy_trainer(cfg)
        ddp, model = trainer.model, checkpointer.model
        run = lambda: trainer.train(start, cfg.train.max_iter)  # noqa: E731
    else:
        cfg = train_net.setup(args)
        trainer = train_net.Trainer(cfg)
        trainer.resume_or_load(resume=False)
        ddp, model = trainer._trainer.model, trainer.checkpointer.model
        run = trainer.train
    torch.save(model.state_dict(), os.path.join(args.report_dir, f"rank{rank}_init.pth"))
    run()
    torch.save(model.state_dict(), os.path.join(args.report_dir, f"rank{rank}_final.pth"))
    teacher_params = {id(p) for p in model.teacher.parameters()}
    report = {
        "world_size": comm.get_world_size(),
        "backend": torch.distributed.get_backend(),
        "wrapper": type(ddp).__name__,
        "device_ids": getattr(ddp, "device_ids", "n/a"),
        "teacher_in_ddp": any(id(p) in teacher_params for p in ddp.parameters()),
        "teacher_training": model.teacher.training,
    }
    with open(os.path.join(args.report_dir, f"rank{rank}.json"), "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    parser = train_net.argument_parser()
    parser.add_argument("--report-dir", required=True)
    args = parser.parse_args()
    launch(
        worker,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url if args.num_machines > 1 else "auto",
        args=(args,),
    )
