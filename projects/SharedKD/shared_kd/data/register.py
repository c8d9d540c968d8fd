"""
Your own COCO-format datasets without code: ``DATASETS.COCO_INSTANCES`` names them in the config
file or on the command line, and :func:`register_config_datasets` registers them with detectron2
(``register_coco_instances``) before anything is built, in every process.

    DATASETS:
      COCO_INSTANCES: [["mine_train", "data/annotations/train.json", "data/images/train"],
                       ["mine_val", "data/annotations/val.json", "data/images/val"]]
      TRAIN: ("mine_train",)
      TEST: ("mine_val",)
"""

import json
import os
from typing import List, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..config import plain_detector_config
from ..modeling.families import num_classes_key
from .checks import DatasetError

__all__ = [
    "absolute_dataset_paths",
    "check_num_classes",
    "model_num_classes",
    "register_coco_datasets",
    "register_config_datasets",
]

KEY = "DATASETS.COCO_INSTANCES"


def _entries(cfg) -> List[Sequence[str]]:
    return _checked(cfg.DATASETS.COCO_INSTANCES)


def _checked(entries) -> List[Sequence[str]]:
    entries = list(entries)
    for entry in entries:
        if (
            not isinstance(entry, (list, tuple))
            or len(entry) != 3
            or not all(isinstance(x, str) and x for x in entry)
        ):
            raise DatasetError(
                f"{KEY} entries must be [name, annotation json, image folder] (three non-empty "
                f"strings), got {entry!r}. Example: {KEY} \"[['mine_train', "
                "'data/train.json', 'data/train_images']]\""
            )
    return entries


def absolute_dataset_paths(cfg) -> None:
    """
    Make the json and image paths of ``DATASETS.COCO_INSTANCES`` absolute (from the current
    directory), in place, so that saved and exported configs work from any folder.
    """
    cfg.DATASETS.COCO_INSTANCES = [
        [name, os.path.abspath(json_file), os.path.abspath(image_root)]
        for name, json_file, image_root in _entries(cfg)
    ]


def register_config_datasets(cfg) -> List[str]:
    """
    Register every dataset of ``DATASETS.COCO_INSTANCES`` with detectron2's catalogs (COCO
    evaluation included): :func:`register_coco_datasets` of its value.
    """
    return register_coco_datasets(cfg.DATASETS.COCO_INSTANCES)


def register_coco_datasets(entries) -> List[str]:
    """
    Register COCO-format datasets, ``[[name, annotation json, image folder], ...]`` (the value
    of ``DATASETS.COCO_INSTANCES``), with detectron2's catalogs (COCO evaluation included). A
    name already registered with the same files is left as it is.

    Returns:
        list[str]: the names registered by this call.

    Raises:
        DatasetError: an entry is malformed, a path does not exist, or the name is taken by
            another dataset (e.g. detectron2's builtin ``coco_2017_train``).
    """
    from detectron2.data.datasets import register_coco_instances

    registered = []
    for name, json_file, image_root in _checked(entries):
        if not os.path.isfile(json_file):
            raise DatasetError(
                f"{KEY}: the annotation file of {name!r}, {json_file!r}, does not exist "
                "(relative paths are read from the current directory)."
            )
        if not os.path.isdir(image_root):
            raise DatasetError(
                f"{KEY}: the image folder of {name!r}, {image_root!r}, does not exist "
                "(relative paths are read from the current directory)."
            )
        json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)
        if name in DatasetCatalog.list():
            registered_json = MetadataCatalog.get(name).get("json_file", None)
            if registered_json and os.path.abspath(registered_json) == json_file:
                continue  # this config's own dataset, registered before (e.g. by load_config)
            raise DatasetError(
                f"{KEY} names {name!r}, which is already a registered dataset "
                f"({registered_json or 'registered in code'}). Give yours another name."
            )
        register_coco_instances(name, {}, json_file, image_root)
        registered.append(name)
    return registered


def _num_categories(name: str):
    """The number of categories of a COCO-format dataset, from its annotation file (or None)."""
    json_file = MetadataCatalog.get(name).get("json_file", None)
    if not json_file or not os.path.isfile(json_file):
        return None
    try:
        with open(json_file) as f:
            categories = json.load(f).get("categories")
    except (OSError, ValueError, AttributeError):
        return None  # check_datasets names the problem
    return len(categories) if isinstance(categories, list) else None


def model_num_classes(cfg):
    """
    (key, number of classes) of the detector ``cfg`` builds (the student's, for a distillation
    config), or (None, None) for a meta-architecture no family in
    :data:`shared_kd.modeling.families.FAMILIES` has.
    """
    detector = plain_detector_config(cfg)
    key = num_classes_key(detector.MODEL.META_ARCHITECTURE)
    if key is None:
        return None, None
    node = key.split(".")[1]
    return key, detector.MODEL[node].NUM_CLASSES


def check_num_classes(cfg, names: Sequence[str], key: str) -> None:
    """
    Raise a :class:`DatasetError` when a COCO-format dataset in ``names`` has another number of
    categories than the model has classes.
    """
    model_key, num_classes = model_num_classes(cfg)
    if model_key is None:
        return
    for name in names:
        found = _num_categories(name)
        if found is not None and found != num_classes:
            raise DatasetError(
                f"{key} names {name!r}, whose annotation file has {found} categories, but the "
                f"model has {num_classes} classes ({model_key}). Set {model_key} {found}."
            )
