"""DistillationDetector: teacher handling, the student's own forward, checkpoints and export."""

import copy
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from shared_kd.checkpoint import TeacherLoadError
from shared_kd.export import export_student
from shared_kd.losses import DistillLoss
from shared_kd.modeling import DistillationDetector, average_over_guides
from shared_kd.utils.testing import TINY_FAMILIES, get_tiny_cfg, random_batch


def _save_guide(tmp_path, family, name, **kwargs):
    """A randomly initialised tiny detector saved as (config.yaml, weights.pth)."""
    torch.manual_seed(1)
    cfg = get_tiny_cfg(family, **kwargs)
    model = build_model(cfg)
    cfg_path, weights = tmp_path / f"{name}.yaml", tmp_path / f"{name}.pth"
    cfg_path.write_text(cfg.dump())
    torch.save({"model": model.state_dict()}, weights)
    return str(cfg_path), str(weights), model


def distill_cfg(tmp_path, family="faster_rcnn", teacher_channels=64, **teacher_kwargs):
    t_cfg, t_weights, _ = _save_guide(
        tmp_path, family, "teacher", fpn_channels=teacher_channels, **teacher_kwargs
    )
    cfg = get_tiny_cfg(family, fpn_channels=32)
    cfg.MODEL.DISTILL.STUDENT_META_ARCHITECTURE = cfg.MODEL.META_ARCHITECTURE
    cfg.MODEL.META_ARCHITECTURE = "DistillationDetector"
    cfg.MODEL.DISTILL.TEACHER.CONFIG_FILE = t_cfg
    cfg.MODEL.DISTILL.TEACHER.WEIGHTS = t_weights
    return cfg


def _eval_inputs(batch):
    return [{"image": b["image"], "height": 64, "width": 64} for b in batch]


@pytest.fixture
def distiller(tmp_path):
    torch.manual_seed(0)
    return build_model(distill_cfg(tmp_path))


@pytest.mark.slow
def test_teacher_is_a_frozen_guest(distiller):
    teacher = distiller.teacher
    assert isinstance(distiller, DistillationDetector)
    assert not any(p.requires_grad for p in teacher.parameters())
    own = {id(p) for p in distiller.parameters()}
    assert not any(id(p) in own for p in teacher.parameters())  # not in the optimizer / DDP
    assert all(k.startswith(("student.", "losses.")) for k in distiller.state_dict())
    distiller.train()
    assert distiller.training and distiller.student.training and not teacher.training


@pytest.mark.slow
def test_training_steps_leave_the_teacher_unchanged(distiller):
    before = copy.deepcopy(distiller.teacher.state_dict())
    student_before = copy.deepcopy(distiller.student.state_dict())
    optimizer = torch.optim.SGD([p for p in distiller.parameters() if p.requires_grad], lr=0.01)
    distiller.train()
    for step in range(2):
        with EventStorage(step):
            losses = distiller(random_batch(2, seed=step))
        assert {"loss_sharedkd_ident", "loss_sharedkd_cross", "loss_cls", "loss_rpn_cls"} <= set(
            losses
        )
        optimizer.zero_grad()
        sum(losses.values()).backward()
        assert all(p.grad is None for p in distiller.teacher.parameters())
        tsm = distiller.losses["SharedKDLoss"][0].tsm
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tsm.parameters())
        optimizer.step()
    after = distiller.teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    changed = [
        k
        for k, v in distiller.student.state_dict().items()
        if not torch.equal(v, student_before[k])
    ]
    assert changed  # while the student did learn


@pytest.mark.slow
def test_eval_output_is_exactly_the_students(tmp_path, distiller):
    cfg = get_tiny_cfg("faster_rcnn", fpn_channels=32)
    plain = build_model(cfg)
    plain.load_state_dict(distiller.student.state_dict())
    plain.eval()
    distiller.eval()
    inputs = _eval_inputs(random_batch(2, seed=5))
    with torch.no_grad():
        ours, theirs = distiller(inputs), plain(inputs)
    for a, b in zip(ours, theirs):
        a, b = a["instances"], b["instances"]
        assert len(a) == len(b)
        assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
        assert torch.equal(a.scores, b.scores)


@pytest.mark.slow
def test_plain_student_checkpoint_initialises_the_student(tmp_path, distiller):
    torch.manual_seed(7)
    plain = build_model(get_tiny_cfg("faster_rcnn", fpn_channels=32))
    path = tmp_path / "student_init.pth"
    torch.save({"model": plain.state_dict()}, path)
    DetectionCheckpointer(distiller).load(str(path))
    for k, v in plain.state_dict().items():
        assert torch.equal(distiller.student.state_dict()[k], v), k


@pytest.mark.slow
def test_a_distillation_checkpoint_serves_as_a_teacher(tmp_path, distiller):
    """A teaching assistant trained as a student is a valid guide (its student is loaded)."""
    cfg = distill_cfg(tmp_path)
    ckpt = tmp_path / "distilled.pth"
    torch.save({"model": distiller.state_dict()}, ckpt)  # student.* and losses.* keys
    guide_cfg = tmp_path / "distilled.yaml"
    ta_cfg = get_tiny_cfg("faster_rcnn", fpn_channels=32)
    ta_cfg.MODEL.DISTILL.STUDENT_META_ARCHITECTURE = "GeneralizedRCNN"
    ta_cfg.MODEL.META_ARCHITECTURE = "DistillationDetector"
    guide_cfg.write_text(ta_cfg.dump())
    cfg.MODEL.DISTILL.TEACHER.CONFIG_FILE = str(guide_cfg)
    cfg.MODEL.DISTILL.TEACHER.WEIGHTS = str(ckpt)
    model = build_model(cfg)
    for k, v in distiller.student.state_dict().items():
        assert torch.equal(model.teacher.state_dict()[k], v), k


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda c: c.MODEL.DISTILL.TEACHER.update(WEIGHTS=""), ValueError, "WEIGHTS is empty"),
        (
            lambda c: c.MODEL.DISTILL.TEACHER.update(CONFIG_FILE=""),
            ValueError,
            "CONFIG_FILE is empty",
        ),
        (
            lambda c: c.MODEL.DISTILL.TEACHER.update(WEIGHTS="/nonexistent/teacher.pth"),
            FileNotFoundError,
            "Weights ./nonexistent/teacher.pth. not found",
        ),
        (
            lambda c: c.MODEL.DISTILL.TEACHER.update(CONFIG_FILE="/nonexistent/teacher.yaml"),
            FileNotFoundError,
            "Teacher config '/nonexistent/teacher.yaml' not found",
        ),
        (
            lambda c: c.MODEL.DISTILL.update(IN_FEATURES=["p2", "p7"]),
            ValueError,
            r"IN_FEATURES names \['p7'\]",
        ),
        (
            lambda c: c.MODEL.DISTILL.update(LOSSES=["NoSuchLoss"]),
            KeyError,
            "Unknown distillation loss 'NoSuchLoss'",
        ),
    ],
)
def test_bad_teacher_settings_fail_clearly(tmp_path, change, error, match):
    cfg = distill_cfg(tmp_path)
    change(cfg)
    with pytest.raises(error, match=match):
        build_model(cfg)


@pytest.mark.slow
def test_weights_of_another_architecture_are_rejected(tmp_path):
    cfg = distill_cfg(tmp_path)
    _, other_weights, _ = _save_guide(tmp_path, "retinanet", "other")
    cfg.MODEL.DISTILL.TEACHER.WEIGHTS = other_weights
    with pytest.raises(TeacherLoadError, match="missing keys: .*unexpected keys"):
        build_model(cfg)
    # same keys, other widths: every mismatched shape is named
    _, wide_weights, _ = _save_guide(tmp_path, "faster_rcnn", "wide", fpn_channels=96)
    cfg.MODEL.DISTILL.TEACHER.WEIGHTS = wide_weights
    with pytest.raises(TeacherLoadError, match="shape mismatches"):
        build_model(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_each_family_trains_with_every_term(tmp_path, family):
    torch.manual_seed(0)
    model = build_model(distill_cfg(tmp_path, family))
    dense = family in ("retinanet", "fcos")
    expected = ["p3", "p4", "p5", "p6", "p7"] if dense else ["p2", "p3", "p4", "p5", "p6"]
    assert model.in_features == expected  # default: every level of the student's backbone
    with EventStorage():
        losses = model(random_batch(2, with_masks=family == "mask_rcnn"))
    assert {"loss_sharedkd_ident", "loss_sharedkd_cross"} <= set(losses)
    assert ("loss_mask" in losses) == (family == "mask_rcnn")
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


@pytest.mark.slow
@pytest.mark.parametrize(
    "switches, present",
    [
        ({}, {"loss_sharedkd_ident", "loss_sharedkd_cross"}),
        ({"IDENTICAL": False}, {"loss_sharedkd_cross"}),
        ({"CROSS": False}, {"loss_sharedkd_ident"}),
        ({"IDENTICAL": False, "CROSS": False}, set()),
    ],
)
def test_switches_select_the_logged_terms(tmp_path, switches, present):
    cfg = distill_cfg(tmp_path)
    cfg.MODEL.DISTILL.SHARED_KD.update(switches)
    model = build_model(cfg)
    with EventStorage():
        losses = model(random_batch(2))
    assert {k for k in losses if k.startswith("loss_sharedkd")} == present


@pytest.mark.slow
def test_alpha_scales_exactly_the_distillation_terms(tmp_path):
    values = {}
    for alpha in (2.0, 10.0):
        cfg = distill_cfg(tmp_path)
        cfg.MODEL.DISTILL.SHARED_KD.ALPHA = alpha
        torch.manual_seed(0)
        model = build_model(cfg)
        with EventStorage():
            values[alpha] = model(random_batch(2))
    for k in ("loss_sharedkd_ident", "loss_sharedkd_cross"):
        torch.testing.assert_close(values[10.0][k], 5 * values[2.0][k])
    torch.testing.assert_close(values[10.0]["loss_cls"], values[2.0]["loss_cls"])


VANILLA_PREDICT = r"""
import sys, numpy, torch
from detectron2.config import get_cfg
from detectron2.engine import DefaultPredictor
cfg = get_cfg()
cfg.merge_from_file(sys.argv[1])
predictor = DefaultPredictor(cfg)
image = numpy.load(sys.argv[2])
out = predictor(image)["instances"]
assert "shared_kd" not in sys.modules
torch.save({"boxes": out.pred_boxes.tensor, "scores": out.scores}, sys.argv[3])
"""


@pytest.mark.slow
def test_export_loads_in_vanilla_detectron2_with_the_same_predictions(tmp_path, distiller):
    cfg = distill_cfg(tmp_path)
    out_dir = tmp_path / "student"
    export_student(cfg, distiller.state_dict(), str(out_dir))
    assert sorted(os.listdir(out_dir)) == ["config.yaml", "model_final.pth"]
    text = (out_dir / "config.yaml").read_text()
    assert "DISTILL" not in text and "META_ARCHITECTURE: GeneralizedRCNN" in text
    assert f"OUTPUT_DIR: {out_dir}" in text  # evaluating it writes beside the export

    image = torch.randint(0, 256, (64, 64, 3), generator=torch.Generator().manual_seed(3))
    image = image.to(torch.uint8).numpy()[:, :, ::-1].copy()  # BGR, as DefaultPredictor reads
    np.save(tmp_path / "image.npy", image)
    script = tmp_path / "predict.py"
    script.write_text(VANILLA_PREDICT)
    res = subprocess.run(
        [
            sys.executable,
            str(script),
            str(out_dir / "config.yaml"),
            str(tmp_path / "image.npy"),
            str(tmp_path / "pred.pt"),
        ],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    theirs = torch.load(tmp_path / "pred.pt")

    distiller.eval()
    # DefaultPredictor resizes to INPUT.MIN_SIZE_TEST (64: a no-op here) and passes the image
    # in the model's INPUT.FORMAT, BGR by default: feed the same tensor.
    bgr = torch.as_tensor(image.copy()).permute(2, 0, 1).float()
    with torch.no_grad():
        ours = distiller([{"image": bgr, "height": 64, "width": 64}])[0]["instances"]
    torch.testing.assert_close(ours.pred_boxes.tensor, theirs["boxes"])
    torch.testing.assert_close(ours.scores, theirs["scores"])


@pytest.mark.slow
def test_plain_checkpoint_with_other_shapes_skips_them(tmp_path, distiller):
    """As detectron2 does for a plain model: mismatched shapes (e.g. NUM_CLASSES) are skipped."""
    other = build_model(get_tiny_cfg("faster_rcnn", num_classes=5, fpn_channels=32))
    path = tmp_path / "five_classes.pth"
    torch.save({"model": other.state_dict()}, path)
    before = distiller.student.roi_heads.box_predictor.cls_score.weight.clone()
    DetectionCheckpointer(distiller).load(str(path))
    assert torch.equal(distiller.student.roi_heads.box_predictor.cls_score.weight, before)
    key = "backbone.bottom_up.stem.conv1.weight"
    assert torch.equal(distiller.student.state_dict()[key], other.state_dict()[key])


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: d.update(LOSSES=[]), "LOSSES is empty"),
        (lambda d: d.update(IN_FEATURES=["p3", "p2"]), "fine to coarse"),
        (lambda d: d.update(IN_FEATURES=["p2", "p2"]), "distinct levels"),
    ],
)
def test_bad_loss_and_level_lists_fail_clearly(tmp_path, change, match):
    cfg = distill_cfg(tmp_path)
    change(cfg.MODEL.DISTILL)
    with pytest.raises(ValueError, match=match):
        build_model(cfg)


@pytest.mark.slow
def test_teacher_is_not_run_when_no_loss_reads_it(tmp_path):
    cfg = distill_cfg(tmp_path)
    cfg.MODEL.DISTILL.SHARED_KD.IDENTICAL = False  # only the student-internal cross term
    model = build_model(cfg)
    calls = []
    model.teacher.backbone.register_forward_hook(lambda *args: calls.append(1))
    with EventStorage():
        losses = model(random_batch(2))
    assert "loss_sharedkd_cross" in losses and not calls


@pytest.mark.slow
def test_prebuilt_guides_replace_the_configured_ones(tmp_path):
    cfg = distill_cfg(tmp_path)
    cfg.MODEL.DISTILL.TEACHER.WEIGHTS = ""  # would be an error if the teacher were built
    teacher = build_model(get_tiny_cfg(fpn_channels=64)).requires_grad_(False).eval()
    model = DistillationDetector(cfg, guides=[teacher])
    assert model.teacher is teacher and model.guides == (teacher,)
    assert model.losses["SharedKDLoss"][0].tsm.fused_channels == [64] * 4
    with EventStorage():
        losses = model(random_batch(2))
    assert {"loss_sharedkd_ident", "loss_sharedkd_cross"} <= set(losses)
    with pytest.raises(ValueError, match="2 guides given for a config with a teacher and 0"):
        DistillationDetector(cfg, guides=[teacher, teacher])


def test_average_over_guides_by_hand():
    a = torch.tensor(1.0, requires_grad=True)
    per_term = {
        "loss_b": [a, torch.tensor(2.0), torch.tensor(6.0)],
        "loss_a": [torch.tensor(0.5)],
        "loss_c": [torch.tensor(-1.0), torch.tensor(3.0)],
    }
    terms = average_over_guides(per_term)
    assert list(terms) == ["loss_b", "loss_a", "loss_c"]  # the order of the terms is kept
    assert all(v.shape == () for v in terms.values())
    assert [float(v) for v in terms.values()] == [3.0, 0.5, 1.0]
    terms["loss_b"].backward()
    assert float(a.grad) == pytest.approx(1 / 3)
    assert average_over_guides({}) == {}
    with pytest.raises(ValueError, match="loss_x"):
        average_over_guides({"loss_x": []})


def _two_guide_distiller(tmp_path):
    """Teacher + one TA (other weights), Shared-KD and soft targets (the R-CNN logit tap)."""
    cfg = distill_cfg(tmp_path)
    torch.manual_seed(4)
    ta_cfg, ta_weights, _ = _save_guide(tmp_path, "faster_rcnn", "ta", fpn_channels=64)
    cfg.MODEL.DISTILL.ASSISTANTS.CONFIG_FILES = [ta_cfg]
    cfg.MODEL.DISTILL.ASSISTANTS.WEIGHTS = [ta_weights]
    cfg.MODEL.DISTILL.LOSSES = ["SharedKDLoss", "SoftTargetKDLoss"]
    torch.manual_seed(0)
    return build_model(cfg).train()


@pytest.mark.slow
def test_precomputed_guide_outputs_give_the_same_terms(tmp_path):
    model = _two_guide_distiller(tmp_path)
    runs = []
    for guide in model.guides:
        guide.backbone.register_forward_hook(lambda *args, g=guide: runs.append(g))
    batch = random_batch(2)
    with EventStorage() as storage:
        model.student(batch)
        student = model.student_outputs(batch)
        assert model.guides_read() == [0, 1] and model.guides_read([1]) == [1]

        def losses(**kwargs):
            runs.clear()
            fresh = dataclasses.replace(student, cache={})  # a new step's memo
            return model.distillation_losses(fresh, batch, **kwargs)

        ran = losses()  # kept=None: every guide
        assert runs == list(model.guides)
        assert storage.latest()["distill/guides_kept"][0] == 2.0
        assert {"loss_sharedkd_ident", "loss_sharedkd_cross", "loss_kd"} <= set(ran)
        assert ran.keys() == losses(kept=[0, 1]).keys()

        precomputed = {i: model.guide_outputs(model.guides[i], batch) for i in (0, 1)}
        for _ in range(2):  # the same precomputed outputs serve several calls
            served = losses(guide_outputs=precomputed)
            assert runs == []  # no guide ran
            assert list(served) == list(ran)
            for k in ran:
                torch.testing.assert_close(served[k], ran[k], rtol=0, atol=0)
        assert all(out.cache == {} for out in precomputed.values())

        only_teacher = losses(guide_outputs={0: precomputed[0]})
        assert runs == [model.guides[1]]  # the TA's outputs were not given: it ran
        for k in ran:
            torch.testing.assert_close(only_teacher[k], ran[k], rtol=0, atol=0)

        with pytest.raises(ValueError, match=r"guide indices \[2\]"):
            losses(guide_outputs={2: precomputed[0]})
    sum(served.values()).backward()  # the precomputed terms reach the student


@pytest.mark.slow
def test_guides_read_skips_a_guide_no_loss_reads(tmp_path):
    cfg = distill_cfg(tmp_path)
    cfg.MODEL.DISTILL.SHARED_KD.IDENTICAL = False  # only the student-internal cross term
    model = build_model(cfg).train()
    assert model.guides_read() == []
    batch = random_batch(2)
    with EventStorage():
        model.student(batch)
        terms = model.distillation_losses(model.student_outputs(batch), batch)
    assert list(terms) == ["loss_sharedkd_cross"]


@pytest.mark.slow
def test_set_log_period_reaches_every_loss(distiller):
    losses = [m for m in distiller.losses.modules() if isinstance(m, DistillLoss)]
    assert losses and all(m.log_period == 20 for m in losses)  # detectron2's default
    distiller.set_log_period(7)
    assert all(m.log_period == 7 for m in losses)
