"""
The embedded "shapes" dataset: synthetic detection + instance segmentation in COCO format.

Needs no download: images are drawn deterministically from a seed (same seed, same bytes) on
first use, into ``$DETECTRON2_DATASETS/shapes`` (``./datasets/shapes`` when unset, as detectron2's
builtin datasets do). Circles, squares and triangles of random size, rotation and colour on
textured backgrounds, several per image and never overlapping, so every polygon is exactly the
drawn object's mask.
"""

import json
import logging
import os
import shutil
import tempfile

import numpy as np

__all__ = [
    "SHAPES_CLASSES",
    "SHAPES_SPLITS",
    "build_shapes_dataset",
    "ensure_shapes_dataset",
    "register_all_shapes",
]

logger = logging.getLogger(__name__)

SHAPES_CLASSES = ["circle", "square", "triangle"]
# split name -> (number of images, seed offset). Changing these changes the data: bump FORMAT.
SHAPES_SPLITS = {"train": (400, 0), "val": (100, 1)}
IMAGE_SIZE = 128
FORMAT = 1  # version of the generator; a different one in meta.json triggers a rebuild


def _shape_polygon(rng, kind, cx, cy, r):
    """Vertices (K x 2, float) of one shape of circumradius ``r`` centred at (cx, cy)."""
    theta0 = rng.uniform(0, 2 * np.pi)
    if kind == "circle":
        angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    elif kind == "square":
        angles = theta0 + np.arange(4) * np.pi / 2
    else:  # triangle
        angles = theta0 + np.arange(3) * 2 * np.pi / 3
    return np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], axis=1)


def _background(rng, size):
    """A random colour with a linear gradient and pixel noise (H x W x 3, float)."""
    base = rng.uniform(0, 255, size=3)
    ramp = np.linspace(-1, 1, size)
    direction = rng.uniform(-40, 40, size=(2, 3))
    img = base + ramp[:, None, None] * direction[0] + ramp[None, :, None] * direction[1]
    return img + rng.normal(0, rng.uniform(2, 12), size=(size, size, 3))


def _distinct_colour(rng, background_mean):
    """A colour at least 80 away (L2, RGB) from the background's mean, so objects are visible."""
    while True:
        colour = rng.uniform(0, 255, size=3)
        if np.linalg.norm(colour - background_mean) > 80:
            return colour


def _draw_image(rng, size):
    """One image (H x W x 3 uint8, RGB) and its annotations as (class index, polygon) pairs."""
    import cv2  # imported here so that registering the dataset does not need OpenCV

    img = _background(rng, size)
    bg_mean = img.reshape(-1, 3).mean(0)
    taken, annos = [], []
    for _ in range(int(rng.integers(1, 6))):
        for _attempt in range(20):  # rejection-sample a free spot
            r = rng.uniform(7, 26)
            cx, cy = rng.uniform(r, size - r, size=2)
            box = (cx - r - 2, cy - r - 2, cx + r + 2, cy + r + 2)
            if all(box[2] < t[0] or box[0] > t[2] or box[3] < t[1] or box[1] > t[3] for t in taken):
                break
        else:
            continue
        taken.append(box)
        cls = int(rng.integers(len(SHAPES_CLASSES)))
        poly = _shape_polygon(rng, SHAPES_CLASSES[cls], cx, cy, r)
        colour = _distinct_colour(rng, bg_mean)
        cv2.fillPoly(img, [np.round(poly * 16).astype(np.int32)], colour.tolist(), cv2.LINE_AA, 4)
        annos.append((cls, poly))
    return np.clip(img, 0, 255).astype(np.uint8), annos


def _polygon_area(poly):
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _build_split(out_dir, split, num_images, seed):
    import cv2

    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(out_dir, split))
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        img, annos = _draw_image(rng, IMAGE_SIZE)
        file_name = f"{image_id:05d}.png"
        cv2.imwrite(os.path.join(out_dir, split, file_name), img[:, :, ::-1])  # cv2 wants BGR
        images.append(
            {"id": image_id, "file_name": file_name, "height": IMAGE_SIZE, "width": IMAGE_SIZE}
        )
        for cls, poly in annos:
            poly = np.clip(poly, 0, IMAGE_SIZE)
            x0, y0 = poly.min(0)
            x1, y1 = poly.max(0)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cls + 1,
                    "bbox": [round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                    "area": round(_polygon_area(poly), 2),
                    "segmentation": [[round(float(v), 2) for v in poly.reshape(-1)]],
                    "iscrowd": 0,
                }
            )
    coco = {
        "info": {"description": f"SharedKD shapes dataset, {split} split, seed {seed}"},
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": name, "supercategory": "shape"}
            for i, name in enumerate(SHAPES_CLASSES)
        ],
    }
    with open(os.path.join(out_dir, "annotations", f"instances_{split}.json"), "w") as f:
        json.dump(coco, f)


def _meta(seed):
    return {
        "format": FORMAT,
        "seed": seed,
        "image_size": IMAGE_SIZE,
        "splits": {k: v[0] for k, v in SHAPES_SPLITS.items()},
    }


def _is_built(path, seed):
    try:
        with open(os.path.join(path, "meta.json")) as f:
            return json.load(f) == _meta(seed)
    except (OSError, ValueError):
        return False


def build_shapes_dataset(root, seed=0, force=False):
    """
    Write the dataset to ``<root>/shapes`` unless an identical build is already there.

    The build goes to a temporary folder beside the target and is renamed into place only when
    complete, so an interrupted build never leaves a half-written dataset behind, and processes
    that race to build it end up with the same files.

    Args:
        root (str): datasets folder (``$DETECTRON2_DATASETS``).
        seed (int): generator seed; the same seed gives byte-identical files.
        force (bool): rebuild even if a matching build exists.

    Returns:
        str: the dataset folder, ``<root>/shapes``.
    """
    target = os.path.join(root, "shapes")
    if not force and _is_built(target, seed):
        return target
    if os.path.exists(target) and not os.path.isfile(os.path.join(target, "meta.json")):
        # Never delete a folder that this generator did not make.
        raise FileExistsError(
            f"{target} exists but was not made by the shapes generator (no meta.json); move it "
            "away or set DETECTRON2_DATASETS to another folder."
        )
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".shapes-", dir=root)
    try:
        os.makedirs(os.path.join(tmp, "annotations"))
        for split, (num_images, offset) in SHAPES_SPLITS.items():
            _build_split(tmp, split, num_images, seed * 1000 + offset)
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(_meta(seed), f)
        if os.path.exists(target) and (force or not _is_built(target, seed)):
            shutil.rmtree(target)  # an older build of ours
        try:
            os.rename(tmp, target)
            tmp = None
        except OSError:
            if not _is_built(target, seed):  # lost a race: fine only if the winner is complete
                raise
        logger.info(f"Built the shapes dataset (seed {seed}) in {target}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def default_root():
    """``$DETECTRON2_DATASETS``, or ``datasets`` as in detectron2's builtin datasets."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def ensure_shapes_dataset(root=None):
    """Build the dataset if missing (seed 0) and return its folder."""
    return build_shapes_dataset(default_root() if root is None else root, seed=0)


def register_all_shapes(root=None):
    """
    Register ``shapes_train`` and ``shapes_val`` with detectron2's catalogs.

    Registration is lazy: the files are generated the first time a split is loaded. ``root``
    defaults to ``$DETECTRON2_DATASETS``, read when this is called (at ``import shared_kd``).
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import load_coco_json

    root = default_root() if root is None else root
    for split in SHAPES_SPLITS:
        name = f"shapes_{split}"
        json_file = os.path.join(root, "shapes", "annotations", f"instances_{split}.json")
        image_root = os.path.join(root, "shapes", split)

        def load(json_file=json_file, image_root=image_root, name=name):
            ensure_shapes_dataset(root)
            return load_coco_json(json_file, image_root, name)

        if name in DatasetCatalog.list():  # re-registration (e.g. another root in tests)
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        DatasetCatalog.register(name, load)
        MetadataCatalog.get(name).set(
            thing_classes=list(SHAPES_CLASSES),
            json_file=json_file,  # read by COCOEvaluator
            image_root=image_root,
            evaluator_type="coco",
        )
