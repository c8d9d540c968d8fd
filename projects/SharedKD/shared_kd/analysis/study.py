"""
Seeded studies: a matrix of configs ("arms") x seeds, each run a plain ``train_net.py`` command
evaluated a few times during training, summarised as mean +- std over seeds.

A study is described by a yaml file (see ``configs/studies/``)::

    name: faster_rcnn                     # the study's folder under --output-dir
    seeds: [1, 2, 3]
    common_opts: [TEST.EVAL_PERIOD, 100]  # appended to every arm's overrides
    guides:                               # trained once (seed of their config), before the arms
      - name: teacher
        config: configs/shapes/faster_rcnn_R34_FPN_tiny_teacher.yaml
        folder: teachers/faster_rcnn      # optional, relative to --output-dir: shared by studies
    arms:                                 # the first arm is the reference of the deltas
      - name: student alone
        config: configs/shapes/faster_rcnn_R18_FPN_tiny.yaml
      - name: Shared-KD
        config: configs/shapes/sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.yaml
        opts: [MODEL.DISTILL.TEACHER.WEIGHTS, "{teacher}/model_final.pth"]
      - name: Shared-KD, clipped
        config: configs/shapes/sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.yaml
        opts: [SOLVER.CLIP_GRADIENTS.ENABLED, "True"]
        reference: student alone, clipped  # pair with another arm than the first

``{<guide name>}`` in an arm's (or a later guide's) overrides is replaced by that guide's
output folder (``<output-dir>/<study name>/<guide>``, or ``<output-dir>/<folder>``), ``{out}``
by the study's folder. This module builds the runs and summarises
their ``metrics.json``; ``tools/study.py`` runs them.
"""

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import yaml
from detectron2.config import LazyConfig

from ..lazy import is_lazy_config
from ..pipeline import TIME_FILE, Stage, seed_override

__all__ = [
    "StudyRun",
    "StudySpec",
    "load_study_spec",
    "mean_std",
    "plot_ap_curves",
    "plot_study",
    "read_curve",
    "study_markdown",
    "summarize_study",
]

# Metrics summarised per run: box AP, and mask AP where the model predicts masks.
SUMMARY_METRICS = ("bbox/AP", "bbox/AP50", "bbox/AP75", "segm/AP")


def slug(name: str) -> str:
    """A folder name for an arm: lower case, runs of other characters as one '_'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@dataclass
class StudyRun:
    """One arm at one seed (or a guide, with ``seed`` None)."""

    arm: str
    seed: Optional[int]
    stage: Stage


@dataclass
class StudySpec:
    name: str
    seeds: List[int]
    arms: List[dict]
    guides: List[dict] = field(default_factory=list)
    common_opts: List[str] = field(default_factory=list)

    def guide_runs(self, out: str) -> List[StudyRun]:
        """The guides' runs, in order (each may use earlier guides' folders)."""
        folders = self._folders(out)
        return [
            StudyRun(
                g["name"],
                None,
                Stage(
                    g["name"],
                    g["config"],
                    folders[g["name"]],
                    _fill(list(g.get("opts", [])), folders),
                    done_file=TIME_FILE,
                ),
            )
            for g in self.guides
        ]

    def arm_runs(self, out: str, seeds: Optional[Sequence[int]] = None) -> List[StudyRun]:
        """Every arm at every seed, seed-major (so that a partial study covers every arm)."""
        folders = self._folders(out)
        runs = []
        for seed in seeds if seeds is not None else self.seeds:
            for arm in self.arms:
                opts = _fill(list(arm.get("opts", [])) + list(self.common_opts), folders)
                stage = Stage(
                    f"{arm['name']} (seed {seed})",
                    arm["config"],
                    os.path.join(out, slug(arm["name"]), f"seed{seed}"),
                    opts + seed_override(arm["config"], seed),
                    done_file=TIME_FILE,  # written only when the run (and its evaluation) ended
                )
                runs.append(StudyRun(arm["name"], seed, stage))
        return runs

    def _folders(self, out: str) -> Dict[str, str]:
        folders = {"out": out}
        for g in self.guides:
            # "folder": relative to the folder of all studies, so that studies share a guide
            # (e.g. one teacher for the Shared-KD and the M-KD study of a detector family)
            folders[g["name"]] = (
                os.path.join(os.path.dirname(out), g["folder"])
                if g.get("folder")
                else os.path.join(out, slug(g["name"]))
            )
        return folders


def _fill(opts: List[str], folders: Dict[str, str]) -> List[str]:
    out = []
    for o in opts:
        o = str(o)
        for name, folder in folders.items():
            o = o.replace("{" + name + "}", folder)
        out.append(o)
    return out


def load_study_spec(path: str) -> StudySpec:
    """Read and check a study's yaml file."""
    with open(path) as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict) or not raw.get("arms"):
        raise ValueError(f"Study file {path!r} needs a mapping with a non-empty 'arms' list")
    names = [a.get("name") for a in raw["arms"]] + [g.get("name") for g in raw.get("guides", [])]
    if any(not n for n in names) or len(set(map(slug, names))) != len(names):
        raise ValueError(f"Study file {path!r}: every arm and guide needs a distinct name")
    for entry in raw["arms"] + raw.get("guides", []):
        if not entry.get("config"):
            raise ValueError(f"Study file {path!r}: {entry['name']!r} has no 'config'")
    arm_names = [a["name"] for a in raw["arms"]]
    for arm in raw["arms"]:
        if "reference" in arm and arm["reference"] not in arm_names:
            raise ValueError(
                f"Study file {path!r}: arm {arm['name']!r} names reference {arm['reference']!r}, "
                f"which is not an arm of the study (arms: {arm_names})"
            )
    return StudySpec(
        name=raw.get("name") or os.path.splitext(os.path.basename(path))[0],
        seeds=[int(s) for s in raw.get("seeds", [1, 2, 3])],
        arms=raw["arms"],
        guides=raw.get("guides", []),
        common_opts=[str(o) for o in raw.get("common_opts", [])],
    )


def _max_iter(output_dir: str) -> Optional[int]:
    """The run's length (SOLVER.MAX_ITER, or train.max_iter of a LazyConfig run), from the
    config.yaml train_net.py saved beside it."""
    path = os.path.join(output_dir, "config.yaml")
    if not os.path.isfile(path):
        return None
    if is_lazy_config(path):
        return LazyConfig.load(path).train.get("max_iter")
    with open(path) as f:
        return (yaml.safe_load(f) or {}).get("SOLVER", {}).get("MAX_ITER")


def read_curve(output_dir: str) -> Dict[str, List]:
    """
    The evaluations a run logged to ``metrics.json``, and its last health scalars.

    Returns:
        dict: ``iterations`` (the number of iterations trained at each evaluation) and, for
        each of :data:`SUMMARY_METRICS` the run logged, the list of values there; ``health``:
        the last value of every ``distill/tsm_*`` scalar.
    """
    path = os.path.join(output_dir, "metrics.json")
    curve: Dict[str, List] = {"iterations": []}
    health: Dict[str, float] = {}
    if not os.path.isfile(path):
        curve["health"] = health
        return curve
    max_iter = _max_iter(output_dir)
    evaluations: Dict[int, dict] = {}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            for k, v in row.items():
                if k.startswith("distill/tsm_"):
                    health[k] = v
            if "bbox/AP" in row:
                # detectron2 logs a periodic evaluation at the 0-based index of the iteration
                # it follows, the final one at MAX_ITER: count iterations trained instead.
                trained = row["iteration"] + 1
                if max_iter is not None:
                    trained = min(trained, max_iter)
                # a resumed run appends to metrics.json and logs again the evaluations after its
                # last checkpoint: keep the last one of each point
                evaluations[trained] = row
    for trained, row in sorted(evaluations.items()):
        curve["iterations"].append(trained)
        for m in SUMMARY_METRICS:
            if m in row:
                curve.setdefault(m, []).append(row[m])
    curve["health"] = health
    return curve


def mean_std(values: Sequence[float]) -> Dict[str, float]:
    """Mean and sample standard deviation (0 for a single value) of finite ``values``."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    mean = sum(vals) / len(vals)
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1) if len(vals) > 1 else 0.0
    return {"mean": mean, "std": math.sqrt(var), "n": len(vals)}


def summarize_study(spec: StudySpec, out: str) -> dict:
    """
    Mean +- std over seeds of each arm's final metrics, the paired difference of its final box
    AP to its reference arm (same seeds; the first arm unless the arm names another), its mean AP
    curve and its last health scalars.
    """
    runs = spec.arm_runs(out)
    curves = {(r.arm, r.seed): read_curve(r.stage.output_dir) for r in runs}
    default_reference = spec.arms[0]["name"]
    arms = []
    for arm in spec.arms:
        name = arm["name"]
        reference = arm.get("reference", default_reference)
        finals = {}
        for seed in spec.seeds:
            c = curves[name, seed]
            if c["iterations"]:
                finals[seed] = {m: c[m][-1] for m in SUMMARY_METRICS if m in c}
        summary = {
            m: mean_std([f[m] for f in finals.values() if m in f])
            for m in SUMMARY_METRICS
            if any(m in f for f in finals.values())
        }
        ref = {
            seed: curves[reference, seed]["bbox/AP"][-1]
            for seed in spec.seeds
            if curves[reference, seed]["iterations"]
        }
        deltas = [finals[seed]["bbox/AP"] - ref[seed] for seed in finals if seed in ref]
        # the mean curve over the seeds that reached each evaluation point
        points: Dict[int, List[float]] = {}
        for seed in finals:
            c = curves[name, seed]
            for it, ap in zip(c["iterations"], c["bbox/AP"]):
                points.setdefault(it, []).append(ap)
        health: Dict[str, List[float]] = {}
        for seed in finals:
            for k, v in curves[name, seed]["health"].items():
                health.setdefault(k, []).append(v)
        arms.append(
            {
                "name": name,
                "config": arm["config"],
                "opts": list(arm.get("opts", [])),
                "seeds_done": sorted(finals),
                "per_seed": {str(s): f for s, f in finals.items()},
                "summary": summary,
                "reference": reference,
                "delta_ap_vs_reference": mean_std(deltas) if name != reference else None,
                "curve": {
                    str(it): {**mean_std(v), "values": v} for it, v in sorted(points.items())
                },
                "health": {k: mean_std(v)["mean"] for k, v in sorted(health.items())},
            }
        )
    return {
        "study": spec.name,
        "seeds": spec.seeds,
        "reference": default_reference,
        "common_opts": spec.common_opts,
        "arms": arms,
    }


def _fmt(s: Optional[dict]) -> str:
    if not s or not s["n"]:
        return "-"
    return f"{s['mean']:.1f} +- {s['std']:.1f}"


def study_markdown(summary: dict, command: str = "") -> str:
    """The study's table: one row per arm, mean +- std over seeds."""
    has_segm = any("segm/AP" in a["summary"] for a in summary["arms"])
    head = ["config", "box AP", "AP50", "AP75"] + (["mask AP"] if has_segm else [])
    head += [f"AP - {summary['reference']} (paired)", "seeds", "per seed AP", "TSM health"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for a in summary["arms"]:
        s = a["summary"]
        cells = [a["name"], _fmt(s.get("bbox/AP")), _fmt(s.get("bbox/AP50"))]
        cells.append(_fmt(s.get("bbox/AP75")))
        if has_segm:
            cells.append(_fmt(s.get("segm/AP")))
        delta = a["delta_ap_vs_reference"]
        other = "" if a["reference"] == summary["reference"] else f" (vs {a['reference']})"
        cells.append("-" if delta is None else _fmt(delta) + other)
        cells.append(",".join(str(x) for x in a["seeds_done"]) or "-")
        cells.append(" / ".join(f"{f['bbox/AP']:.1f}" for f in a["per_seed"].values()) or "-")
        cells.append(_health_cell(a["health"]))
        lines.append("| " + " | ".join(cells) + " |")
    text = f"Study `{summary['study']}`: final `shapes_val` metrics, mean +- sample std over "
    text += f"seeds {', '.join(map(str, summary['seeds']))}.\n\n" + "\n".join(lines) + "\n"
    text += (
        "\nTSM health: at the end of training, the smallest mean gate (of either input) and the "
        "range of RMS(T') / RMS(T) over the fused levels, averaged over seeds.\n"
    )
    if command:
        text += f"\nReproduce: `{command}`\n"
    return text


def _health_cell(health: Dict[str, float]) -> str:
    gates = [v for k, v in health.items() if "_gate" in k]
    ratios = [v for k, v in health.items() if "_rms_ratio_" in k]
    if not ratios:
        return "-"
    return f"gate >= {min(gates):.2f}, RMS ratio {min(ratios):.2f}-{max(ratios):.2f}"


def plot_ap_curves(
    series: Sequence[tuple], path: str, title: str, ylabel: str = "box AP (mean +- std over seeds)"
) -> str:
    """
    AP against iterations trained, one line per series, with its +- std band where given.

    Args:
        series: ``(label, iterations, values, stds or None)`` tuples, the three lists of equal
            length.
        path: the PNG to write.

    Returns:
        str: ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, its, values, stds in series:
        if not its:
            continue
        (line,) = ax.plot(its, values, marker="o", label=label)
        if stds is not None:
            ax.fill_between(
                its,
                [m - s for m, s in zip(values, stds)],
                [m + s for m, s in zip(values, stds)],
                color=line.get_color(),
                alpha=0.15,
            )
    ax.set_xlabel("iterations trained")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_study(summary: dict, path: str) -> str:
    """AP against iteration for each arm: the mean over seeds and its +- std band. Writes PNG."""
    series = [
        (
            f"{a['name']} (n={len(a['seeds_done'])})",
            [int(i) for i in a["curve"]],
            [p["mean"] for p in a["curve"].values()],
            [p["std"] for p in a["curve"].values()],
        )
        for a in summary["arms"]
        if a["curve"]
    ]
    return plot_ap_curves(series, path, f"study {summary['study']}")
