import json
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from pycocotools.coco import COCO

from shared_kd.data.shapes import SHAPES_CLASSES, SHAPES_SPLITS, build_shapes_dataset


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    return str(root), build_shapes_dataset(str(root), seed=0)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_other_data(built, tmp_path):
    _, first = built
    again = build_shapes_dataset(str(tmp_path / "a"), seed=0)
    other = build_shapes_dataset(str(tmp_path / "b"), seed=1)
    for rel in ("annotations/instances_train.json", "val/00003.png", "train/00400.png"):
        assert _read(os.path.join(first, rel)) == _read(os.path.join(again, rel))
    rel = "annotations/instances_val.json"
    assert _read(os.path.join(first, rel)) != _read(os.path.join(other, rel))


def test_annotations_are_valid_coco(built):
    _, folder = built
    for split, (num_images, _) in SHAPES_SPLITS.items():
        coco = COCO(os.path.join(folder, "annotations", f"instances_{split}.json"))
        assert len(coco.getImgIds()) == num_images
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == SHAPES_CLASSES
        anns = coco.loadAnns(coco.getAnnIds())
        assert len(anns) >= num_images  # at least one object per image on average
        # every class is well represented
        counts = np.bincount([a["category_id"] for a in anns], minlength=4)[1:]
        assert counts.min() > 0.2 * len(anns)
        for a in anns[:200]:
            x, y, w, h = a["bbox"]
            poly = np.array(a["segmentation"][0]).reshape(-1, 2)
            # the box is the polygon's extent, inside the 128x128 image
            np.testing.assert_allclose(poly.min(0), [x, y], atol=0.02)
            np.testing.assert_allclose(poly.max(0), [x + w, y + h], atol=0.02)
            assert poly.min() >= 0 and poly.max() <= 128
            # the mask rasterises to about the polygon's area
            mask = coco.annToMask(a)
            assert abs(int(mask.sum()) - a["area"]) <= 0.25 * a["area"] + 20


def test_objects_are_visible_in_the_pixels(built):
    """Pixels inside an object's mask differ clearly from the image's background."""
    import cv2

    _, folder = built
    coco = COCO(os.path.join(folder, "annotations", "instances_val.json"))
    for img in coco.loadImgs(coco.getImgIds()[:10]):
        pixels = cv2.imread(os.path.join(folder, "val", img["file_name"])).astype(float)
        fg = np.zeros(pixels.shape[:2], bool)
        for a in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
            mask = coco.annToMask(a).astype(bool)
            fg |= mask
        for a in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
            inner = cv2.erode(coco.annToMask(a), np.ones((3, 3), np.uint8)).astype(bool)
            if inner.sum() < 10:
                continue
            diff = np.linalg.norm(pixels[inner].mean(0) - pixels[~fg].mean(0))
            assert diff > 30


def test_rebuild_is_a_noop_and_leaves_no_temporary_folders(built):
    root, folder = built
    stamp = os.path.getmtime(os.path.join(folder, "meta.json"))
    assert build_shapes_dataset(root, seed=0) == folder
    assert os.path.getmtime(os.path.join(folder, "meta.json")) == stamp
    assert sorted(os.listdir(root)) == ["shapes"]


@pytest.mark.slow
def test_rebuild_with_other_seed_replaces_own_build(tmp_path):
    folder = build_shapes_dataset(str(tmp_path), seed=0)
    build_shapes_dataset(str(tmp_path), seed=3)
    with open(os.path.join(folder, "meta.json")) as f:
        assert json.load(f)["seed"] == 3


def test_refuses_to_touch_a_folder_it_did_not_make(tmp_path):
    user_file = tmp_path / "shapes" / "mine.txt"
    user_file.parent.mkdir()
    user_file.write_text("user data")
    with pytest.raises(FileExistsError, match="not made by the shapes generator"):
        build_shapes_dataset(str(tmp_path))
    assert user_file.read_text() == "user data"


def test_registered_splits_load_with_metadata():
    import shared_kd  # noqa: F401  (registers on import)

    dicts = DatasetCatalog.get("shapes_val")
    assert len(dicts) == SHAPES_SPLITS["val"][0]
    assert {a["category_id"] for d in dicts for a in d["annotations"]} == {0, 1, 2}
    meta = MetadataCatalog.get("shapes_val")
    assert meta.thing_classes == SHAPES_CLASSES
    assert meta.evaluator_type == "coco" and os.path.isfile(meta.json_file)
    assert len(DatasetCatalog.get("shapes_train")) == SHAPES_SPLITS["train"][0]
