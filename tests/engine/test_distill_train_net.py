"""A whole distillation run through train_net.py: teacher, student, export, evaluation."""

import json
import os

import pytest

from ..conftest import REPO_ROOT, run_script

pytestmark = pytest.mark.slow  # runs train_net.py

CONFIGS = os.path.join(REPO_ROOT, "configs", "shapes")
FAST = ["SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0", "SOLVER.WARMUP_ITERS", "2"]
# Evaluating on 64 px images (trained on 128 px) halves the evaluations' time; the tests check
# that runs evaluate, not their APs.
FAST += ["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64"]


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    """A 6-iteration teacher, then an 8-iteration Shared-KD student (checkpoint at 4)."""
    root = tmp_path_factory.mktemp("distill")
    teacher_dir, student_dir = str(root / "teacher"), str(root / "student_run")
    teacher_cfg = os.path.join(CONFIGS, "faster_rcnn_R34_FPN_tiny_teacher.yaml")
    run_script(
        "train_net.py",
        "--config-file",
        teacher_cfg,
        "SOLVER.MAX_ITER",
        "6",
        "TEST.EVAL_PERIOD",
        "0",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        teacher_dir,
        *FAST,
    )
    log = run_script(
        "train_net.py",
        "--config-file",
        os.path.join(CONFIGS, "sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.yaml"),
        "MODEL.DISTILL.TEACHER.WEIGHTS",
        os.path.join(teacher_dir, "model_final.pth"),
        "SOLVER.MAX_ITER",
        "8",
        "SOLVER.CHECKPOINT_PERIOD",
        "4",
        # every part on (the defaults leave the cross-layer term off and the TSM's gates fixed)
        "MODEL.DISTILL.SHARED_KD.CROSS",
        "True",
        "MODEL.DISTILL.SHARED_KD.TSM_LEARN_GATES",
        "True",
        "OUTPUT_DIR",
        student_dir,
        *FAST,
    )
    return root, student_dir, log


def test_every_term_is_logged_and_the_run_evaluated(distilled):
    _, out, log = distilled
    with open(os.path.join(out, "metrics.json")) as f:
        rows = [json.loads(line) for line in f]
    train = [r for r in rows if "total_loss" in r]
    assert {"loss_sharedkd_ident", "loss_sharedkd_cross", "loss_cls", "loss_rpn_cls"} <= set(
        train[-1]
    )
    assert any("bbox/AP" in r for r in rows)
    assert "Exported the student to" in log


def test_checkpoints_hold_no_teacher(distilled):
    import torch

    _, out, _ = distilled
    state = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)["model"]
    assert state and all(k.startswith(("student.", "losses.")) for k in state)


def test_exported_student_evaluates_as_a_plain_detectron2_model(distilled):
    root, out, _ = distilled
    student_cfg = os.path.join(out, "student", "config.yaml")
    log = run_script(
        "train_net.py",
        "--config-file",
        student_cfg,
        "--eval-only",
        "OUTPUT_DIR",
        str(root / "eval"),
    )
    assert "copypaste: AP,AP50,AP75,APs,APm,APl" in log


def test_export_tool_exports_an_intermediate_checkpoint(distilled):
    root, out, _ = distilled
    dest = root / "export_4"
    run_script(
        "tools/export_student.py",
        "--config-file",
        os.path.join(CONFIGS, "sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.yaml"),
        "--checkpoint",
        os.path.join(out, "model_0000003.pth"),
        "--output-dir",
        str(dest),
    )
    assert sorted(os.listdir(dest)) == ["config.yaml", "model_final.pth"]


def test_export_tool_writes_torchscript_and_onnx(distilled):
    root, out, _ = distilled
    dest = root / "export_programs"
    log = run_script(
        "tools/export_student.py",
        "--config-file",
        os.path.join(CONFIGS, "sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.yaml"),
        "--checkpoint",
        os.path.join(out, "model_final.pth"),
        "--output-dir",
        str(dest),
        "--format",
        "torchscript",
        "--format",
        "onnx",
    )
    assert {"model.ts", "model.ts.json", "model.onnx", "model.onnx.json"} <= set(os.listdir(dest))
    info = json.loads((dest / "model.ts.json").read_text())
    assert info["outputs"] == ["pred_boxes", "pred_classes", "scores", "image_size"]
    assert info["input_format"] == "BGR" and "Wrote" in log
