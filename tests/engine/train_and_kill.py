"""
train_net.py, killed with SIGKILL just before iteration ``--kill-at`` (used by test_resume.py):
a crash between two checkpoints, with no chance to clean up.

    python tests/engine/train_and_kill.py --kill-at K --config-file CFG [KEY VALUE ...]
"""

import os
import signal
import sys

from detectron2.engine import HookBase

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import train_net  # noqa: E402


class KillAt(HookBase):
    def __init__(self, iteration):
        self.iteration = iteration

    def before_step(self):
        if self.trainer.iter == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    parser = train_net.argument_parser()
    parser.add_argument("--kill-at", type=int, required=True)
    args = parser.parse_args()
    cfg = train_net.setup(args)
    trainer = train_net.Trainer(cfg)
    trainer.register_hooks([KillAt(args.kill_at)])
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
