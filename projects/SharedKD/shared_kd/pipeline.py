"""
Multi-stage runs of ``train_net.py`` (teacher, then students, ...), as ``make demo``, the M-KD
pipeline and the studies chain them: each stage is one plain ``train_net.py`` command, skipped
when its output exists, resumed (``--resume``) when an earlier attempt was interrupted. Also the
M-KD stage sequence itself (:func:`mkd_stages`) and the AP tables of finished stages.
"""

import json
import math
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from .config import load_config, resolve_config_file
from .lazy import is_lazy_config, load_lazy_config

__all__ = [
    "METRICS",
    "Stage",
    "final_bbox_metrics",
    "markdown_table",
    "mkd_stages",
    "output_override",
    "recorded_seconds",
    "run_stage",
    "run_stages_side_by_side",
    "seed_override",
]

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
TIME_FILE = "stage_seconds.json"  # written beside the stage's outputs when it completes
SHAPES_CONFIGS = os.path.join("configs", "shapes")
# Done files: a run's final checkpoint, or for a distillation run the student it exports.
FINAL = "model_final.pth"
EXPORTED = os.path.join("student", FINAL)


def output_override(config_file: str, output_dir: str) -> List[str]:
    """The overrides that set a run's output folder: ``OUTPUT_DIR`` (yaml), ``train.output_dir``
    (LazyConfig)."""
    if is_lazy_config(resolve_config_file(config_file)):
        return [f"train.output_dir={output_dir}"]
    return ["OUTPUT_DIR", output_dir]


def seed_override(config_file: str, seed: int) -> List[str]:
    """
    The overrides that set a run's seed: ``SEED`` (yaml), ``train.seed`` (LazyConfig; added,
    ``+train.seed``, where the config leaves it out as detectron2's ``common/train.py`` does:
    ``default_setup`` reads it).
    """
    path = resolve_config_file(config_file)
    if is_lazy_config(path):
        has_seed = "seed" in load_lazy_config(path).get("train", {})
        return [f"{'' if has_seed else '+'}train.seed={seed}"]
    return ["SEED", str(seed)]


def config_output_dir(config_file: str) -> str:
    """The output folder a config names (``OUTPUT_DIR``, ``train.output_dir``)."""
    if is_lazy_config(resolve_config_file(config_file)):
        return load_lazy_config(resolve_config_file(config_file)).train.output_dir
    return load_config(config_file).OUTPUT_DIR


@dataclass
class Stage:
    """One ``train_net.py`` run."""

    name: str  # e.g. "teacher"
    config_file: str  # relative to the repository root
    output_dir: str
    # overrides: KEY VALUE pairs for a yaml config, key=value strings for a LazyConfig
    opts: Sequence[str] = field(default_factory=list)
    done_file: str = FINAL  # relative to output_dir: its presence means "done"
    env: Dict[str, str] = field(default_factory=dict)  # set for the run, e.g. OMP_NUM_THREADS

    @classmethod
    def in_config_output_dir(cls, name: str, config_file: str, **kwargs) -> "Stage":
        """The stage that runs ``config_file`` as it is, into the config's own OUTPUT_DIR."""
        return cls(name, config_file, config_output_dir(config_file), **kwargs)

    def is_done(self) -> bool:
        return os.path.isfile(os.path.join(self.output_dir, self.done_file))

    def command(self) -> List[str]:
        # --resume: an interrupted attempt continues from its last checkpoint (and train_net.py
        # refuses to start over a previous run's files without it).
        return [sys.executable, "train_net.py", "--config-file", self.config_file, "--resume"] + [
            *self.opts,
            *output_override(self.config_file, self.output_dir),
        ]


def mkd_stages(family: str = "faster_rcnn", out: Optional[str] = None) -> List[Stage]:
    """
    M-KD's training sequence on the shapes dataset, one ``configs/shapes/`` config per stage:
    teacher -> teaching assistant (exported as a student) -> teacher auto-encoder -> M-KD
    student.

    Args:
        family (str): the detector family of the configs, "faster_rcnn" or "retinanet".
        out (str or None): None: every stage runs in its config's OUTPUT_DIR and reads the
            earlier stages' outputs where the configs name them (the sequence run by hand). A
            folder: every stage runs in a sub-folder of it, and the later stages are pointed at
            the earlier ones' outputs there by overrides.

    Returns:
        list[Stage]: the teacher, the teaching assistant, the auto-encoder and the student.
    """
    sequence = [  # (name, config stem, folder under ``out``, done file)
        ("teacher", "{f}_R34_FPN_tiny_teacher", "teacher", FINAL),
        ("teaching assistant", "mkd_{f}_R34_to_R18_FPN96_tiny_ta", "mkd_assistant", EXPORTED),
        ("teacher auto-encoder", "ae_{f}_R34_FPN_tiny_teacher", "mkd_autoencoder", FINAL),
        ("M-KD student", "mkd_{f}_R34_to_R18_FPN_tiny", "mkd_student", EXPORTED),
    ]
    stages = []
    for name, stem, folder, done in sequence:
        config = os.path.join(SHAPES_CONFIGS, stem.format(f=family) + ".yaml")
        if out is None:
            stages.append(Stage.in_config_output_dir(name, config, done_file=done))
        else:
            stages.append(Stage(name, config, os.path.join(out, folder), done_file=done))
    if out is None:
        return stages
    teacher, assistant, autoencoder, student = stages
    # The configs name the earlier stages' outputs in their own OUTPUT_DIRs: point the later
    # stages at those under ``out`` instead.
    guide = ["MODEL.DISTILL.TEACHER.WEIGHTS", os.path.join(teacher.output_dir, FINAL)]
    ta = os.path.join(assistant.output_dir, "student")
    assistant.opts = list(guide)
    autoencoder.opts = list(guide)
    student.opts = guide + [
        "MODEL.DISTILL.ASSISTANTS.CONFIG_FILES",
        repr([f"{ta}/config.yaml"]),
        "MODEL.DISTILL.ASSISTANTS.WEIGHTS",
        repr([f"{ta}/model_final.pth"]),
        "MODEL.DISTILL.INHERIT_EXPLORE.AE_WEIGHTS",
        os.path.join(autoencoder.output_dir, FINAL),
    ]
    return stages


def _progress(line: str) -> Optional[str]:
    """
    The part of a train_net.py output line worth showing while a stage runs. Its console lines
    look like ``[11/21 12:22:35 d2.utils.events]:  eta: 0:01:02  iter: 19  total_loss: ...``.
    """
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)  # colour codes, if the logger adds them
    message = line.split("]: ", 1)[-1].strip()
    if "d2.utils.events" in line and " iter: " in line:
        parts = message.split()
        keep = {"eta:", "iter:", "total_loss:"}
        return " ".join(f"{p} {parts[i + 1]}" for i, p in enumerate(parts[:-1]) if p in keep)
    if message.startswith(("Start inference on", "Exported the student")):
        return message
    return None


def run_stage(
    stage: Stage, root: str, prefix: str = "[stage]", dry_run: bool = False
) -> Optional[float]:
    """
    Run ``stage`` from the repository ``root`` (configs name their inputs relative to it)
    unless it is done; its full output goes to ``<output_dir>/stage.log`` and its progress
    (iteration, ETA, loss) to stdout.

    Returns:
        float or None: the seconds it took, None if skipped.
    """
    cmd = stage.command()
    if stage.is_done():
        print(f"{prefix} {stage.name}: done, skipped ({stage.output_dir})", flush=True)
        return None
    print(f"{prefix} {stage.name}: {' '.join(cmd[1:])}", flush=True)
    if dry_run:
        return None
    os.makedirs(stage.output_dir, exist_ok=True)
    log_path = os.path.join(stage.output_dir, "stage.log")
    start = time.perf_counter()
    with open(log_path, "a") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **stage.env},
        )
        for line in proc.stdout:
            log.write(line)
            shown = _progress(line)
            if shown:
                print(f"{prefix} {stage.name}: {shown}", flush=True)
        code = proc.wait()
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"{prefix} {stage.name} failed (exit {code}); see {log_path}")
    with open(os.path.join(stage.output_dir, TIME_FILE), "w") as f:
        json.dump({"seconds": seconds}, f)
    print(f"{prefix} {stage.name}: finished in {seconds:.0f} s", flush=True)
    return seconds


def run_stages_side_by_side(
    stages: Sequence[Stage],
    root: str,
    prefix: str = "[stage]",
    jobs: int = 2,
    threads: Optional[int] = None,
    dry_run: bool = False,
) -> List[str]:
    """
    Run independent ``stages`` ``jobs`` at a time, each with ``threads`` intra-op threads
    (default: the machine's cores shared evenly), with :func:`run_stage`. On a 2-core machine
    two tiny runs at one thread each finish sooner than one after the other at two threads.

    Returns:
        list[str]: the names of the stages that failed (each failure is printed; one does not
        stop the others).
    """
    threads = threads or max(1, (os.cpu_count() or 1) // max(jobs, 1))
    for stage in stages:
        stage.env = {**stage.env, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    failed: List[str] = []

    def run_one(stage):
        try:
            run_stage(stage, root, prefix=prefix, dry_run=dry_run)
        except SystemExit as e:
            print(e, flush=True)
            failed.append(stage.name)

    with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        list(pool.map(run_one, stages))
    return failed


def recorded_seconds(output_dir: str) -> Optional[float]:
    """How long the stage that wrote ``output_dir`` took, as :func:`run_stage` recorded it."""
    path = os.path.join(output_dir, TIME_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)["seconds"]


def final_bbox_metrics(output_dir: str) -> Optional[Dict[str, float]]:
    """The last ``bbox/*`` results that train_net.py logged to ``metrics.json``, if any."""
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        return None
    found = None
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            if "bbox/AP" in row:
                found = {m: row.get(f"bbox/{m}") for m in METRICS}
    return found


def _finite(x) -> bool:
    return x is not None and math.isfinite(x)


def markdown_table(rows: Sequence[dict], first_column: str) -> str:
    """
    Rows of ``{"stage", "bbox": {metric: value} or None, "seconds": float or None}`` as a
    markdown table of AP metrics and training time.
    """
    lines = [
        f"| {first_column} | " + " | ".join(METRICS) + " | train time (s) |",
        "|---" * (len(METRICS) + 2) + "|",
    ]
    for r in rows:
        ap = r["bbox"] or {}
        # "-" also for NaN: COCOeval's AP of an area range with no object (e.g. APl here)
        cells = [f"{ap[m]:.1f}" if _finite(ap.get(m)) else "-" for m in METRICS]
        secs = f"{r['seconds']:.0f}" if r["seconds"] is not None else "-"
        lines.append(f"| {r['stage']} | " + " | ".join(cells) + f" | {secs} |")
    return "\n".join(lines)
