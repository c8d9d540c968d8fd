"""train_net.py with LazyConfig (.py) configs: a Lazy teacher, a Lazy student distilled from it,
its export read by a process without shared_kd, evaluation, resume, and bad configs."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from detectron2.config import LazyConfig, instantiate

from shared_kd.detector_config import load_detector_config
from shared_kd.engine import setup_lazy
from shared_kd.lazy import LazyConfigError
from train_net import argument_parser

from ..conftest import REPO_ROOT, run_script
from .conftest import train_net
from .test_train_net import metrics

pytestmark = pytest.mark.slow  # runs train_net.py

SHAPES = os.path.join(REPO_ROOT, "configs", "shapes")
TEACHER = os.path.join(SHAPES, "faster_rcnn_R34_FPN_tiny_teacher.py")
SHAREDKD = os.path.join(SHAPES, "sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.py")
# Tiny runs: batch 2, no worker processes, evaluation at 64 px on shapes_val.
FAST = [
    "dataloader.train.total_batch_size=2",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
    "dataloader.test.mapper.augmentations.0.short_edge_length=64",
    "dataloader.test.mapper.augmentations.0.max_size=64",
    "train.log_period=1",
]


@pytest.fixture(scope="module")
def lazy_teacher(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("lazy_teacher"))
    train_net("--config-file", TEACHER, "train.max_iter=2", f"train.output_dir={out}", *FAST)
    return out


@pytest.fixture(scope="module")
def lazy_distilled(tmp_path_factory, lazy_teacher):
    out = str(tmp_path_factory.mktemp("lazy_distilled"))
    res = train_net(
        "--config-file",
        SHAREDKD,
        f"model.guides.0.weights={lazy_teacher}/model_final.pth",
        "model.losses.SharedKDLoss.cross=True",  # both terms, with the options' spelling
        "train.max_iter=3",
        "~dataloader.evaluator",  # the teacher's run tests evaluation
        f"train.output_dir={out}",
        *FAST,
    )
    return out, res.stdout


def test_the_lazy_teacher_trains_and_evaluates(lazy_teacher):
    rows = metrics(lazy_teacher)
    assert [r["iteration"] for r in rows if "total_loss" in r] == [0, 1]
    assert "bbox/AP" in rows[-1]
    assert os.path.isfile(os.path.join(lazy_teacher, "model_final.pth"))
    assert os.path.isfile(os.path.join(lazy_teacher, "inference", "coco_instances_results.json"))


def test_a_lazy_student_distils_from_a_lazy_teacher(lazy_distilled):
    out, log = lazy_distilled
    train = [r for r in metrics(out) if "total_loss" in r]
    assert [r["iteration"] for r in train] == [0, 1, 2]
    assert {"loss_sharedkd_ident", "loss_sharedkd_cross", "loss_cls"} <= set(train[-1])
    # the TSM's health follows train.log_period=1 (every iteration), not detectron2's 20
    assert [r["iteration"] for r in train if "distill/tsm_gate0_p2" in r] == [0, 1, 2]
    assert not any("bbox/AP" in r for r in metrics(out))  # ~dataloader.evaluator: none
    # only the student's and the losses' weights are saved (the teacher is a guest)
    state = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)["model"]
    assert state and all(k.startswith(("student.", "losses.")) for k in state)
    assert log.count("Exported the student to") == 1


def test_the_exported_student_runs_without_shared_kd(lazy_distilled):
    out, _ = lazy_distilled
    student = os.path.join(out, "student")
    config = LazyConfig.load(os.path.join(student, "config.yaml"))
    assert config.model._target_ == "detectron2.modeling.GeneralizedRCNN"
    assert config.train.init_checkpoint == os.path.join(student, "model_final.pth")
    script = f"""
import json, sys, torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate
cfg = LazyConfig.load({os.path.join(student, "config.yaml")!r})
model = instantiate(cfg.model).eval()
DetectionCheckpointer(model).load(cfg.train.init_checkpoint)
torch.manual_seed(0)
image = torch.randint(0, 256, (3, 64, 64)).float()
with torch.no_grad():
    scores = model([{{"image": image}}])[0]["instances"].scores.tolist()
assert not [m for m in sys.modules if m.startswith("shared_kd")]
print(json.dumps(scores))
"""
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=str(student)
    )
    assert res.returncode == 0, res.stderr[-3000:]
    scores = json.loads(res.stdout.strip().splitlines()[-1])
    # the same student in this process, from the distillation checkpoint
    model = instantiate(LazyConfig.load(os.path.join(student, "config.yaml")).model).eval()
    state = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)["model"]
    model.load_state_dict({k[len("student.") :]: v for k, v in state.items() if "student." in k})
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 64, 64)).float()
    with torch.no_grad():
        expected = model([{"image": image}])[0]["instances"].scores.tolist()
    assert scores == pytest.approx(expected, abs=1e-6)


def test_eval_only_and_resume(lazy_teacher, tmp_path):
    """Evaluation of a checkpoint, the refusal to train over a run, and --resume."""
    res = train_net(
        "--config-file",
        TEACHER,
        "--eval-only",
        f"train.init_checkpoint={lazy_teacher}/model_final.pth",
        f"train.output_dir={tmp_path / 'eval'}",
        *FAST,
    )
    assert "copypaste: AP,AP50" in res.stdout + res.stderr
    cost = json.loads((tmp_path / "eval" / "cost.json").read_text())  # beside the metrics
    assert cost["params"] > 1e6 and cost["gflops"]["mean"] > 0
    out = tmp_path / "resumed"
    shutil.copytree(lazy_teacher, out)  # a finished 2-iteration run
    refused = train_net("--config-file", TEACHER, f"train.output_dir={out}", *FAST, expect_ok=False)
    assert refused.returncode != 0 and "Pass --resume" in refused.stderr
    resume = ["--resume", "train.max_iter=3", "~dataloader.evaluator", f"train.output_dir={out}"]
    train_net("--config-file", TEACHER, *resume, *FAST)
    iterations = [r["iteration"] for r in metrics(out) if "total_loss" in r]
    assert iterations == [0, 1, 2]  # the resumed run did only the third iteration


@pytest.mark.parametrize(
    "override, match",
    [
        ("train.amp.enabled=True", "AMPTrainer trains on CUDA only"),
        ("train.device=cuda", "this machine has no CUDA"),
        ("model.input_format=RGB", "would read its images in another channel order"),
        ("train.max_iters=3", "did you mean max_iter"),
    ],
)
def test_bad_lazy_settings_stop_before_training(tmp_path, override, match):
    if override == "train.device=cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = argument_parser().parse_args(
        ["--config-file", TEACHER, override, f"train.output_dir={tmp_path / 'run'}"]
    )
    with pytest.raises(LazyConfigError, match=match):
        setup_lazy(args)  # train_net.py's first step for a .py config
    assert not os.path.exists(tmp_path / "run")  # nothing was written


def test_the_demos_yaml_student_distils_from_a_model_zoo_lsj_teacher(tmp_path):
    """detectron2's LSJ R50 Mask R-CNN (a LazyConfig of its model zoo) as the teacher of the
    demo's tiny yaml student; random weights saved here (nothing is downloaded)."""
    teacher = "model_zoo:new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py"
    torch.manual_seed(0)
    weights = tmp_path / "lsj_r50.pth"
    torch.save({"model": load_detector_config(teacher).build_model("cpu").state_dict()}, weights)
    out = tmp_path / "run"
    train_net(
        "--config-file",
        os.path.join(SHAPES, "sharedkd_faster_rcnn_R18FPN128_to_R18_FPN_tiny.yaml"),
        "MODEL.DISTILL.TEACHER.CONFIG_FILE",
        teacher,
        "MODEL.DISTILL.TEACHER.WEIGHTS",
        str(weights),
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.IMS_PER_BATCH",
        "2",
        "DATALOADER.NUM_WORKERS",
        "0",
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        str(out),
    )
    train = [r for r in metrics(str(out)) if "total_loss" in r]
    assert train[-1]["iteration"] == 1 and train[-1]["loss_sharedkd_ident"] > 0


def test_the_export_tool_exports_a_lazy_checkpoint(lazy_distilled, tmp_path):
    out, _ = lazy_distilled
    run_script(
        "tools/export_student.py",
        "--config-file",
        SHAREDKD,
        "--checkpoint",
        os.path.join(out, "model_final.pth"),
        "--output-dir",
        str(tmp_path / "export"),
        f"model.guides.0.weights={out}/model_final.pth",  # not read: the export builds nothing
    )
    config = LazyConfig.load(str(tmp_path / "export" / "config.yaml"))
    assert config.model._target_ == "detectron2.modeling.GeneralizedRCNN"
    state = torch.load(tmp_path / "export" / "model_final.pth", weights_only=True)["model"]
    assert "roi_heads.box_predictor.cls_score.weight" in state
