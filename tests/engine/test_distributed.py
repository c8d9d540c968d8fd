"""Two CPU processes (GLOO) train one distilled student through train_net.py's Trainer."""

import json
import os

import pytest
import torch

from ..conftest import REPO_ROOT, run_script

pytestmark = pytest.mark.slow  # starts processes on several ports / machines

CONFIGS = os.path.join(REPO_ROOT, "configs", "shapes")


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, random_teacher):
    root = tmp_path_factory.mktemp("ddp")
    out, report = root / "run", root / "report"
    report.mkdir()
    log = run_script(
        "tests/engine/ddp_train.py",
        "--num-gpus",
        "2",
        "--report-dir",
        str(report),
        "--config-file",
        os.path.join(CONFIGS, "sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.yaml"),
        "MODEL.DISTILL.TEACHER.WEIGHTS",
        random_teacher,
        "MODEL.DISTILL.SHARED_KD.CROSS",  # off by default; on, both loss terms are logged
        "True",
        "SOLVER.MAX_ITER",
        "3",
        "SOLVER.IMS_PER_BATCH",
        "4",
        "SOLVER.WARMUP_ITERS",
        "1",
        "DATALOADER.NUM_WORKERS",
        "0",
        "TEST.EVAL_PERIOD",
        "0",
        "OUTPUT_DIR",
        str(out),
        fresh_process=True,  # it starts the two ranks
    )
    return out, report, log


def test_both_processes_train_the_same_student(two_process_run):
    _, report, _ = two_process_run
    reports = [json.loads((report / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in reports:
        assert r["world_size"] == 2 and r["backend"] == "gloo"
        assert r["wrapper"] == "DistributedDataParallel" and r["device_ids"] in (None, [])
        assert not r["teacher_in_ddp"] and not r["teacher_training"]
    init = [torch.load(report / f"rank{r}_init.pth", weights_only=True) for r in (0, 1)]
    final = [torch.load(report / f"rank{r}_final.pth", weights_only=True) for r in (0, 1)]
    # The ranks read different images (the sampler shards the stream), so identical weights
    # after the steps mean their gradients were averaged; and the steps changed the weights.
    assert init[0].keys() == final[1].keys()
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[0])
    key = "student.roi_heads.box_predictor.cls_score.weight"
    assert not torch.equal(init[0][key], final[0][key])
    assert any(k.startswith("losses.") for k in final[0])


def test_only_the_main_process_writes(two_process_run):
    out, _, log = two_process_run
    names = sorted(os.listdir(out))
    assert [n for n in names if n.endswith(".pth")] == ["model_final.pth"]
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    assert (out / "student" / "model_final.pth").is_file()
    assert (out / "inference" / "shapes_val" / "coco_instances_results.json").is_file()
    assert "log.txt.rank1" in names  # the second process ran (and logged only to its file)
    assert log.count("Exported the student to") == 1


def test_losses_are_logged_once_averaged_over_processes(two_process_run):
    out, _, _ = two_process_run
    rows = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    train = [r for r in rows if "total_loss" in r]
    # One writer (the main process, with the metrics gathered from both): one row per write.
    iterations = [r["iteration"] for r in train]
    assert iterations and len(set(iterations)) == len(iterations) and iterations[-1] == 2
    assert {"loss_sharedkd_ident", "loss_sharedkd_cross"} <= set(train[-1])
