"""Guides: built from either config system, and fed the input they were trained on."""

import os

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from shared_kd.detector_config import load_detector_config
from shared_kd.layers.alignment import crop_to_extent
from shared_kd.modeling import DistillationDetector, Guide, build_guide
from shared_kd.modeling.guide import as_guide, check_input_formats, in_input_format
from shared_kd.utils.testing import get_tiny_cfg, random_batch

from ..conftest import REPO_ROOT

LAZY_TEACHER = os.path.join(REPO_ROOT, "configs", "shapes", "faster_rcnn_R34_FPN_tiny_teacher.py")


def _detector(fpn_channels, seed):
    torch.manual_seed(seed)
    return build_model(get_tiny_cfg("faster_rcnn", fpn_channels=fpn_channels))


def _fitnets(student, guides, **kwargs):
    """A distiller with the plain-MSE FitNets loss (weight 1): easy to recompute by hand."""
    return DistillationDetector(
        student=student,
        guides=guides,
        losses={"FitNetsLoss": {"weight": 1.0}},
        in_features=["p2", "p3"],
        **kwargs,
    )


def _record_inputs(model):
    """The images (C x H x W) that ``model.preprocess_image`` is given, per call."""
    seen = []
    original = model.preprocess_image

    def preprocess(batched_inputs):
        seen.append([x["image"].clone() for x in batched_inputs])
        return original(batched_inputs)

    model.preprocess_image = preprocess
    return seen


def test_flip_by_hand():
    batch = [{"image": torch.arange(12.0).view(3, 2, 2), "height": 2, "width": 2}]
    flipped = in_input_format(batch, flip=True)
    assert torch.equal(flipped[0]["image"][0], batch[0]["image"][2])  # B <-> R
    assert torch.equal(flipped[0]["image"][1], batch[0]["image"][1])
    assert flipped[0]["height"] == 2 and torch.equal(
        batch[0]["image"][0], torch.arange(4.0).view(2, 2)
    )
    assert in_input_format(batch, flip=False) is batch
    assert check_input_formats("BGR", "RGB", "teacher") and not check_input_formats(
        "BGR", "BGR", "x"
    )
    with pytest.raises(ValueError, match="reconciles only BGR and RGB"):
        check_input_formats("BGR", "L", "teacher")


def test_an_rgb_teacher_receives_rgb():
    student, teacher = _detector(32, 0), _detector(64, 1).requires_grad_(False).eval()
    seen = _record_inputs(teacher)
    model = _fitnets(student, [Guide(teacher, "RGB")], input_format="BGR")
    assert model.guide_input_formats == ("RGB",)
    batch = random_batch(2)
    with EventStorage():
        model(batch)
    (images,) = seen
    for x, y in zip(batch, images):
        assert torch.equal(y, x["image"][[2, 1, 0]])  # the student's BGR, channels reversed


def test_a_bgr_pair_is_untouched():
    student, teacher = _detector(32, 0), _detector(64, 1).requires_grad_(False).eval()
    seen = _record_inputs(teacher)
    model = _fitnets(student, [teacher])  # a bare detector: its own input_format, BGR
    assert model.input_format == model.guide_input_formats[0] == "BGR"
    batch = random_batch(2)
    with EventStorage():
        losses = model(batch)
        s = model.student.backbone(model.student.preprocess_image(batch).tensor)
    assert all(torch.equal(y, x["image"]) for x, y in zip(batch, seen[0]))
    t = teacher.backbone(teacher.preprocess_image(batch).tensor)
    # both pad 64-pixel images to 64: the whole maps are compared, as before
    by_hand = sum(((s[f][:, :32] - t[f][:, :32]) ** 2).mean() for f in ("p2", "p3")) / 2
    torch.testing.assert_close(losses["loss_fitnets"], by_hand, rtol=1e-5, atol=1e-6)


def test_a_padded_teachers_maps_are_cropped_to_the_image_area():
    student, teacher = _detector(32, 0), _detector(64, 1).requires_grad_(False).eval()
    # The teacher pads its input to a multiple of 128 (as ViTDet pads to its 1024 square): its
    # p2 is 32 x 32 for a 64-pixel batch, the student's 16 x 16.
    teacher.backbone._size_divisibility = 128
    model = _fitnets(student, [teacher])
    batch = random_batch(2)
    with EventStorage():
        losses = model(batch)
        s = model.student.backbone(model.student.preprocess_image(batch).tensor)
    images = teacher.preprocess_image(batch).tensor
    assert tuple(images.shape[-2:]) == (128, 128)
    t = teacher.backbone(images)
    assert t["p2"].shape[-1] == 32 and s["p2"].shape[-1] == 16
    # by hand: the top-left 64 x 64 pixels are p2[:16, :16] (stride 4), p3[:8, :8] (stride 8)
    by_hand = (
        ((s["p2"] - t["p2"][:, :32, :16, :16]) ** 2).mean()
        + ((s["p3"] - t["p3"][:, :32, :8, :8]) ** 2).mean()
    ) / 2
    torch.testing.assert_close(losses["loss_fitnets"], by_hand, rtol=1e-5, atol=1e-6)


def test_crop_to_extent_by_hand():
    x = torch.arange(2 * 6 * 6.0).view(1, 2, 6, 6)
    assert crop_to_extent(x, 4, (24, 24)) is x  # the whole map
    assert torch.equal(crop_to_extent(x, 4, (10, 16)), x[..., :3, :4])  # ceil(10/4) = 3
    assert crop_to_extent(x, 8, (100, 100)) is x  # never larger than the map


@pytest.mark.slow
def test_a_lazy_teacher_is_built_frozen_and_loaded_strictly(tmp_path):
    config = load_detector_config(LAZY_TEACHER)
    assert (
        config.is_lazy and config.input_format == "BGR" and config.test_datasets == ["shapes_val"]
    )
    torch.manual_seed(3)
    trained = config.build_model("cpu")
    weights = tmp_path / "teacher.pth"
    torch.save({"model": trained.state_dict()}, weights)
    guide = build_guide(LAZY_TEACHER, str(weights))
    assert isinstance(guide, Guide) and guide.input_format == "BGR"
    assert not guide.model.training and not any(p.requires_grad for p in guide.model.parameters())
    for k, v in trained.state_dict().items():
        assert torch.equal(guide.model.state_dict()[k], v)
    # overrides are key=value; the teacher's FPN width must then fit its weights
    with pytest.raises(RuntimeError, match="do not fit the architecture"):
        build_guide(LAZY_TEACHER, str(weights), ["model.backbone.out_channels=96"])


def test_bare_guides_and_devices():
    teacher = _detector(64, 1)
    del teacher.input_format
    assert as_guide(teacher, "RGB").input_format == "RGB"  # none of its own: the student's
    with pytest.raises(TypeError, match="must be a Guide or a detector"):
        as_guide("teacher.pth", "BGR")
    model = _fitnets(_detector(32, 0), [_detector(64, 1).requires_grad_(False).eval()])
    moved = model.to("meta")  # .to() moves the hidden guides with the student (meta: no copy)
    assert moved is model and model.student.device.type == "meta"
    assert all(p.device.type == "meta" for p in model.teacher.parameters())


def test_the_cross_layer_term_reads_the_whole_student_maps():
    """With a teacher that pads more, only the teacher's maps are cut: the student-only term
    is the one of its whole maps."""
    student, teacher = _detector(32, 0), _detector(64, 1).requires_grad_(False).eval()
    teacher.backbone._size_divisibility = 128
    model = DistillationDetector(
        student=student, guides=[teacher], losses={"SharedKDLoss": {"cross": True}}
    )
    batch = random_batch(2)
    with EventStorage():
        losses = model(batch)
        s = model.student.backbone(model.student.preprocess_image(batch).tensor)
    loss = model.losses["SharedKDLoss"][0]
    whole = loss.alpha * loss.cross_loss([s[f] for f in model.in_features])
    torch.testing.assert_close(losses["loss_sharedkd_cross"], whole, rtol=1e-5, atol=1e-6)


def test_an_image_larger_than_a_guides_square_is_an_error():
    teacher = _detector(64, 1).requires_grad_(False).eval()
    teacher.backbone.padding_constraints = {"square_size": 32}  # as ViTDet's 1024 on main
    model = _fitnets(_detector(32, 0), [teacher])
    with EventStorage(), pytest.raises(ValueError, match="pads every image to a 32 x 32 square"):
        model(random_batch(2, size=64))
