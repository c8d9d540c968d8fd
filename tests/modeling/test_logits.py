"""shared_kd.modeling.logits: the student's and a guide's classification logits on the same
locations (R-CNN: the student's sampled proposals; dense heads: every anchor/point)."""

import copy

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from torch.testing import assert_close

from shared_kd.modeling.logits import DenseLogitTap, RCNNLogitTap
from shared_kd.utils.testing import get_tiny_cfg, random_batch

from .test_distiller import _two_guide_distiller


def _tiny(family, **kwargs):
    torch.manual_seed(0)
    return build_model(get_tiny_cfg(family, **kwargs))


@pytest.fixture(scope="module")
def guides():
    """Tiny detectors that taps check as guides (never tapped themselves)."""
    return {
        "rcnn5": _tiny("faster_rcnn", num_classes=5),
        "retinanet": _tiny("retinanet"),
        "retinanet5": _tiny("retinanet", num_classes=5),
    }


def test_rcnn_tap_records_the_student_and_a_guide_scores_the_same_boxes():
    student = _tiny("faster_rcnn")
    tap = RCNNLogitTap(student)
    assert (tap.activation, tap.num_classes) == ("softmax", 3)
    batch = random_batch(1, size=64)
    student.train()
    with EventStorage():
        student(batch)
    logits = tap.pop_student_logits()
    assert logits.shape == (len(torch.cat([b.tensor for b in tap._boxes])), 4)  # K + 1 columns
    assert tap.pop_student_logits() is None  # popped: the step's tensors are not kept
    # the student as its own (frozen, eval-mode) guide scores the recorded boxes as it did
    student.eval()  # a guide's forward in eval mode records nothing
    with torch.no_grad():
        features = student.backbone(student.preprocess_image(batch).tensor)
    assert_close(tap.guide_logits(student, features), logits.detach())
    assert tap.pop_student_logits() is None
    with torch.no_grad():
        student(batch)  # nor does an evaluation during training
    assert tap.pop_student_logits() is None


def test_rcnn_tap_checks_the_guide(guides):
    tap = RCNNLogitTap(_tiny("faster_rcnn"))
    with pytest.raises(ValueError, match="The teacher is a RetinaNet; R-CNN logit KD needs R-CNN"):
        tap.check_guide(guides["retinanet"], "teacher")
    with pytest.raises(ValueError, match="the student has 3 classes and the teacher has 5"):
        tap.check_guide(guides["rcnn5"], "teacher")


def test_dense_tap_flattens_levels_image_by_image():
    tap = DenseLogitTap(_tiny("retinanet"))
    assert tap.activation == "sigmoid" and tap.in_features == ["p3", "p4", "p5", "p6", "p7"]
    tap.num_classes = 3  # K = 3, one anchor per location below
    fine = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    coarse = -torch.arange(1, 2 * 3 + 1, dtype=torch.float32).reshape(2, 3, 1, 1)
    rows = tap._flatten([fine, coarse])
    assert rows.shape == (2 * (4 + 1), 3)  # N x (sum of H*W*A over levels) rows, K columns
    assert rows[0].tolist() == fine[0, :, 0, 0].tolist()  # image 0, fine level, (0, 0)
    assert rows[1].tolist() == fine[0, :, 0, 1].tolist()  # row-major over H, W
    assert rows[4].tolist() == coarse[0, :, 0, 0].tolist() == [-1.0, -2.0, -3.0]
    assert rows[5].tolist() == fine[1, :, 0, 0].tolist()  # then image 1


def test_dense_tap_checks_the_guide(guides):
    tap = DenseLogitTap(_tiny("retinanet"))
    tap.check_guide(guides["retinanet"], "teacher")  # same levels, padding, anchors: fine
    with pytest.raises(ValueError, match="The teacher is a GeneralizedRCNN; dense logit KD"):
        tap.check_guide(guides["rcnn5"], "teacher")
    with pytest.raises(ValueError, match="the student has 3 classes and the teacher has 5"):
        tap.check_guide(guides["retinanet5"], "teacher")
    other = copy.deepcopy(guides["retinanet"])
    other.head_in_features = ["p3", "p4", "p5", "p6"]
    with pytest.raises(ValueError, match=r"the teacher's \['p3', 'p4', 'p5', 'p6'\]"):
        tap.check_guide(other, "teacher")
    other = copy.deepcopy(guides["retinanet"])
    other.backbone._size_divisibility = 128
    with pytest.raises(ValueError, match=r"the teacher pads its input to \(128, \{\}\)"):
        tap.check_guide(other, "teacher")
    other = copy.deepcopy(guides["retinanet"])
    next(iter(other.anchor_generator.cell_anchors)).mul_(2)
    with pytest.raises(ValueError, match="pairs anchors one to one"):
        tap.check_guide(other, "teacher")


@pytest.mark.slow
def test_logit_tap_snapshot_restores_what_the_student_recorded(tmp_path):
    model = _two_guide_distiller(tmp_path)
    batch = random_batch(2)
    with EventStorage():
        model.student(batch)
    tap = model.logit_tap
    snapshot = tap.snapshot()
    assert set(snapshot) == {"_boxes", "_logits"} and snapshot["_boxes"] is not None
    tap.clear()
    assert all(v is None for v in tap.snapshot().values())
    tap.restore(snapshot)
    assert all(tap.snapshot()[k] is v for k, v in snapshot.items())
