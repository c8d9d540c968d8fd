"""
Tiny training runs shared by the end-to-end tests of own datasets and portable configs
(test_own_dataset.py, test_portable_config.py): each runs once per session.
"""

import os
import subprocess
import sys

import pytest
import yaml

from ..coco_subset import write_coco_subset
from ..conftest import REPO_ROOT, run_script

CONFIGS = os.path.join(REPO_ROOT, "configs", "shapes")
BASELINE = os.path.join(CONFIGS, "faster_rcnn_R18_FPN_tiny.yaml")
TEACHER = os.path.join(CONFIGS, "faster_rcnn_R34_FPN_tiny_teacher.yaml")
SHAREDKD = os.path.join(CONFIGS, "sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.yaml")
# Tiny runs: batch 2, no worker processes, evaluation at 64 px.
FAST = [
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.WARMUP_ITERS",
    "2",
    "DATALOADER.NUM_WORKERS",
    "0",
    "INPUT.MIN_SIZE_TEST",
    "64",
    "INPUT.MAX_SIZE_TEST",
    "64",
]


def train_net(*args, cwd=REPO_ROOT, expect_ok=True, timeout=600):
    """
    Run train_net.py (by its absolute path) from ``cwd``; return a CompletedProcess. A run from
    the repository root that must succeed runs in this process (``run_script``); a run expected
    to fail, or from another folder, in a fresh interpreter, as a user's command would (its
    datasets registered anew, its exit status and stderr its own).
    """
    if cwd == REPO_ROOT and expect_ok:
        out = run_script("train_net.py", *args, timeout=timeout)
        return subprocess.CompletedProcess(args, 0, out, "")
    res = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "train_net.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if expect_ok:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def read_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="session")
def own_dataset(tmp_path_factory):
    """
    A user's own COCO dataset outside the repository: 8 training images and 4 validation
    images copied from shapes (ids renumbered), and the validation json with 5 categories.

    Returns:
        dict: split -> (json, image folder), absolute; "rel_" + split: the same relative to
        the repository root (where train_net.py runs).
    """
    root = str(tmp_path_factory.mktemp("own_dataset"))
    data = {
        "train": write_coco_subset(root, "train", split="train", num_images=8, first=10),
        "val": write_coco_subset(root, "val", split="val", num_images=4, first=0),
        "val5": write_coco_subset(root, "val5", split="val", num_images=4, num_categories=5),
    }
    for split, files in list(data.items()):
        data["rel_" + split] = tuple(os.path.relpath(p, REPO_ROOT) for p in files)
    return data


def coco_instances(*entries):
    """The command-line value of DATASETS.COCO_INSTANCES for (name, json, images) entries."""
    return str([list(e) for e in entries])


def own_dataset_opts(data, relative=True):
    """DATASETS.* overrides that train on mine_train and evaluate on mine_val."""
    prefix = "rel_" if relative else ""
    return [
        "DATASETS.COCO_INSTANCES",
        coco_instances(
            ("mine_train", *data[prefix + "train"]), ("mine_val", *data[prefix + "val"])
        ),
        "DATASETS.TRAIN",
        "('mine_train',)",
        "DATASETS.TEST",
        "('mine_val',)",
    ]


@pytest.fixture(scope="session")
def own_baseline(tmp_path_factory, own_dataset):
    """The tiny R18 Faster R-CNN, 3 iterations on mine_train, evaluated on mine_val; the
    datasets are given only on the command line, by paths relative to the repository root."""
    out = str(tmp_path_factory.mktemp("own_baseline"))
    res = train_net(
        "--config-file",
        BASELINE,
        *own_dataset_opts(own_dataset),
        "SOLVER.MAX_ITER",
        "3",
        "OUTPUT_DIR",
        out,
        *FAST,
    )
    return out, res.stdout + res.stderr


@pytest.fixture(scope="session")
def shapes_teacher(tmp_path_factory):
    """The tiny R34 teacher config, 3 iterations on shapes_train (no own dataset, no eval)."""
    out = str(tmp_path_factory.mktemp("shapes_teacher"))
    train_net(
        "--config-file",
        TEACHER,
        "SOLVER.MAX_ITER",
        "3",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        out,
        *FAST,
    )
    return out


@pytest.fixture(scope="session")
def own_distilled(tmp_path_factory, own_dataset, random_teacher):
    """A 2-iteration Shared-KD run (random-weight R34 teacher) on the own dataset."""
    out = str(tmp_path_factory.mktemp("own_distilled"))
    res = train_net(
        "--config-file",
        SHAREDKD,
        *own_dataset_opts(own_dataset),
        "MODEL.DISTILL.TEACHER.WEIGHTS",
        random_teacher,
        "SOLVER.MAX_ITER",
        "2",
        "OUTPUT_DIR",
        out,
        *FAST,
    )
    return out, res.stdout + res.stderr
