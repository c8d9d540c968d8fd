"""train_net.py end to end on the embedded dataset: train, checkpoint, evaluate, resume."""

import json
import os

import pytest

from ..conftest import REPO_ROOT, run_script

pytestmark = pytest.mark.slow  # runs train_net.py

CONFIG = os.path.join(REPO_ROOT, "configs", "shapes", "faster_rcnn_R18_FPN_tiny.yaml")
FAST = ["SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0", "SOLVER.WARMUP_ITERS", "5"]
# Evaluating on 64 px images (trained on 128 px) halves the evaluations' time; the tests check
# that runs evaluate, not their APs.
FAST += ["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64"]


def train_net(*args):
    return run_script("train_net.py", *args, timeout=600)


def metrics(out_dir):
    with open(os.path.join(out_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("train_net"))
    log = train_net(
        "--config-file",
        CONFIG,
        "SOLVER.MAX_ITER",
        "20",
        "SOLVER.CHECKPOINT_PERIOD",
        "10",
        "OUTPUT_DIR",
        out,
        *FAST,
    )
    return out, log


def test_training_writes_checkpoints_metrics_and_evaluates(trained):
    out, log = trained
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    assert os.path.isfile(os.path.join(out, "model_0000009.pth"))
    rows = metrics(out)
    train_rows = [r for r in rows if "total_loss" in r]
    assert train_rows[-1]["iteration"] == 19
    assert {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"} <= set(train_rows[-1])
    # COCOEvaluator ran on shapes_val and reported the standard AP table
    assert "Evaluation results for bbox" in log
    ap = [r for r in rows if "bbox/AP" in r]
    assert ap and 0.0 <= ap[-1]["bbox/AP"] <= 100.0


def test_eval_only_loads_weights_and_reports_ap(trained):
    out, _ = trained
    eval_dir = os.path.join(out, "eval")
    log = train_net(
        "--config-file",
        CONFIG,
        "--eval-only",
        "MODEL.WEIGHTS",
        os.path.join(out, "model_final.pth"),
        "OUTPUT_DIR",
        eval_dir,
    )
    assert "copypaste: AP,AP50,AP75,APs,APm,APl" in log
    results = os.path.join(eval_dir, "inference", "shapes_val", "coco_instances_results.json")
    assert os.path.isfile(results)
    # what the model costs, beside its metrics
    with open(os.path.join(eval_dir, "cost.json")) as f:
        cost = json.load(f)
    assert cost["params"] > 1e6 and cost["gflops"]["mean"] > 0 and cost["gflops"]["images"] == 3
    assert cost["latency_ms"]["runs"] == 10 and cost["latency_ms"]["median"] > 0
    assert "| params (M) |" in open(os.path.join(eval_dir, "cost.md")).read()


def test_resume_continues_from_last_checkpoint(trained):
    out, _ = trained
    log = train_net(
        "--config-file",
        CONFIG,
        "--resume",
        "SOLVER.MAX_ITER",
        "25",
        "SOLVER.CHECKPOINT_PERIOD",
        "10",
        "TEST.EVAL_PERIOD",
        "0",
        "OUTPUT_DIR",
        out,
        *FAST,
    )
    assert "Starting training from iteration 20" in log
    assert [r for r in metrics(out) if "total_loss" in r][-1]["iteration"] == 24
