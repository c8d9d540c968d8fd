"""M-KD on the DistillationDetector: every part on, teaching assistants, stochastic drop."""

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from shared_kd.modeling import sample_kept_guides
from shared_kd.utils.testing import TINY_FAMILIES, get_tiny_cfg, random_batch

from .test_distiller import _save_guide, distill_cfg

ALL_LOSSES = [
    "SharedKDLoss",
    "SoftTargetKDLoss",
    "AttentionTransferLoss",
    "FSPLoss",
    "InheritExploreLoss",
]
MKD_TERMS = {"loss_kd", "loss_at", "loss_fsp", "loss_ie_inherit", "loss_ie_explore"}


def mkd_cfg(tmp_path, family="faster_rcnn", drop_prob=0.0, losses=ALL_LOSSES):
    """Teacher (FPN 64) + one TA (FPN 64, other weights) -> student (FPN 32), with stage A done."""
    cfg = distill_cfg(tmp_path, family)
    ae_cfg = cfg.clone()
    ae_cfg.MODEL.META_ARCHITECTURE = "TeacherAutoEncoder"
    ae_cfg.MODEL.DISTILL.INHERIT_EXPLORE.LATENT = 8
    torch.manual_seed(3)
    ae = build_model(ae_cfg)
    torch.save({"model": ae.state_dict()}, tmp_path / "ae.pth")
    torch.manual_seed(4)
    ta_cfg, ta_weights, _ = _save_guide(tmp_path, family, "ta", fpn_channels=64)
    d = cfg.MODEL.DISTILL
    d.ASSISTANTS.CONFIG_FILES, d.ASSISTANTS.WEIGHTS = [ta_cfg], [ta_weights]
    d.ASSISTANTS.DROP_PROB = drop_prob
    d.LOSSES = list(losses)
    d.INHERIT_EXPLORE.AE_WEIGHTS = str(tmp_path / "ae.pth")
    d.INHERIT_EXPLORE.LATENT = 8
    cfg.SOLVER.MAX_ITER = 11
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_every_part_on_for_each_family(tmp_path, family):
    torch.manual_seed(0)
    model = build_model(mkd_cfg(tmp_path, family))
    assert len(model.guides) == 2
    for it in (0, 5):
        with EventStorage(it) as storage:
            losses = model(random_batch(2, with_masks=family == "mask_rcnn", seed=it))
            temperature = storage.latest()["distill/temperature"][0]
        assert MKD_TERMS | {"loss_sharedkd_ident", "loss_sharedkd_cross"} <= set(losses)
        assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        assert temperature == pytest.approx(2.0 - 1.0 * it / 10)  # T_START 2 -> T_END 1
    assert all(p.grad is None for g in model.guides for p in g.parameters())


@pytest.mark.slow
@pytest.mark.parametrize(
    "dropped", ["SoftTargetKDLoss", "AttentionTransferLoss", "FSPLoss", "InheritExploreLoss"]
)
def test_each_part_switches_off(tmp_path, dropped):
    cfg = mkd_cfg(tmp_path, losses=[n for n in ALL_LOSSES if n != dropped])
    with EventStorage():
        losses = build_model(cfg)(random_batch(2))
    gone = {
        "SoftTargetKDLoss": {"loss_kd"},
        "AttentionTransferLoss": {"loss_at"},
        "FSPLoss": {"loss_fsp"},
        "InheritExploreLoss": {"loss_ie_inherit", "loss_ie_explore"},
    }[dropped]
    assert not gone & set(losses) and (MKD_TERMS - gone) <= set(losses)


@pytest.mark.slow
def test_terms_are_averaged_over_guides(tmp_path):
    """With the TA a copy of the teacher, every per-guide term equals the teacher-only value."""
    cfg = mkd_cfg(tmp_path, losses=["SoftTargetKDLoss", "AttentionTransferLoss", "FSPLoss"])
    single = cfg.clone()
    single.MODEL.DISTILL.ASSISTANTS.CONFIG_FILES = []
    single.MODEL.DISTILL.ASSISTANTS.WEIGHTS = []
    cfg.MODEL.DISTILL.ASSISTANTS.CONFIG_FILES = [cfg.MODEL.DISTILL.TEACHER.CONFIG_FILE]
    cfg.MODEL.DISTILL.ASSISTANTS.WEIGHTS = [cfg.MODEL.DISTILL.TEACHER.WEIGHTS]
    values = []
    for c in (single, cfg):
        torch.manual_seed(0)
        model = build_model(c)
        torch.manual_seed(1)  # the same proposal sampling in both runs
        with EventStorage():
            values.append(model(random_batch(2)))
    for k in ("loss_kd", "loss_at", "loss_fsp"):
        torch.testing.assert_close(values[0][k], values[1][k])


def test_sample_kept_guides_never_drops_every_guide():
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(3)
    for _ in range(2000):
        kept = sample_kept_guides(3, 0.9, g)
        assert 1 <= len(kept) <= 3 and kept == sorted(set(kept))
        counts[kept] += 1
    assert (counts > 0).all()  # every guide is kept sometimes
    assert sample_kept_guides(4, 0.0, g) == [0, 1, 2, 3]


@pytest.mark.slow
def test_stochastic_drop_trains_and_keeps_dropped_modules_in_the_graph(tmp_path):
    model = build_model(mkd_cfg(tmp_path, drop_prob=0.99))
    tsms = [m.tsm for m in model.losses["SharedKDLoss"]]
    torch.manual_seed(1)
    for it in range(3):
        model.zero_grad()
        with EventStorage(it) as storage:
            losses = model(random_batch(2, seed=it))
            assert storage.latest()["distill/guides_kept"][0] == 1.0
        sum(losses.values()).backward()
        # every TSM (kept or dropped guide) is part of the graph: DDP needs a gradient for each
        assert all(p.grad is not None for tsm in tsms for p in tsm.parameters())


@pytest.mark.slow
def test_logit_loss_needs_matching_classes(tmp_path):
    cfg = mkd_cfg(tmp_path, losses=["SoftTargetKDLoss"])
    other_cfg, other_weights, _ = _save_guide(tmp_path, "faster_rcnn", "other", num_classes=5)
    cfg.MODEL.DISTILL.ASSISTANTS.CONFIG_FILES = [other_cfg]
    cfg.MODEL.DISTILL.ASSISTANTS.WEIGHTS = [other_weights]
    match = "student has 3 classes and the teaching assistant 1 has 5"
    with pytest.raises(ValueError, match=match):
        build_model(cfg)


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: d.ASSISTANTS.update(WEIGHTS=[]), "must be parallel lists"),
        (lambda d: d.ASSISTANTS.update(DROP_PROB=1.0), r"DROP_PROB must be in \[0, 1\)"),
        (lambda d: d.KD.update(T_START=0.0), "T_START/T_END must be > 0"),
        (lambda d: d.AT.update(WEIGHT=-1.0), "AT.WEIGHT must be >= 0"),
        (lambda d: d.INHERIT_EXPLORE.update(AE_WEIGHTS=""), "AE_WEIGHTS is empty"),
    ],
)
def test_bad_mkd_settings_fail_clearly(tmp_path, change, match):
    cfg = mkd_cfg(tmp_path)
    change(cfg.MODEL.DISTILL)
    with pytest.raises(ValueError, match=match):
        build_model(cfg)


@pytest.mark.slow
def test_ta_trained_as_a_student_serves_as_a_guide(tmp_path):
    """A TA is first trained as a student of the teacher: its distillation checkpoint loads."""
    cfg = distill_cfg(tmp_path)
    ta = build_model(cfg)
    torch.save({"model": ta.state_dict()}, tmp_path / "ta_run.pth")
    ta_cfg = get_tiny_cfg("faster_rcnn", fpn_channels=32)
    ta_cfg.MODEL.DISTILL.STUDENT_META_ARCHITECTURE = "GeneralizedRCNN"
    ta_cfg.MODEL.META_ARCHITECTURE = "DistillationDetector"
    (tmp_path / "ta_run.yaml").write_text(ta_cfg.dump())
    cfg.MODEL.DISTILL.ASSISTANTS.CONFIG_FILES = [str(tmp_path / "ta_run.yaml")]
    cfg.MODEL.DISTILL.ASSISTANTS.WEIGHTS = [str(tmp_path / "ta_run.pth")]
    model = build_model(cfg)
    for k, v in ta.student.state_dict().items():
        assert torch.equal(model.guides[1].state_dict()[k], v), k


@pytest.mark.slow
def test_dense_logit_kd_needs_the_same_anchors(tmp_path):
    cfg = mkd_cfg(tmp_path, "retinanet", losses=["SoftTargetKDLoss"])
    teacher_cfg = get_tiny_cfg("retinanet", fpn_channels=64)
    teacher_cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[20], [40], [80], [160], [320]]
    (tmp_path / "teacher.yaml").write_text(teacher_cfg.dump())
    torch.save({"model": build_model(teacher_cfg).state_dict()}, tmp_path / "teacher.pth")
    with pytest.raises(ValueError, match="pairs anchors one to one"):
        build_model(cfg)


@pytest.mark.slow
def test_auto_encoder_refuses_to_resume_with_another_teacher(tmp_path):
    cfg = mkd_cfg(tmp_path)
    ae_cfg = cfg.clone()
    ae_cfg.MODEL.META_ARCHITECTURE = "TeacherAutoEncoder"
    state = torch.load(tmp_path / "ae.pth", weights_only=True)["model"]
    state["teacher_fingerprint"] = state["teacher_fingerprint"] + 1.0
    with pytest.raises(ValueError, match="trained on another teacher"):
        build_model(ae_cfg).load_state_dict(state)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["retinanet", "fcos"])
def test_dense_soft_targets_are_divided_by_the_students_foreground_count(tmp_path, family):
    """KD.DENSE_NORMALIZER: "foreground" is the sum over the M locations over the student's
    loss_normalizer, "locations" the mean over M; the same step gives both."""
    found = {}
    for normalizer in ("foreground", "locations"):
        cfg = mkd_cfg(tmp_path, family, losses=["SoftTargetKDLoss"])
        cfg.MODEL.DISTILL.KD.DENSE_NORMALIZER = normalizer
        torch.manual_seed(0)
        model = build_model(cfg)
        logits = []
        model.student.head.register_forward_hook(lambda m, a, out, seen=logits: seen.append(out[0]))
        with EventStorage(0):
            loss = model(random_batch(2, seed=0))["loss_kd"]
        # rows: every anchor/point of every level of both images (N x A*K x H x W per level)
        rows = sum(x.numel() for x in logits[0]) // model.student.num_classes
        found[normalizer] = (loss.item(), rows, model.student.loss_normalizer)
    (fg, rows, count), (mean, _, _) = found["foreground"], found["locations"]
    assert count > 0  # an EMA of the foreground locations (from detectron2's initial 100 / 300)
    assert fg == pytest.approx(mean * rows / count, rel=1e-4)
