"""Datasets shipped with SharedKD (registered with detectron2 at ``import shared_kd``)."""

from .checks import DatasetError, check_datasets
from .sampler import ResumableLoader, ResumableSampler
from .shapes import (
    SHAPES_CLASSES,
    build_shapes_dataset,
    ensure_shapes_dataset,
    register_all_shapes,
)

__all__ = [
    "SHAPES_CLASSES",
    "DatasetError",
    "ResumableLoader",
    "ResumableSampler",
    "build_shapes_dataset",
    "check_datasets",
    "ensure_shapes_dataset",
    "register_all_shapes",
]
