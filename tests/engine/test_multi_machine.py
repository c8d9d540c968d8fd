"""
Two "machines" on this box: train_net.py's launch with --num-machines 2, one process per machine
(--machine-rank 0 and 1, --dist-url tcp://127.0.0.1:<free port>), for a yaml and a .py config.
"""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from ..conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # starts processes on several ports / machines

SHAPES = os.path.join(REPO_ROOT, "configs", "shapes")
YAML = [
    os.path.join(SHAPES, "sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.yaml"),
    "SOLVER.MAX_ITER",
    "2",
    "SOLVER.IMS_PER_BATCH",
    "4",
    "SOLVER.WARMUP_ITERS",
    "1",
    "DATALOADER.NUM_WORKERS",
    "0",
    "DATASETS.TEST",
    "()",
]
LAZY = [
    os.path.join(SHAPES, "sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.py"),
    "train.max_iter=2",
    "dataloader.train.total_batch_size=4",
    "dataloader.train.num_workers=0",
    "~dataloader.evaluator",  # no evaluation, as the yaml twin's DATASETS.TEST ()
]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=["yaml", "py"])
def two_machines(request, tmp_path_factory, random_teacher):
    root = tmp_path_factory.mktemp(f"machines_{request.param}")
    out, report = root / "run", root / "report"
    report.mkdir()
    if request.param == "yaml":
        config, *opts = YAML
        opts += ["MODEL.DISTILL.TEACHER.WEIGHTS", random_teacher, "OUTPUT_DIR", str(out)]
    else:
        # the .py twin of the yaml teacher: the same weight names, so the same random weights
        config, *opts = LAZY
        opts += [f"model.guides.0.weights={random_teacher}", f"train.output_dir={out}"]
    url = f"tcp://127.0.0.1:{_free_port()}"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "tests/engine/ddp_train.py",
                "--report-dir",
                str(report),
                "--num-gpus",
                "1",
                "--num-machines",
                "2",
                "--machine-rank",
                str(rank),
                "--dist-url",
                url,
                "--config-file",
                config,
                *opts,
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=600)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    return out, report, [p.returncode for p in procs], logs


def test_both_machines_finish_with_the_same_student(two_machines):
    out, report, codes, logs = two_machines
    assert codes == [0, 0], "\n".join(log[-2000:] for log in logs)
    reports = [json.loads((report / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in reports] == [2, 2]
    assert all(not r["teacher_in_ddp"] and not r["teacher_training"] for r in reports)
    init = [torch.load(report / f"rank{r}_init.pth", weights_only=True) for r in (0, 1)]
    final = [torch.load(report / f"rank{r}_final.pth", weights_only=True) for r in (0, 1)]
    assert final[0].keys() == final[1].keys() and any(k.startswith("losses.") for k in final[0])
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[0])
    key = "student.roi_heads.box_predictor.cls_score.weight"
    assert not torch.equal(init[0][key], final[0][key])  # the steps changed the weights


def test_one_checkpoint_from_the_first_machine(two_machines):
    out, _, codes, _ = two_machines
    assert codes == [0, 0]
    assert sorted(n for n in os.listdir(out) if n.endswith(".pth")) == ["model_final.pth"]
    assert (out / "student" / "model_final.pth").is_file()
    assert "log.txt.rank1" in os.listdir(out)
