"""M-KD inherit/explore, stage A: the teacher's per-level auto-encoders (TeacherAutoEncoder)."""

import math

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from torch.testing import assert_close

import shared_kd.modeling  # noqa: F401  (registers TeacherAutoEncoder)
from shared_kd.config import add_sharedkd_config
from shared_kd.layers.encoders import weights_fingerprint
from shared_kd.modeling.autoencoder import TeacherAutoEncoder
from shared_kd.utils.testing import get_tiny_cfg, random_batch

LATENT = 8
LEVELS = ["p2", "p3"]


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory):
    """A tiny Faster R-CNN teacher saved as a detectron2 checkpoint and config; its fingerprint."""
    torch.manual_seed(0)
    cfg = get_tiny_cfg("faster_rcnn", fpn_channels=32)
    model = build_model(cfg)
    d = tmp_path_factory.mktemp("teacher")
    weights, config = d / "teacher.pth", d / "teacher.yaml"
    torch.save({"model": model.state_dict()}, weights)
    config.write_text(cfg.dump())
    return str(config), str(weights), weights_fingerprint(model)


def _ae_cfg(config, weights, latent=LATENT, in_features=LEVELS):
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "TeacherAutoEncoder"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.DISTILL.TEACHER.CONFIG_FILE = config
    cfg.MODEL.DISTILL.TEACHER.WEIGHTS = weights
    cfg.MODEL.DISTILL.INHERIT_EXPLORE.LATENT = latent
    cfg.MODEL.DISTILL.IN_FEATURES = list(in_features)
    return cfg


@pytest.fixture
def autoencoder(teacher_files):
    torch.manual_seed(0)
    config, weights, _ = teacher_files
    return build_model(_ae_cfg(config, weights))


# ----------------------------------------------------------------------------- TeacherAutoEncoder


@pytest.mark.slow
def test_autoencoder_structure(autoencoder, teacher_files):
    assert isinstance(autoencoder, TeacherAutoEncoder)
    assert autoencoder.in_features == LEVELS
    assert list(autoencoder.autoencoders) == LEVELS
    for f in LEVELS:
        enc = autoencoder.autoencoders[f].encoder
        assert enc[0].in_channels == 32 and enc[-1].out_channels == LATENT
    # the teacher is frozen, in eval mode, and kept out of the module tree
    teacher = autoencoder.teacher
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    names = [n for n, _ in autoencoder.named_parameters()]
    assert names and all(n.startswith("autoencoders.") for n in names)
    own = {id(p) for p in autoencoder.parameters()}
    assert not any(id(p) in own for p in teacher.parameters())
    keys = set(autoencoder.state_dict())
    assert "teacher_fingerprint" in keys
    assert keys - {"teacher_fingerprint"} == set(names)
    assert not any("backbone" in k or "roi_heads" in k for k in keys)
    # the fingerprint is that of the loaded teacher, which is the saved one
    fp = autoencoder.state_dict()["teacher_fingerprint"]
    assert_close(fp, weights_fingerprint(teacher))
    assert_close(fp, teacher_files[2])


def test_autoencoder_loss_and_gradients(autoencoder):
    with EventStorage(0):
        out = autoencoder(random_batch(num_images=2, size=64, seed=1))
    assert set(out) == {"loss_ae"}
    loss = out["loss_ae"]
    assert loss.shape == () and torch.isfinite(loss) and loss > 0
    loss.backward()
    for name, p in autoencoder.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert sum(float(p.grad.abs().sum()) for p in autoencoder.parameters()) > 0
    for p in autoencoder.teacher.parameters():
        assert p.grad is None


def test_autoencoder_loss_by_hand(autoencoder):
    # L_ae = mean_l mean over elements of (D(E(T_l)) - T_l)^2, on the teacher's own FPN maps
    batch = random_batch(num_images=1, size=64, seed=2)
    teacher = autoencoder.teacher
    with torch.no_grad():
        feats = teacher.backbone(teacher.preprocess_image(batch).tensor)
        terms = []
        for f in LEVELS:
            d = autoencoder.autoencoders[f](feats[f]) - feats[f]
            terms.append((d**2).sum() / d.numel())
        expected = (terms[0] + terms[1]) / 2
        out = autoencoder(batch)["loss_ae"]
    assert_close(out, expected)


def test_autoencoder_adam_steps_lower_the_loss(autoencoder):
    batch = random_batch(num_images=2, size=64, seed=3)
    opt = torch.optim.Adam(autoencoder.parameters(), lr=1e-3)
    teacher_before = {k: v.clone() for k, v in autoencoder.teacher.state_dict().items()}
    losses = []
    with EventStorage(0) as storage:
        for _ in range(8):
            loss = autoencoder(batch)["loss_ae"]
            losses.append(float(loss))
            opt.zero_grad()
            loss.backward()
            opt.step()
            storage.step()
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    # the teacher did not move
    for k, v in autoencoder.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k


def test_autoencoder_all_levels_by_default(teacher_files):
    config, weights, _ = teacher_files
    model = build_model(_ae_cfg(config, weights, in_features=[]))
    assert model.in_features == ["p2", "p3", "p4", "p5", "p6"]  # fine to coarse, by stride


def test_autoencoder_rejects_bad_config(teacher_files):
    config, weights, _ = teacher_files
    with pytest.raises(ValueError, match="p9"):
        build_model(_ae_cfg(config, weights, in_features=["p2", "p9"]))
    with pytest.raises(ValueError, match="LATENT"):
        build_model(_ae_cfg(config, weights, latent=0))
    with pytest.raises(ValueError):
        build_model(_ae_cfg(config, ""))  # no teacher weights
