"""Clear errors, before training, for datasets that are missing, malformed or empty."""

import json
import os
from typing import List, Sequence

import yaml
from detectron2.data import DatasetCatalog, MetadataCatalog

__all__ = ["DatasetError", "check_datasets", "dataset_error"]

# What loading a dataset raises when its files are missing or malformed (JSON errors are
# ValueErrors; a COCO file without "images" or "annotations" raises KeyError).
LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, AssertionError, yaml.YAMLError)


class DatasetError(RuntimeError):
    """A dataset named in the config cannot be used."""


def _diagnose_coco_json(name: str) -> str:
    """What is wrong with a COCO-format dataset's annotation file, or "" if nothing is found."""
    json_file = MetadataCatalog.get(name).get("json_file", None)
    if not json_file:
        return ""
    if not os.path.isfile(json_file):
        return f"its annotation file {json_file!r} does not exist"
    try:
        with open(json_file) as f:
            content = json.load(f)
    except (OSError, ValueError) as e:
        return f"its annotation file {json_file!r} is not valid json ({e})"
    if not isinstance(content, dict):
        return f"its annotation file {json_file!r} is not a COCO dict"
    for key in ("images", "categories"):
        if not content.get(key):
            return f"its annotation file {json_file!r} has no {key!r}"
    return ""


def dataset_error(names: Sequence[str], key: str, error: BaseException) -> DatasetError:
    """The error to raise when loading ``names`` (from config ``key``) failed with ``error``."""
    detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
    problems = [f"{n!r}: {p}" for n in names if (p := _diagnose_coco_json(n))]
    found = f" ({'; '.join(problems)})" if problems else ""
    return DatasetError(
        f"{key} {list(names)} cannot be loaded{found}: {type(error).__name__}: {detail}. Check "
        "that each dataset is registered, that its annotation file is valid COCO json with "
        "images and categories, and that its image folder exists (see datasets/README.md)."
    )


def check_datasets(names: Sequence[str], key: str) -> List[int]:
    """
    Load every dataset in ``names`` and check that it has images whose files exist.

    Args:
        names: registered dataset names.
        key: the config key that lists them (e.g. ``DATASETS.TEST``), named in errors.

    Returns:
        list[int]: the number of images in each.
    """
    sizes = []
    for name in names:
        if name not in DatasetCatalog.list():
            raise DatasetError(
                f"{key} names {name!r}, which is not a registered dataset. Name your COCO-format "
                "data in DATASETS.COCO_INSTANCES ([[name, annotation json, image folder], ...]; "
                "the config.sharedkd.yaml of a run that did so carries it), or use one of the "
                "registered names (shapes_train, shapes_val, coco_2017_train, ...)."
            )
        try:
            dicts = DatasetCatalog.get(name)
        except LOAD_ERRORS + (json.JSONDecodeError,) as e:
            raise dataset_error([name], key, e) from e
        if len(dicts) == 0:
            raise DatasetError(
                f"{key} names {name!r}, which has no images. Check its annotation file."
            )
        first = dicts[0].get("file_name")
        if first is not None and "://" not in first and not os.path.isfile(first):
            raise DatasetError(
                f"{key}: the first image of {name!r}, {first!r}, does not exist. Check the "
                "dataset's image folder (and $DETECTRON2_DATASETS)."
            )
        sizes.append(len(dicts))
    return sizes
