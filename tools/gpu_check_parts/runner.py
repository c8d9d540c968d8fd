"""
The check's state on the device: options, the device, the time budget, the processes each part
starts (:meth:`Check.run`), and the report files written after every part (:meth:`Check.save`).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

from .common import ROOT, log
from .report import format_markdown


class Check:
    """The check's state: options, the device, the time budget, the report and the log."""

    # Share of the remaining budget each part leaves to the parts after it: a part that hangs
    # must not starve them.
    LEAVE_FOR_LATER = {"install": 0.7, "tests": 0.6, "train": 0.5, "bench": 0.15, "cost": 0.0}

    def __init__(self, args, device):
        self.args = args
        self.device = device
        self.py = args.python or sys.executable
        self.out = os.path.abspath(args.out)
        self.work = os.path.abspath(args.work)
        os.makedirs(self.out, exist_ok=True)
        shutil.rmtree(self.work, ignore_errors=True)
        os.makedirs(self.work)
        self.start = time.monotonic()
        self.log_path = os.path.join(self.out, "gpu_check.log")
        open(self.log_path, "w").close()
        self.report = {
            "version": 1,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "device": device,
            "budget_s": args.budget,
            "settings": {k: v for k, v in vars(args).items() if k.startswith(("train", "bench"))},
            "parts": {},
        }

    def elapsed(self):
        return time.monotonic() - self.start

    def remaining(self):
        return self.args.budget - self.elapsed()

    def allowance(self, part):
        """Seconds part may use now: the budget left, less what the later parts keep."""
        return self.remaining() * (1.0 - self.LEAVE_FOR_LATER[part])

    def run(self, name, cmd, timeout, env=None):
        """
        Run ``cmd`` from the repository root in its own process group (on a timeout the whole
        group is killed: data-loader and memory-measurement children too); its output goes to
        the log. Returns rc (None on a timeout), output, its tail and the seconds taken.
        """
        timeout = max(1.0, timeout)
        merged = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        t0 = time.monotonic()
        with open(self.log_path, "a") as logf:
            logf.write(f"\n===== {name}: $ {' '.join(cmd)}\n")
            logf.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=merged,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            try:
                output, _ = proc.communicate(timeout=timeout)
                rc, timed_out = proc.returncode, False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                output, _ = proc.communicate()
                rc, timed_out = None, True
            logf.write(output)
            logf.write(f"\n===== {name}: rc {rc}{' (timed out)' if timed_out else ''}\n")
        seconds = time.monotonic() - t0
        log(f"{name}: rc {rc}{' (timed out)' if timed_out else ''} in {seconds:.0f} s")
        return {
            "rc": rc,
            "timed_out": timed_out,
            "seconds": round(seconds, 1),
            "output": output,
            "tail": "\n".join(output.strip().splitlines()[-15:]),
        }

    def python(self, name, args, timeout, env=None):
        return self.run(name, [self.py, *args], timeout, env)

    def save(self):
        self.report["elapsed_s"] = round(self.elapsed(), 1)
        parts = self.report["parts"]
        self.report["ok"] = bool(parts) and all(p.get("ok") for p in parts.values())
        with open(os.path.join(self.out, "gpu_check.json"), "w") as f:
            json.dump(self.report, f, indent=2)
        with open(os.path.join(self.out, "gpu_check.md"), "w") as f:
            f.write(format_markdown(self.report))

    def part(self, name, fn):
        """Run part ``name`` (``fn()`` returns its report) unless deselected or out of time."""
        if name not in self.args.parts:
            return
        if self.remaining() < 5:
            self.report["parts"][name] = {"ok": False, "skipped": "time budget spent"}
        else:
            log(f"--- {name} ({self.remaining():.0f} s of the budget left)")
            t0 = time.monotonic()
            try:
                result = fn()
            except Exception as e:  # a broken part must not lose the others' report
                result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            result["seconds"] = round(time.monotonic() - t0, 1)
            self.report["parts"][name] = result
        self.save()
