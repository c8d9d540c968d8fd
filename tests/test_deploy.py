"""
Exported detectors run without Python detectron2: TorchScript files loaded by a process that
imports only torch and torchvision, ONNX files run by onnxruntime, both against the eager
model's outputs on real shapes_val images.

Tolerance: boxes within 1e-3 pixels and scores within 1e-4 of the eager model's (the same
kernels on the same machine; only the traced graph's op order may differ), the same number of
detections, the same classes.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from detectron2.modeling import build_model

from shared_kd.benchmark import load_test_images
from shared_kd.deploy import eager_outputs, export_detector
from shared_kd.detector_config import DetectorConfig
from shared_kd.utils.testing import get_tiny_cfg

from .conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # runs the cost tool and exports in processes

FAMILIES = ("faster_rcnn", "mask_rcnn", "retinanet", "fcos")
NUM_IMAGES = 2
# Runs in a fresh interpreter: loads every exported file with torch / torchvision / onnxruntime
# only, runs it on the saved images and saves its outputs.
RUNNER = r"""
import json, sys
import torch, torchvision  # torchvision registers the nms and roi_align ops
folder = sys.argv[1]
jobs = json.load(open(f"{folder}/jobs.json"))
images = torch.load(f"{folder}/images.pt")
results = {}
for name, path in jobs.items():
    if path.endswith(".ts"):
        program = torch.jit.load(path)
        results[name] = [[o.detach() for o in program(x)] for x in images]
    else:
        import onnxruntime
        session = onnxruntime.InferenceSession(path)
        feed = session.get_inputs()[0].name
        results[name] = [
            [torch.from_numpy(o) for o in session.run(None, {feed: x.numpy()})] for x in images
        ]
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("detectron2", "shared_kd"))
torch.save({"results": results, "loaded": loaded}, f"{folder}/results.pt")
"""


def _model(family):
    cfg = get_tiny_cfg(family, fpn_channels=64)  # GN heads: 2 channels per group at 1 x 1
    cfg.INPUT.MIN_SIZE_TEST = cfg.INPUT.MAX_SIZE_TEST = 128
    # random weights: keep every candidate, so that there are detections to compare
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.FCOS.SCORE_THRESH_TEST = 0.0
    cfg.DATASETS.TEST = ("shapes_val",)
    torch.manual_seed(0)
    return build_model(cfg).eval(), DetectorConfig("tiny", cfg)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deploy")
    jobs, eager, infos = {}, {}, {}
    images = None
    for family in FAMILIES:
        model, config = _model(family)
        if images is None:
            images = [x["image"] for x in load_test_images(config, NUM_IMAGES)]
        eager[family] = [eager_outputs(model, x) for x in images]
        for fmt, suffix in (("torchscript", ".ts"), ("onnx", ".onnx")):
            path = str(folder / f"{family}{suffix}")
            infos[f"{family}{suffix}"] = export_detector(model, images[0], path, fmt)
            jobs[f"{family}{suffix}"] = path
    (folder / "jobs.json").write_text(json.dumps(jobs))
    torch.save(images, folder / "images.pt")
    res = subprocess.run(
        [sys.executable, "-c", RUNNER, str(folder)], capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert res.returncode == 0, res.stderr[-3000:]
    ran = torch.load(folder / "results.pt", weights_only=False)
    return eager, ran, infos, folder


def test_the_runner_imports_neither_detectron2_nor_shared_kd(exported):
    _, ran, _, _ = exported
    assert ran["loaded"] == []


@pytest.mark.parametrize("suffix", [".ts", ".onnx"])
@pytest.mark.parametrize("family", FAMILIES)
def test_the_exported_detector_gives_the_eager_detections(exported, family, suffix):
    eager, ran, infos, _ = exported
    names = infos[family + suffix]["outputs"]
    assert names[:2] == ["pred_boxes", "pred_classes"] and names[-2:] == ["scores", "image_size"]
    for ours, theirs in zip(eager[family], ran["results"][family + suffix]):
        assert len(ours) == len(theirs) == len(names)
        out = dict(zip(names, theirs))
        ref = dict(zip(names, ours))
        assert len(ref["scores"]) > 0  # detections to compare
        assert torch.equal(out["pred_classes"].long(), ref["pred_classes"].long())
        torch.testing.assert_close(out["pred_boxes"], ref["pred_boxes"], rtol=0, atol=1e-3)
        torch.testing.assert_close(out["scores"], ref["scores"], rtol=0, atol=1e-4)
        if "pred_masks" in names:
            torch.testing.assert_close(out["pred_masks"], ref["pred_masks"], rtol=0, atol=1e-4)


def test_the_json_describes_the_program(exported):
    _, _, _, folder = exported
    info = json.loads((folder / "mask_rcnn.ts.json").read_text())
    assert info["outputs"] == ["pred_boxes", "pred_classes", "pred_masks", "scores", "image_size"]
    assert info["input_format"] == "BGR" and info["traced_image_size"] == [128, 128]
    assert info["meta_architecture"] == "GeneralizedRCNN"


def test_unsupported_formats_are_named(tmp_path):
    model, _ = _model("faster_rcnn")
    image = torch.zeros(3, 64, 64, dtype=torch.uint8)
    with pytest.raises(ValueError, match="torch.export cannot trace the data-dependent"):
        export_detector(model, image, str(tmp_path / "m.pt2"), "torch.export")
    with pytest.raises(ValueError, match="Trace on a 3 x H x W uint8 image"):
        export_detector(model, image.float(), str(tmp_path / "m.ts"))
    assert not os.listdir(tmp_path)  # nothing half-written
