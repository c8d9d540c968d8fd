"""
Two-process CPU training through train_net.py's setup and Trainer (used by test_distributed.py).

    python tests/engine/ddp_train.py --report-dir DIR --config-file CFG [KEY VALUE ...]

Each process writes DIR/rank{R}.json (what it saw) and DIR/rank{R}_{init,final}.pth (its model
without DDP, before and after training).
"""

import json
import os
import sys

import detectron2.utils.comm as comm
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import train_net  # noqa: E402
from shared_kd.engine import launch  # noqa: E402


def worker(args):
    cfg = train_net.setup(args)
    trainer = train_net.Trainer(cfg)
    trainer.resume_or_load(resume=False)
    ddp = trainer._trainer.model
    model = trainer.checkpointer.model
    rank = comm.get_rank()
    torch.save(model.state_dict(), os.path.join(args.report_dir, f"rank{rank}_init.pth"))
    trainer.train()
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
    launch(worker, args.num_gpus, dist_url="auto", args=(args,))
