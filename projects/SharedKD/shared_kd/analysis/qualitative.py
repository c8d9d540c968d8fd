"""
A qualitative comparison grid: rows are images, columns are the ground truth and each model's
detections, drawn with detectron2's ``Visualizer``.
"""

import copy
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.data.detection_utils import read_image
from detectron2.structures import Instances
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import ColorMode, Visualizer

from ..detector_config import DetectorConfig
from ..utils.io import atomic_write
from .common import load_detector

__all__ = [
    "GT_COLUMN",
    "draw_grid",
    "predict",
    "qualitative_grid",
    "select_images",
]

GT_COLUMN = "ground truth"


def select_images(
    dataset_dicts: Sequence[dict], num_images: int = 4, image_ids: Optional[Sequence] = None
) -> List[dict]:
    """
    The images to show, deterministically.

    Args:
        dataset_dicts: a dataset in detectron2's format (e.g. ``DatasetCatalog.get(name)``).
        num_images: without ``image_ids``, the first ``num_images`` of the dataset.
        image_ids: ``image_id`` values to show, in this order (compared as strings, so a CLI's
            "3" finds COCO's integer id 3).

    Returns:
        list[dict]: the chosen records.
    """
    if not image_ids:
        return list(dataset_dicts[:num_images])
    by_id = {str(d["image_id"]): d for d in dataset_dicts}
    missing = [i for i in image_ids if str(i) not in by_id]
    if missing:
        raise ValueError(f"No image(s) with image_id {missing} in the dataset")
    return [by_id[str(i)] for i in image_ids]


@torch.no_grad()
def predict(
    model: nn.Module, config: DetectorConfig, dataset_dicts: Sequence[dict]
) -> List[Instances]:
    """
    One model's detections on each image, as in evaluation.

    Each image is read and resized by the model's own test-time ``DatasetMapper`` (its
    ``INPUT.FORMAT`` and ``INPUT.MIN_SIZE_TEST``/``MAX_SIZE_TEST``, or a LazyConfig's
    ``dataloader.test.mapper``), and the model rescales its boxes (and masks) back to the
    original image size.

    Args:
        model: a detectron2 detector in eval mode.
        config: its config.
        dataset_dicts: records with "file_name", "height", "width".

    Returns:
        list[Instances]: per image, on CPU, with "pred_boxes", "scores", "pred_classes" (and
        "pred_masks" for instance segmentation) in original-image coordinates.
    """
    mapper = config.test_mapper()
    return [model([mapper(copy.deepcopy(d))])[0]["instances"].to("cpu") for d in dataset_dicts]


def _metadata_with_class_colours(metadata: Metadata) -> Metadata:
    """A copy of ``metadata`` with ``thing_colors``, so that a class has one colour everywhere."""
    fields = metadata.as_dict()
    if not fields.get("thing_colors") and fields.get("thing_classes"):
        palette = colormap(rgb=True, maximum=255)
        fields["thing_colors"] = [
            tuple(int(c) for c in palette[i % len(palette)])
            for i in range(len(fields["thing_classes"]))
        ]
    return Metadata(**fields)


def draw_grid(
    dataset_dicts: Sequence[dict],
    predictions: Dict[str, Sequence[Instances]],
    metadata: Metadata,
    score_threshold: float = 0.5,
    cell_px: int = 384,
):
    """
    Draw the grid: one row per image; the ground truth, then one column per model.

    Args:
        dataset_dicts: R records (with "file_name", "image_id" and "annotations").
        predictions: column title -> R ``Instances`` (as from :func:`predict`), in column order.
        metadata: the dataset's metadata (``thing_classes``).
        score_threshold: detections scoring below it are not drawn.
        cell_px: each panel is drawn about this many pixels wide (images are scaled to it).

    Returns:
        matplotlib.figure.Figure: R x (1 + len(predictions)) axes, on an Agg canvas.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    for name, preds in predictions.items():
        if len(preds) != len(dataset_dicts):
            raise ValueError(f"{name!r}: {len(preds)} predictions for {len(dataset_dicts)} images")
    metadata = _metadata_with_class_colours(metadata)
    columns = [GT_COLUMN, *predictions]
    rows, cols = len(dataset_dicts), len(columns)
    dpi = 100
    cell_in = cell_px / dpi
    # Room for the column titles and the per-panel captions.
    fig = Figure(figsize=(cols * cell_in, rows * (cell_in + 0.35) + 0.4), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    # Visualizer jitters class colours with np.random: a private seeded state keeps the picture
    # reproducible without disturbing the caller's random stream.
    state = np.random.get_state()
    np.random.seed(0)
    try:
        for r, record in enumerate(dataset_dicts):
            image = read_image(record["file_name"], format="RGB")
            scale = cell_px / max(image.shape[:2])
            for c, name in enumerate(columns):
                vis = Visualizer(image, metadata, scale=scale, instance_mode=ColorMode.SEGMENTATION)
                if name == GT_COLUMN:
                    drawn = vis.draw_dataset_dict(record)
                    caption = f"objects: {len(record.get('annotations', []))}"
                else:
                    inst = predictions[name][r]
                    inst = inst[inst.scores >= score_threshold]
                    drawn = vis.draw_instance_predictions(inst)
                    caption = f"detections: {len(inst)} (score >= {score_threshold:g})"
                ax = axes[r, c]
                ax.imshow(drawn.get_image())
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_xlabel(caption, fontsize=9)
                if r == 0:
                    ax.set_title(name, fontsize=12)
                if c == 0:
                    ax.set_ylabel(f"image {record['image_id']}", fontsize=10)
    finally:
        np.random.set_state(state)
    fig.tight_layout()
    return fig


def qualitative_grid(
    models: Sequence[Tuple[str, str, str]],
    output_path: str,
    dataset: Optional[str] = None,
    num_images: int = 4,
    image_ids: Optional[Sequence] = None,
    score_threshold: float = 0.5,
    device: Optional[str] = None,
    cell_px: int = 384,
) -> Tuple[str, Tuple[int, int]]:
    """
    Load each model, run it on the chosen images and save the grid as one PNG.

    Args:
        models: (column title, config file, checkpoint) per model, in column order; checkpoints
            may be plain detectron2 ones or SharedKD distillation ones (``student.*``).
        output_path: the PNG to write (atomically: a temporary file in its folder, renamed).
        dataset: a registered dataset; None: the first model config's ``DATASETS.TEST[0]``.
        num_images, image_ids: see :func:`select_images`.
        score_threshold, cell_px: see :func:`draw_grid`.
        device: see :func:`~shared_kd.analysis.common.load_detector`.

    Returns:
        (path, (rows, cols)): the PNG written and the grid's shape.
    """
    if not models:
        raise ValueError("Give at least one model")
    names = [name for name, _, _ in models]
    if len(set(names)) != len(names) or GT_COLUMN in names:
        raise ValueError(f"Model names must be distinct and not {GT_COLUMN!r}: {names}")
    predictions, records = {}, None
    for name, config_file, weights in models:
        model, cfg = load_detector(
            config_file, weights, device=device, weights_flag=f"the WEIGHTS of --model {name}"
        )
        if records is None:
            if dataset is None:
                if not cfg.test_datasets:
                    raise ValueError(f"{config_file} names no test dataset; name a dataset")
                dataset = cfg.test_datasets[0]
            records = select_images(DatasetCatalog.get(dataset), num_images, image_ids)
            if not records:
                raise ValueError(f"No images selected from {dataset!r}")
        predictions[name] = predict(model, cfg, records)
        del model  # one model in memory at a time
    fig = draw_grid(
        records, predictions, MetadataCatalog.get(dataset), score_threshold, cell_px=cell_px
    )
    folder = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(folder, exist_ok=True)
    atomic_write(os.path.abspath(output_path), lambda p: fig.savefig(p, format="png"))
    return output_path, (len(records), len(predictions) + 1)
