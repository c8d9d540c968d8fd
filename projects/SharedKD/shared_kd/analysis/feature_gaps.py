"""
Feature gaps between FPN levels: how far apart are a teacher's and a student's levels, and the
student's levels among themselves?

Shared-KD's premise (cross-layer distillation inside the student) is that adjacent levels of the
student are closer to each other than a student level is to the teacher's level of the same
name, so that a student level is an easier guide for its neighbours than the teacher. This
module measures both on real images.

The distance is the one of METHODS.md's feature losses: the **aligned MSE**

    d(X, Y) = mean over elements of (A(X, like=Y) - A(Y, like=X))^2

where ``A`` is :func:`~shared_kd.layers.alignment.align_pair` (adaptive average pooling of the
larger map to the smaller one's size, and the first ``min(C_X, C_Y)`` channels of each). It is
what ``||.||^2`` means in ``L_ident`` and ``L_cross`` (a mean over elements, not a sum and not a
square root), computed per image and averaged over images.
"""

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from detectron2.data import DatasetCatalog, build_detection_test_loader
from detectron2.layers import ShapeSpec

from ..layers.alignment import align_pair
from ..losses.feature_distance import squared_distance
from ..utils.io import atomic_write
from .common import load_detector

__all__ = [
    "FeatureGaps",
    "aligned_mse",
    "backbone_features",
    "compute_feature_gaps",
    "default_levels",
    "feature_gaps_from_files",
    "gap_matrix",
    "plot_feature_gaps",
    "write_feature_gaps",
]

METRIC = "aligned_mse"
METRIC_DESCRIPTION = (
    "mean over elements of (A(X, like=Y) - A(Y, like=X))^2, A = adaptive average pooling of the "
    "larger map to the smaller one's size + the first min(C_X, C_Y) channels of each "
    "(METHODS.md's feature-loss distance); per image, averaged over images"
)
TEACHER_STUDENT_TITLE = "teacher level x student level"
STUDENT_STUDENT_TITLE = "student level x student level"


def aligned_mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """
    The aligned MSE between two feature maps, as METHODS.md's feature losses define ``||.||^2``.

    Symmetric in its arguments, and zero for identical maps. It is the feature losses' own
    distance: :func:`~shared_kd.losses.feature_distance.squared_distance` (no normalisation, no
    weighting) of the maps :func:`~shared_kd.layers.alignment.align_pair` aligns.

    Args:
        x: N x C_x x H_x x W_x.
        y: N x C_y x H_y x W_y.

    Returns:
        Tensor: a float32 scalar, the mean over all ``N x min(C) x min(H) x min(W)`` elements
        of the squared difference of the aligned maps.
    """
    return squared_distance(*align_pair(x, y))


def gap_matrix(rows: Sequence[torch.Tensor], cols: Sequence[torch.Tensor]) -> torch.Tensor:
    """
    The aligned MSE of every pair of feature maps.

    Args:
        rows: R maps, each N x C_r x H_r x W_r.
        cols: K maps, each N x C_k x H_k x W_k.

    Returns:
        Tensor: R x K (float64, on CPU), entry (r, k) = ``aligned_mse(rows[r], cols[k])``.
    """
    out = torch.zeros(len(rows), len(cols), dtype=torch.float64)
    for r, x in enumerate(rows):
        for k, y in enumerate(cols):
            # Two models may sit on different devices (each config keeps its MODEL.DEVICE).
            out[r, k] = aligned_mse(x.float(), y.to(x.device).float()).item()
    return out


def default_levels(
    teacher_shapes: Mapping[str, ShapeSpec], student_shapes: Mapping[str, ShapeSpec]
) -> List[str]:
    """
    The student's backbone levels that the teacher has too, fine to coarse (by student stride).

    Args:
        teacher_shapes, student_shapes: ``backbone.output_shape()`` of each model.
    """
    common = [name for name in student_shapes if name in teacher_shapes]
    if not common:
        raise ValueError(
            f"The teacher's levels {sorted(teacher_shapes)} and the student's "
            f"{sorted(student_shapes)} have none in common; pass levels explicitly."
        )
    return sorted(common, key=lambda name: student_shapes[name].stride)


@torch.no_grad()
def backbone_features(model: nn.Module, batched_inputs: List[dict], levels: Sequence[str]):
    """
    A detector's FPN features, the way DistillationDetector takes a guide's.

    Args:
        model: a detectron2 detector with ``preprocess_image`` and ``backbone`` (eval mode).
        batched_inputs: detectron2 inputs ("image": C x H x W, as from a ``DatasetMapper``).
        levels: backbone output names, e.g. ["p2", "p3"].

    Returns:
        list[Tensor]: one N x C x H_l x W_l map per level, in the order of ``levels``.
    """
    images = model.preprocess_image(batched_inputs)
    features = model.backbone(images.tensor)
    return [features[name] for name in levels]


@dataclass
class FeatureGaps:
    """
    Mean aligned MSE between FPN levels, over ``num_images`` images.

    Attributes:
        levels: L level names, fine to coarse.
        teacher_student: L x L, entry (i, j) = gap between teacher level i and student level j.
        student_student: L x L, entry (i, j) = gap between student levels i and j (symmetric,
            zero diagonal).
        num_images: number of images averaged over.
        info: free-form provenance (dataset, config files, weights), kept in the JSON.
    """

    levels: List[str]
    teacher_student: np.ndarray
    student_student: np.ndarray
    num_images: int
    info: Dict[str, Any] = field(default_factory=dict)

    def premise(self) -> Dict[str, Any]:
        """
        The paper's premise as numbers.

        Returns:
            dict with
            "adjacent_student_gap_mean": mean of the student x student gaps (l, l+1), for
            levels adjacent in ``levels``;
            "same_level_teacher_student_gap_mean": mean of the teacher x student diagonal;
            "premise_holds": whether the first is smaller than the second (None when there are
            fewer than two levels, so no adjacent pair).
        """
        n = len(self.levels)
        same = float(np.mean(np.diag(self.teacher_student)))
        # (l, l+1) and (l+1, l) are equal: one direction is the mean of both.
        adjacent = [float(self.student_student[i, i + 1]) for i in range(n - 1)]
        adj = float(np.mean(adjacent)) if adjacent else None
        return {
            "adjacent_student_gap_mean": adj,
            "same_level_teacher_student_gap_mean": same,
            "premise_holds": None if adj is None else bool(adj < same),
        }

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict: both matrices (row-major nested lists), levels, counts, premise."""
        return {
            "metric": METRIC,
            "metric_description": METRIC_DESCRIPTION,
            "levels": list(self.levels),
            "num_images": self.num_images,
            "teacher_student": self.teacher_student.tolist(),
            "teacher_student_axes": ["teacher level", "student level"],
            "student_student": self.student_student.tolist(),
            "student_student_axes": ["student level", "student level"],
            "premise": self.premise(),
            **self.info,
        }

    def to_markdown(self) -> str:
        """Both matrices as markdown tables, then the premise's numbers."""
        p = self.premise()
        adj = p["adjacent_student_gap_mean"]
        lines = [
            f"# Feature gaps ({METRIC}, mean over {self.num_images} images)",
            "",
            f"Distance: {METRIC_DESCRIPTION}.",
            "",
            f"## {TEACHER_STUDENT_TITLE}",
            "",
            *_markdown_table(self.teacher_student, self.levels, "teacher \\ student"),
            "",
            f"## {STUDENT_STUDENT_TITLE}",
            "",
            *_markdown_table(self.student_student, self.levels, "student \\ student"),
            "",
            "## Premise: adjacent student levels closer than teacher and student at one level",
            "",
            "- mean adjacent student x student gap: " + ("n/a" if adj is None else f"{adj:.4g}"),
            "- mean same-level teacher x student gap: "
            f"{p['same_level_teacher_student_gap_mean']:.4g}",
            f"- premise_holds: {p['premise_holds']}",
            "",
        ]
        return "\n".join(lines)


def _markdown_table(matrix: np.ndarray, levels: Sequence[str], corner: str) -> List[str]:
    rows = [
        "| " + " | ".join([corner, *levels]) + " |",
        "|" + "---|" * (len(levels) + 1),
    ]
    for name, values in zip(levels, matrix):
        rows.append("| " + " | ".join([f"**{name}**", *(f"{v:.4g}" for v in values)]) + " |")
    return rows


def compute_feature_gaps(
    teacher: nn.Module,
    student: nn.Module,
    data: Iterable[List[dict]],
    levels: Optional[Sequence[str]] = None,
    max_images: Optional[int] = None,
) -> FeatureGaps:
    """
    Average the aligned MSE of every level pair over images.

    Both models see the same inputs; each normalises them with its own ``preprocess_image``.

    Args:
        teacher, student: detectron2 detectors in eval mode.
        data: batches of detectron2 inputs, e.g. a ``build_detection_test_loader``. Batches of
            one image are what the result's "per image" means; a larger batch counts as one
            image per element, with the gap of the whole batch.
        levels: level names that both backbones produce; None: :func:`default_levels`.
        max_images: stop after this many images (None: all of ``data``).

    Returns:
        FeatureGaps
    """
    t_shapes, s_shapes = teacher.backbone.output_shape(), student.backbone.output_shape()
    levels = list(levels) if levels else default_levels(t_shapes, s_shapes)
    for who, shapes in (("teacher", t_shapes), ("student", s_shapes)):
        missing = [name for name in levels if name not in shapes]
        if missing:
            raise ValueError(
                f"The {who}'s backbone has no level(s) {missing}; it has {sorted(shapes)}"
            )
    n = len(levels)
    ts_sum = torch.zeros(n, n, dtype=torch.float64)
    ss_sum = torch.zeros(n, n, dtype=torch.float64)
    num_images = 0
    for batch in data:
        if max_images is not None and num_images >= max_images:
            break
        t = backbone_features(teacher, batch, levels)
        s = backbone_features(student, batch, levels)
        ts_sum += gap_matrix(t, s) * len(batch)
        ss_sum += gap_matrix(s, s) * len(batch)
        num_images += len(batch)
    if num_images == 0:
        raise ValueError("No images: the dataset (or --num-images) is empty")
    return FeatureGaps(
        levels=levels,
        teacher_student=(ts_sum / num_images).numpy(),
        student_student=(ss_sum / num_images).numpy(),
        num_images=num_images,
    )


def feature_gaps_from_files(
    teacher_config: str,
    teacher_weights: str,
    student_config: str,
    student_weights: str,
    dataset: Optional[str] = None,
    num_images: int = 50,
    levels: Optional[Sequence[str]] = None,
    device: Optional[str] = None,
) -> FeatureGaps:
    """
    :func:`compute_feature_gaps` for two trained detectors given as config + checkpoint files.

    Images are the first ``num_images`` of ``dataset`` (default: the student config's
    ``DATASETS.TEST[0]``), read and resized by the student config's test-time
    ``DatasetMapper``, so that both models see the very same pixels (as the teacher does in
    distillation).

    Args:
        teacher_config, student_config: yaml or LazyConfig configs (plain, exported or
            distillation configs).
        teacher_weights, student_weights: checkpoints (plain, or distillation with ``student.*``).
        dataset: a registered dataset name.
        num_images: at most this many images.
        levels: see :func:`compute_feature_gaps`.
        device: see :func:`~shared_kd.analysis.common.load_detector`.
    """
    teacher, _ = load_detector(
        teacher_config, teacher_weights, device=device, weights_flag="--teacher-weights"
    )
    student, s_cfg = load_detector(
        student_config, student_weights, device=device, weights_flag="--student-weights"
    )
    if dataset is None:
        if not s_cfg.test_datasets:
            raise ValueError("The student config names no test dataset; name a dataset")
        dataset = s_cfg.test_datasets[0]
    dicts = DatasetCatalog.get(dataset)[:num_images]
    # Load the images once, in order, without workers: the analysis is small and deterministic.
    loader = build_detection_test_loader(dicts, mapper=s_cfg.test_mapper(), num_workers=0)
    gaps = compute_feature_gaps(teacher, student, loader, levels, max_images=num_images)
    gaps.info = {
        "dataset": dataset,
        "teacher": {"config": teacher_config, "weights": teacher_weights},
        "student": {"config": student_config, "weights": student_weights},
    }
    return gaps


def plot_feature_gaps(gaps: FeatureGaps):
    """
    Two annotated heatmaps side by side: teacher x student and student x student.

    Returns:
        matplotlib.figure.Figure: drawn on an Agg canvas (no pyplot, no display needed).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(gaps.levels)
    side = 1.6 + 0.75 * n
    fig = Figure(figsize=(2 * side + 1.5, side), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    # One colour scale for both panels, so that the two kinds of gap compare by colour too.
    vmax = float(max(gaps.teacher_student.max(), gaps.student_student.max(), 1e-12))
    panels = (
        (gaps.teacher_student, TEACHER_STUDENT_TITLE, "teacher level"),
        (gaps.student_student, STUDENT_STUDENT_TITLE, "student level"),
    )
    for ax, (matrix, title, ylabel) in zip(axes, panels):
        image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=vmax)
        ax.set_title(title)
        ax.set_xlabel("student level")
        ax.set_ylabel(ylabel)
        ax.set_xticks(range(n), gaps.levels)
        ax.set_yticks(range(n), gaps.levels)
        for (i, j), value in np.ndenumerate(matrix):
            # Dark text on the bright end of viridis, light text elsewhere.
            colour = "black" if value > 0.6 * vmax else "white"
            ax.text(j, i, f"{value:.3g}", ha="center", va="center", color=colour, fontsize=8)
    fig.colorbar(image, ax=list(axes), label=f"{METRIC} (mean over {gaps.num_images} images)")
    return fig


def _finite_or_none(value):
    """``value`` with NaN/inf (e.g. from a diverged model) as None: JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def write_feature_gaps(gaps: FeatureGaps, output_dir: str, dpi: int = 100) -> Dict[str, str]:
    """
    Write ``feature_gaps.md``, ``feature_gaps.json`` and ``feature_gaps.png`` to ``output_dir``.

    Each file is written under a temporary name in ``output_dir`` and renamed into place, so a
    reader never sees a partial file.

    Returns:
        dict: "md", "json", "png" -> path.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths = {ext: os.path.join(output_dir, f"feature_gaps.{ext}") for ext in ("md", "json", "png")}
    payload = _finite_or_none(gaps.to_dict())

    def write_text(text):
        def write(path):
            with open(path, "w") as f:
                f.write(text)

        return write

    atomic_write(paths["md"], write_text(gaps.to_markdown()))
    atomic_write(paths["json"], write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n"))
    fig = plot_feature_gaps(gaps)
    atomic_write(paths["png"], lambda path: fig.savefig(path, dpi=dpi, format="png"))
    return paths
