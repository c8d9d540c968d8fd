"""
train_net.py on a user's own COCO-format dataset, named only by DATASETS.COCO_INSTANCES on
the command line: training, evaluation, --eval-only from the saved config.sharedkd.yaml (from
another folder), a class-count mismatch, and a Shared-KD run whose exported student evaluates.
"""

import json
import os
import re

import pytest

from .conftest import BASELINE, FAST, coco_instances, read_yaml, train_net

pytestmark = pytest.mark.slow  # runs train_net.py

COPYPASTE = re.compile(r"copypaste: AP,AP50,AP75,APs,APm,APl\n.*copypaste: ([0-9.,na]+)")


def _metrics(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def _copypaste_ap(log):
    found = COPYPASTE.findall(log)
    assert found, log[-3000:]
    return float(found[-1].split(",")[0])


def _results(out, name="mine_val"):
    path = os.path.join(out, "inference", name, "coco_instances_results.json")
    assert os.path.isfile(path), os.listdir(out)
    with open(path) as f:
        return json.load(f)


def _same_detections(a, b):
    """The same detections (up to float noise of another thread count)."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x["image_id"], x["category_id"]) == (y["image_id"], y["category_id"])
        assert x["bbox"] == pytest.approx(y["bbox"], abs=1e-2)
        assert x["score"] == pytest.approx(y["score"], abs=1e-4)


def test_trains_and_evaluates_on_the_own_dataset(own_baseline, own_dataset):
    out, log = own_baseline
    # The datasets were read from the given files: 8 training and 4 validation images.
    assert f"Loaded 8 images in COCO format from {own_dataset['train'][0]}" in log
    assert f"Loaded 4 images in COCO format from {own_dataset['val'][0]}" in log
    rows = _metrics(out)
    assert [r for r in rows if "total_loss" in r][-1]["iteration"] == 2
    assert "Evaluation results for bbox" in log
    ap = [r for r in rows if "bbox/AP" in r]
    assert ap and 0.0 <= ap[-1]["bbox/AP"] <= 100.0
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    detections = _results(out)  # COCOEvaluator wrote mine_val's detections
    assert {d["image_id"] for d in detections} <= {1, 2, 3, 4}
    assert all(d["category_id"] in (1, 2, 3) for d in detections)


def test_saved_configs_name_the_datasets_by_absolute_paths(own_baseline, own_dataset):
    out, _ = own_baseline
    sharedkd = read_yaml(os.path.join(out, "config.sharedkd.yaml"))
    assert sharedkd["DATASETS"]["COCO_INSTANCES"] == [
        ["mine_train", *own_dataset["train"]],
        ["mine_val", *own_dataset["val"]],
    ]
    assert not os.path.isabs(own_dataset["rel_train"][0])  # the command line gave them relative
    assert sharedkd["DATASETS"]["TRAIN"] == ["mine_train"]
    assert sharedkd["DATASETS"]["TEST"] == ["mine_val"]
    # config.yaml is the same without the project's keys.
    plain = read_yaml(os.path.join(out, "config.yaml"))
    assert "COCO_INSTANCES" not in plain["DATASETS"]
    del sharedkd["DATASETS"]["COCO_INSTANCES"]
    assert plain == sharedkd


def test_eval_only_from_the_saved_config_in_another_folder(own_baseline, tmp_path):
    out, log = own_baseline
    eval_dir = tmp_path / "eval"
    cwd = tmp_path / "elsewhere"  # the saved paths are absolute: any current directory works
    cwd.mkdir()
    res = train_net(
        "--config-file",
        os.path.join(out, "config.sharedkd.yaml"),
        "--eval-only",
        "MODEL.WEIGHTS",
        os.path.join(out, "model_final.pth"),
        "OUTPUT_DIR",
        str(eval_dir),
        cwd=str(cwd),
    )
    eval_log = res.stdout + res.stderr
    assert "Loaded 4 images in COCO format" in eval_log
    # The same weights on the same images: the training run's final AP.
    trained_ap = [r for r in _metrics(out) if "bbox/AP" in r][-1]["bbox/AP"]
    assert _copypaste_ap(eval_log) == pytest.approx(trained_ap, abs=1e-4)
    _same_detections(_results(str(eval_dir)), _results(out))
    assert not os.listdir(cwd)  # nothing written into the current directory
    # The evaluation folder gets portable configs too.
    assert "COCO_INSTANCES" not in read_yaml(eval_dir / "config.yaml")["DATASETS"]
    assert (eval_dir / "config.sharedkd.yaml").is_file()


def _mismatch_message(key, name):
    return (
        f"DatasetError: {key} names {name!r}, whose annotation file has 5 categories, but the "
        "model has 3 classes (MODEL.ROI_HEADS.NUM_CLASSES). Set MODEL.ROI_HEADS.NUM_CLASSES 5."
    )


@pytest.mark.parametrize("where", ["DATASETS.TRAIN", "DATASETS.TEST", "--eval-only"])
def test_a_category_count_mismatch_stops_before_training(own_dataset, tmp_path, where):
    out = tmp_path / "out"
    five = ("mine5", *own_dataset["val5"])
    three = ("mine3", *own_dataset["val"])
    train, test = {
        "DATASETS.TRAIN": ("mine5", "mine3"),
        "DATASETS.TEST": ("mine3", "mine5"),
        "--eval-only": ("mine3", "mine5"),
    }[where]
    args = [
        "--config-file",
        BASELINE,
        "DATASETS.COCO_INSTANCES",
        coco_instances(five, three),
        "DATASETS.TRAIN",
        f"('{train}',)",
        "DATASETS.TEST",
        f"('{test}',)",
        "SOLVER.MAX_ITER",
        "3",
        "OUTPUT_DIR",
        str(out),
        *FAST,
    ]
    if where == "--eval-only":
        args.insert(2, "--eval-only")
    res = train_net(*args, expect_ok=False)
    assert res.returncode != 0
    key = "DATASETS.TEST" if where == "--eval-only" else where
    assert _mismatch_message(key, "mine5") in res.stderr, res.stderr[-3000:]
    # Nothing was built or trained: no checkpoint, no metrics, no evaluation.
    for name in ("model_final.pth", "last_checkpoint", "metrics.json", "inference"):
        assert not (out / name).exists()
    assert "Starting training" not in res.stdout + res.stderr


def test_distillation_on_the_own_dataset_exports_a_student_that_evaluates(
    own_distilled, own_dataset, tmp_path
):
    out, log = own_distilled
    assert f"Loaded 8 images in COCO format from {own_dataset['train'][0]}" in log
    assert "Exported the student to" in log
    assert any("bbox/AP" in r for r in _metrics(out))
    # The distillation run keeps detectron2's config (only SharedKD builds the model) ...
    run_cfg = read_yaml(os.path.join(out, "config.yaml"))
    assert run_cfg["MODEL"]["META_ARCHITECTURE"] == "DistillationDetector"
    assert run_cfg["DATASETS"]["COCO_INSTANCES"][0] == ["mine_train", *own_dataset["train"]]
    assert not os.path.exists(os.path.join(out, "config.sharedkd.yaml"))
    # ... and the exported student has both: plain, and with the datasets (absolute).
    student = os.path.join(out, "student")
    assert "COCO_INSTANCES" not in read_yaml(os.path.join(student, "config.yaml"))["DATASETS"]
    student_cfg = read_yaml(os.path.join(student, "config.sharedkd.yaml"))
    assert student_cfg["MODEL"]["META_ARCHITECTURE"] == "GeneralizedRCNN"
    assert "DISTILL" not in student_cfg["MODEL"]
    assert student_cfg["DATASETS"]["COCO_INSTANCES"] == [
        ["mine_train", *own_dataset["train"]],
        ["mine_val", *own_dataset["val"]],
    ]
    assert student_cfg["MODEL"]["WEIGHTS"] == os.path.join(student, "model_final.pth")

    eval_dir = tmp_path / "student_eval"
    res = train_net(
        "--config-file",
        os.path.join(student, "config.sharedkd.yaml"),
        "--eval-only",
        "OUTPUT_DIR",
        str(eval_dir),
    )
    eval_log = res.stdout + res.stderr
    assert "Loaded 4 images in COCO format" in eval_log
    trained_ap = [r for r in _metrics(out) if "bbox/AP" in r][-1]["bbox/AP"]
    assert _copypaste_ap(eval_log) == pytest.approx(trained_ap, abs=1e-4)
    _same_detections(_results(str(eval_dir)), _results(out))
