"""A user's own COCO-format dataset, as tests need one: a few shapes images, re-indexed."""

import json
import os
import shutil

from shared_kd.data import ensure_shapes_dataset

from .conftest import REPO_ROOT

EXTRA_CATEGORIES = ("star", "hexagon")  # beyond shapes' 3, for category-count mismatches


def shapes_root():
    """The embedded shapes dataset's folder (built if missing), absolute."""
    root = os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", ""))
    return os.path.abspath(ensure_shapes_dataset(root or os.path.join(REPO_ROOT, "datasets")))


def write_coco_subset(
    out_dir, name, split="train", num_images=4, first=0, num_categories=3, copy_images=True
):
    """
    Write ``out_dir/annotations/<name>.json``: ``num_images`` images of shapes' ``split``
    (from index ``first``) with their annotations, image and annotation ids renumbered from 1
    (as in a user's own file); ``num_categories`` > 3 adds categories no box uses.

    Args:
        copy_images: copy the images to ``out_dir/<name>`` (else the json refers to the shapes
            folder itself).

    Returns:
        (json path, image folder), both absolute.
    """
    shapes = shapes_root()
    with open(os.path.join(shapes, "annotations", f"instances_{split}.json")) as f:
        source = json.load(f)
    images = source["images"][first : first + num_images]
    categories = list(source["categories"])
    for i in range(num_categories - len(categories)):
        categories.append({"id": 4 + i, "name": EXTRA_CATEGORIES[i], "supercategory": "shape"})
    categories = categories[:num_categories]

    new_id = {img["id"]: i + 1 for i, img in enumerate(images)}
    annotations = []
    for ann in source["annotations"]:
        if ann["image_id"] in new_id:
            annotations.append(dict(ann, id=len(annotations) + 1, image_id=new_id[ann["image_id"]]))
    out_images = [dict(img, id=new_id[img["id"]]) for img in images]

    image_root = os.path.join(shapes, split)
    if copy_images:
        image_root = os.path.join(out_dir, name)
        os.makedirs(image_root, exist_ok=True)
        for img in images:
            shutil.copy(os.path.join(shapes, split, img["file_name"]), image_root)
    json_file = os.path.join(out_dir, "annotations", f"{name}.json")
    os.makedirs(os.path.dirname(json_file), exist_ok=True)
    with open(json_file, "w") as f:
        json.dump({"images": out_images, "annotations": annotations, "categories": categories}, f)
    return os.path.abspath(json_file), os.path.abspath(image_root)


def small_test_set_opts(out_dir, name, num_images=8):
    """
    yacs overrides that evaluate on ``num_images`` shapes_val images registered as ``name``
    (``DATASETS.COCO_INSTANCES``, the json written to ``out_dir``), not on all 100 of
    shapes_val: for tests of tools that evaluate many runs and check the plumbing, not the APs.
    """
    json_file, images = write_coco_subset(
        str(out_dir), name, split="val", num_images=num_images, copy_images=False
    )
    return [
        "DATASETS.COCO_INSTANCES",
        str([[name, json_file, images]]),
        "DATASETS.TEST",
        f"('{name}',)",
    ]
