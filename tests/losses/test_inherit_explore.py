"""M-KD inherit/explore, stage B (METHODS.md, "M-KD" 5): the stage-A checkpoint and the losses."""

import copy
import math

import pytest
import torch
import torch.nn as nn
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from torch.testing import assert_close

import shared_kd.modeling  # noqa: F401  (registers TeacherAutoEncoder)
from shared_kd.config import add_sharedkd_config
from shared_kd.layers.encoders import conv_encoder, load_teacher_encoders, weights_fingerprint
from shared_kd.layers.outputs import DetectorOutputs
from shared_kd.losses import InheritExploreLoss, build_distill_losses
from shared_kd.modeling.guide import build_guide
from shared_kd.utils.testing import get_tiny_cfg

LATENT = 8
LEVELS = ["p2", "p3"]
INH, EXP = "loss_ie_inherit", "loss_ie_explore"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ----------------------------------------------------------------------------- stage-A checkpoint


def _cfg():
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    return cfg


@pytest.fixture(scope="module")
def stage_a(tmp_path_factory):
    """A tiny teacher (config + weights) and a stage-A auto-encoder saved by detectron2."""
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("ie")
    tcfg = get_tiny_cfg("faster_rcnn", fpn_channels=32)
    torch.save({"model": build_model(tcfg).state_dict()}, d / "teacher.pth")
    (d / "teacher.yaml").write_text(tcfg.dump())
    config, weights = str(d / "teacher.yaml"), str(d / "teacher.pth")

    cfg = _cfg()
    cfg.MODEL.META_ARCHITECTURE = "TeacherAutoEncoder"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.DISTILL.TEACHER.CONFIG_FILE = config
    cfg.MODEL.DISTILL.TEACHER.WEIGHTS = weights
    cfg.MODEL.DISTILL.INHERIT_EXPLORE.LATENT = LATENT
    cfg.MODEL.DISTILL.IN_FEATURES = LEVELS
    ae = build_model(cfg)
    DetectionCheckpointer(ae, save_dir=str(d)).save("model_final")  # what train_net.py writes
    teacher = build_guide(config, weights).model
    return {
        "dir": d,
        "ae": ae,
        "ae_path": str(d / "model_final.pth"),
        "teacher": teacher,
        "fingerprint": weights_fingerprint(teacher),
    }


def _load(stage_a, path=None, levels=LEVELS, channels=(32, 32), latent=LATENT, fp=None):
    return load_teacher_encoders(
        stage_a["ae_path"] if path is None else path,
        levels,
        list(channels),
        latent,
        stage_a["fingerprint"] if fp is None else fp,
    )


def _assert_state_equal(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.slow
def test_load_teacher_encoders_equal_stage_a(stage_a):
    encoders = _load(stage_a)
    assert isinstance(encoders, nn.ModuleDict)
    assert list(encoders) == LEVELS
    for f in LEVELS:
        _assert_state_equal(encoders[f], stage_a["ae"].autoencoders[f].encoder)
        assert all(not p.requires_grad for p in encoders[f].parameters())
    # the encoders compute the stage-A codes
    x = torch.randn(1, 32, 4, 4)
    with torch.no_grad():
        assert_close(encoders["p3"](x), stage_a["ae"].autoencoders["p3"].encoder(x))
    # a subset of the levels
    only_p3 = _load(stage_a, levels=["p3"], channels=[32])
    assert list(only_p3) == ["p3"]
    _assert_state_equal(only_p3["p3"], stage_a["ae"].autoencoders["p3"].encoder)


def test_load_teacher_encoders_plain_state_dict(stage_a, tmp_path):
    # a bare state dict (no "model" wrapper) is accepted too
    path = tmp_path / "bare.pth"
    torch.save(stage_a["ae"].state_dict(), path)
    encoders = _load(stage_a, path=str(path))
    _assert_state_equal(encoders["p2"], stage_a["ae"].autoencoders["p2"].encoder)


def test_load_teacher_encoders_errors(stage_a, tmp_path):
    with pytest.raises(ValueError, match="AE_WEIGHTS"):
        _load(stage_a, path="")
    with pytest.raises(FileNotFoundError):
        _load(stage_a, path=str(tmp_path / "missing.pth"))

    # a checkpoint without the fingerprint (not a TeacherAutoEncoder's)
    state = stage_a["ae"].state_dict()
    del state["teacher_fingerprint"]
    path = tmp_path / "no_fingerprint.pth"
    torch.save({"model": state}, path)
    with pytest.raises(ValueError, match="not a TeacherAutoEncoder"):
        _load(stage_a, path=str(path))

    # another teacher: one weight changed
    other = copy.deepcopy(stage_a["teacher"])
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1.0
    other_fp = weights_fingerprint(other)
    assert not torch.allclose(other_fp, stage_a["fingerprint"])
    with pytest.raises(ValueError, match="another teacher"):
        _load(stage_a, fp=other_fp)
    # a teacher of another architecture: a fingerprint of another length
    with pytest.raises(ValueError, match="another teacher"):
        _load(stage_a, fp=stage_a["fingerprint"][:-1])

    # the encoders do not fit: latent, channels, levels
    with pytest.raises(ValueError, match="LATENT"):
        _load(stage_a, latent=LATENT * 2)
    with pytest.raises(ValueError):
        _load(stage_a, channels=(16, 16))
    with pytest.raises(ValueError):
        _load(stage_a, levels=["p2", "p3", "p4"], channels=(32, 32, 32))


def test_from_config_one_instance_for_the_teacher(stage_a):
    cfg = _cfg()
    cfg.MODEL.DISTILL.LOSSES = ["InheritExploreLoss"]
    cfg.MODEL.DISTILL.INHERIT_EXPLORE.LATENT = LATENT
    cfg.MODEL.DISTILL.INHERIT_EXPLORE.AE_WEIGHTS = stage_a["ae_path"]
    cfg.MODEL.DISTILL.INHERIT_EXPLORE.INHERIT_WEIGHT = 0.5
    cfg.MODEL.DISTILL.INHERIT_EXPLORE.EXPLORE_WEIGHT = 0.25
    student = {"p2": ShapeSpec(channels=16, stride=4), "p3": ShapeSpec(channels=16, stride=8)}
    teacher = {"p2": ShapeSpec(channels=32, stride=4), "p3": ShapeSpec(channels=32, stride=8)}
    ta = {"p2": ShapeSpec(channels=24, stride=4), "p3": ShapeSpec(channels=24, stride=8)}
    guides = [stage_a["teacher"], nn.Linear(1, 1)]
    losses = build_distill_losses(cfg, student, [teacher, ta], guides)
    assert len(losses["InheritExploreLoss"]) == 1  # PER_GUIDE = False: the teacher only
    loss = losses["InheritExploreLoss"][0]
    assert (loss.inherit_weight, loss.explore_weight) == (0.5, 0.25)
    assert loss.split == {"p2": 8, "p3": 8}
    for f in LEVELS:
        _assert_state_equal(loss.teacher_encoders[f], stage_a["ae"].autoencoders[f].encoder)
    s = {f: torch.randn(1, 16, 4, 4) for f in LEVELS}
    t = {f: torch.randn(1, 32, 4, 4) for f in LEVELS}
    assert set(loss(DetectorOutputs(s), DetectorOutputs(t))) == {INH, EXP}

    with pytest.raises(ValueError, match="teacher"):
        build_distill_losses(cfg, student, [teacher])  # no guide model to fingerprint
    cfg.MODEL.DISTILL.INHERIT_EXPLORE.AE_WEIGHTS = ""
    with pytest.raises(ValueError, match="AE_WEIGHTS"):
        build_distill_losses(cfg, student, [teacher], [stage_a["teacher"]])


# ----------------------------------------------------------------------------- the losses


def _encoders(channels, latent, levels=("p2", "p3")):
    return nn.ModuleDict({f: conv_encoder(channels, latent) for f in levels}).requires_grad_(False)


def _ie(student_channels=(4, 5), teacher_channels=6, latent=3, levels=("p2", "p3"), **kw):
    return InheritExploreLoss(
        in_features=list(levels),
        student_channels=list(student_channels),
        teacher_encoders=_encoders(teacher_channels, latent, levels),
        latent=latent,
        **kw,
    )


def _unit(x):
    """F(x) = x / ||x||_2 per sample, flattened, written out."""
    flat = x.reshape(x.shape[0], -1)
    return flat / flat.pow(2).sum(dim=1, keepdim=True).sqrt()


def _pool2(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))


def _run(loss, s, t):
    return loss(DetectorOutputs(s), DetectorOutputs(t))


def test_inherit_explore_values_by_hand():
    # p2: 4 student channels (2 + 2), teacher twice the student's size (its code is pooled);
    # p3: 5 student channels (2 inherit + 3 explore).
    loss = _ie(inherit_weight=2.0, explore_weight=3.0)
    s = {"p2": torch.randn(2, 4, 4, 4), "p3": torch.randn(2, 5, 2, 2)}
    t = {"p2": torch.randn(2, 6, 8, 8), "p3": torch.randn(2, 6, 2, 2)}
    out = _run(loss, s, t)
    assert set(out) == {INH, EXP}
    inh, exp = [], []
    with torch.no_grad():
        for f, h in (("p2", 2), ("p3", 2)):
            code = loss.teacher_encoders[f](t[f])
            if f == "p2":
                code = _pool2(code)
            u = _unit(code)
            d_inh = _unit(loss.inherit[f](s[f][:, :h])) - u
            d_exp = _unit(loss.explore[f](s[f][:, h:])) - u
            inh.append(d_inh.abs().sum() / d_inh.numel())
            exp.append(-d_exp.abs().sum() / d_exp.numel())
    assert_close(out[INH], 2.0 * (inh[0] + inh[1]) / 2)
    assert_close(out[EXP], 3.0 * (exp[0] + exp[1]) / 2)
    assert out[INH] > 0 and out[EXP] < 0


def test_explore_bounded_on_random_inputs():
    for seed in range(5):
        torch.manual_seed(seed)
        loss = _ie(levels=("p2",), student_channels=(6,), latent=3)
        s = {"p2": torch.randn(2, 6, 4, 4) * (seed + 1)}
        t = {"p2": torch.randn(2, 6, 4, 4) - seed}
        out = _run(loss, s, t)
        bound = 2 / math.sqrt(3 * 4 * 4)  # D = latent * H * W
        assert -bound - 1e-6 <= float(out[EXP]) <= 0.0
        assert 0.0 <= float(out[INH]) <= bound + 1e-6


def _set_constant_code(encoder, values):
    """Make a conv encoder output ``values[c]`` everywhere in channel c (last conv: 0 weight)."""
    with torch.no_grad():
        encoder[-1].weight.zero_()
        encoder[-1].bias.copy_(torch.tensor(values))


def test_explore_reaches_its_bound_and_inherit_zero_on_equal_directions():
    # Teacher code +-1 everywhere: F(E(T)) has every entry +-1/sqrt(D). The explore code is its
    # exact opposite: mean |(-u) - u| = 2/sqrt(D), the bound. The inherit code is 3x the
    # teacher's: the same direction, so L_inh = 0.
    loss = _ie(levels=("p2",), student_channels=(6,), latent=3, explore_weight=0.5)
    _set_constant_code(loss.teacher_encoders["p2"], [1.0, -1.0, 1.0])
    _set_constant_code(loss.explore["p2"], [-1.0, 1.0, -1.0])
    _set_constant_code(loss.inherit["p2"], [3.0, -3.0, 3.0])
    out = _run(loss, {"p2": torch.randn(2, 6, 4, 4)}, {"p2": torch.randn(2, 6, 4, 4)})
    d = 3 * 4 * 4
    assert_close(out[EXP], torch.tensor(-0.5 * 2 / math.sqrt(d)))
    assert_close(out[INH], torch.tensor(0.0), atol=1e-7, rtol=0)


def test_student_codes_from_the_teacher_encoder_itself():
    # teacher channels 3 = each student half (6 = 3 + 3). The inherit encoder is a copy of the
    # teacher's, scaled by 2 at its output; the explore encoder its negation. With both halves
    # of the student equal to the teacher's map: inherit codes = 2 E(T) (same direction -> 0),
    # explore codes = -E(T): L_exp = -mean |2 u| = -2 sum|u| / D, inside [-2/sqrt(D), 0].
    loss = _ie(levels=("p2",), student_channels=(6,), teacher_channels=3, latent=3)
    teacher_enc = loss.teacher_encoders["p2"]
    loss.inherit["p2"].load_state_dict(teacher_enc.state_dict())
    loss.explore["p2"].load_state_dict(teacher_enc.state_dict())
    with torch.no_grad():
        for m, scale in ((loss.inherit["p2"], 2.0), (loss.explore["p2"], -1.0)):
            m[-1].weight.mul_(scale)
            m[-1].bias.mul_(scale)
    t = torch.randn(2, 3, 4, 4)
    out = _run(loss, {"p2": torch.cat([t, t], dim=1)}, {"p2": t})
    with torch.no_grad():
        u = _unit(teacher_enc(t))
    d = u.shape[1]
    assert d == 3 * 4 * 4
    assert_close(out[INH], torch.tensor(0.0), atol=1e-6, rtol=0)
    assert_close(out[EXP], -2 * u.abs().sum() / u.numel())
    assert -2 / math.sqrt(d) - 1e-6 <= float(out[EXP]) < 0


def test_split_inherit_first_half_explore_second():
    loss = _ie()
    assert loss.split == {"p2": 2, "p3": 2}  # C // 2: 4 -> 2 + 2, 5 -> 2 + 3
    assert loss.inherit["p3"][0].in_channels == 2
    assert loss.explore["p3"][0].in_channels == 3
    s = {"p2": torch.randn(2, 4, 4, 4), "p3": torch.randn(2, 5, 2, 2)}
    t = {"p2": torch.randn(2, 6, 4, 4), "p3": torch.randn(2, 6, 2, 2)}
    out = _run(loss, s, t)

    zero_explore = {f: x.clone() for f, x in s.items()}
    for f in zero_explore:
        zero_explore[f][:, 2:] = 0
    out_a = _run(loss, zero_explore, t)
    assert torch.equal(out_a[INH], out[INH])
    assert not torch.allclose(out_a[EXP], out[EXP])

    zero_inherit = {f: x.clone() for f, x in s.items()}
    for f in zero_inherit:
        zero_inherit[f][:, :2] = 0
    out_b = _run(loss, zero_inherit, t)
    assert torch.equal(out_b[EXP], out[EXP])
    assert not torch.allclose(out_b[INH], out[INH])


def test_gradients_reach_student_not_teacher():
    loss = _ie()
    s = {"p2": torch.randn(2, 4, 4, 4, requires_grad=True), "p3": torch.randn(2, 5, 2, 2)}
    s["p3"].requires_grad_(True)
    t = {"p2": torch.randn(2, 6, 4, 4, requires_grad=True), "p3": torch.randn(2, 6, 2, 2)}
    out = _run(loss, s, t)
    (out[INH] + out[EXP]).backward()
    for f, h in (("p2", 2), ("p3", 2)):
        assert s[f].grad[:, :h].abs().sum() > 0  # through the inherit encoder
        assert s[f].grad[:, h:].abs().sum() > 0  # through the explore encoder
    for name in ("inherit", "explore"):
        for p in getattr(loss, name).parameters():
            assert p.requires_grad and p.grad is not None
        assert sum(float(p.grad.abs().sum()) for p in getattr(loss, name).parameters()) > 0
    for p in loss.teacher_encoders.parameters():
        assert not p.requires_grad and p.grad is None
    assert t["p2"].grad is None
    trainable = {n.split(".")[0] for n, p in loss.named_parameters() if p.requires_grad}
    assert trainable == {"inherit", "explore"}


def test_weights_scale_the_terms():
    base = _ie()
    scaled = _ie(inherit_weight=2.0, explore_weight=0.5)
    scaled.load_state_dict(base.state_dict())
    zero = _ie(inherit_weight=0.0, explore_weight=0.0)
    zero.load_state_dict(base.state_dict())
    s = {"p2": torch.randn(1, 4, 4, 4), "p3": torch.randn(1, 5, 2, 2)}
    t = {"p2": torch.randn(1, 6, 4, 4), "p3": torch.randn(1, 6, 2, 2)}
    out, out_s, out_0 = _run(base, s, t), _run(scaled, s, t), _run(zero, s, t)
    assert_close(out_s[INH], 2.0 * out[INH])
    assert_close(out_s[EXP], 0.5 * out[EXP])
    assert float(out_0[INH]) == 0.0 and float(out_0[EXP]) == 0.0


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="INHERIT_WEIGHT"):
        _ie(inherit_weight=-1.0)
    with pytest.raises(ValueError, match="EXPLORE_WEIGHT"):
        _ie(explore_weight=-0.1)
    with pytest.raises(ValueError, match="2"):
        _ie(student_channels=(1, 4))
