"""
What only a GPU shows: every distillation loss, the distiller's step, the guides' reduced
precision and the export, on CUDA (see ``common.py``: skipped without CUDA).
"""

import copy
import dataclasses
import os

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg, instantiate
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from shared_kd.benchmark import build_distiller
from shared_kd.export import export_student
from shared_kd.lazy import load_lazy_config
from shared_kd.losses import DISTILL_LOSS_REGISTRY
from shared_kd.modeling import DistillationDetector
from shared_kd.utils.testing import random_batch

from ..conftest import REPO_ROOT
from .common import DEVICE, pytestmark, tiny_distill_cfg  # noqa: F401  (pytestmark: gpu, skip)

LAZY_DISTILL = os.path.join(
    REPO_ROOT, "configs", "shapes", "sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.py"
)

DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
# Relative tolerances against the fp32 CPU value: TF32 convolutions on CUDA, then half precision.
RTOL = {"fp32": 1e-2, "fp16": 5e-2, "bf16": 8e-2}
GRAD_RTOL = {"fp32": 2e-2, "fp16": 1e-1, "bf16": 1.5e-1}
# Terms of |x|: half precision flips the sign of near-zero differences, so their gradients are
# only compared in direction.
L1_LOSSES = {"InheritExploreLoss"}


def _autocast(dtype):
    if dtype is None:
        return torch.autocast(DEVICE.type, enabled=False)
    return torch.autocast(DEVICE.type, dtype=dtype)


def _to(out, device, requires_grad):
    """DetectorOutputs on ``device``, as fresh leaves (the student's may require grad)."""

    def leaf(x):
        if x is None:
            return None
        return x.detach().to(device).clone().requires_grad_(requires_grad)

    return dataclasses.replace(
        out,
        features={f: leaf(x) for f, x in out.features.items()},
        class_logits=leaf(out.class_logits),
        cache={},
    )


def _loss_inputs(tmp_path, family):
    """Every registered loss's module and the (student, guide) inputs of a CPU training step."""
    names = sorted(name for name, _ in DISTILL_LOSS_REGISTRY)
    cfg = tiny_distill_cfg(tmp_path, family, device="cpu", losses=names)
    torch.manual_seed(0)
    model = build_distiller(cfg, random_teacher=True).train()
    recorded, hooks = [], []
    for name, modules in model.losses.items():
        for module in modules:
            hooks.append(
                module.register_forward_pre_hook(
                    lambda m, args, name=name: recorded.append((name, m, args[0], args[1]))
                )
            )
    with EventStorage(0):
        model(random_batch(2))
    for hook in hooks:  # copies of the modules would keep them
        hook.remove()
    assert {name for name, *_ in recorded} == set(names)
    return recorded


def _run(module, student, guide, device, dtype):
    module = copy.deepcopy(module).to(device)
    student = _to(student, device, True)
    guide = None if guide is None else _to(guide, device, False)
    with EventStorage(0), _autocast(dtype):
        terms = module(student, guide)
    total = sum(terms.values())
    total.backward()
    leaves = list(student.features.values()) + [student.class_logits]
    grads = [x.grad for x in leaves if x is not None and x.grad is not None]
    params = [p.grad for p in module.parameters() if p.grad is not None]
    return {k: v.detach().float().cpu() for k, v in terms.items()}, grads, params


@pytest.mark.parametrize("family", ["faster_rcnn", "retinanet"])
def test_every_loss_forward_backward_matches_cpu_fp32(tmp_path, family):
    for name, module, student, guide in _loss_inputs(tmp_path, family):
        ref, ref_grads, _ = _run(module, student, guide, "cpu", None)
        for precision, dtype in DTYPES.items():
            where = f"{name} ({family}, {precision} on {DEVICE})"
            terms, grads, params = _run(module, student, guide, DEVICE, dtype)
            assert terms.keys() == ref.keys(), where
            for k, v in terms.items():
                assert torch.isfinite(v).all(), f"{where}: {k} = {v}"
                torch.testing.assert_close(
                    v,
                    ref[k],
                    rtol=RTOL[precision],
                    atol=1e-4,
                    msg=lambda m, k=k, where=where: f"{where} {k}: {m}",
                )
            assert all(torch.isfinite(g).all() for g in grads + params), where
            assert len(grads) == len(ref_grads) > 0, where
            g = torch.cat([x.float().cpu().flatten() for x in grads])
            r = torch.cat([x.flatten() for x in ref_grads])
            if name in L1_LOSSES:
                cos = torch.nn.functional.cosine_similarity(g, r, dim=0)
                assert cos > 0.9, f"{where}: gradient direction off (cosine {cos:.3f})"
            else:
                err = (g - r).norm() / r.norm().clamp_min(1e-12)
                assert err < GRAD_RTOL[precision], f"{where}: gradient off by {err:.2%}"


def _step(model, batch, optimizer, scaler=None):
    with EventStorage(0), torch.autocast(DEVICE.type, enabled=scaler is not None):
        losses = model(batch)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values()), losses
    distill = {k: v for k, v in losses.items() if k.startswith("loss_sharedkd")}
    assert distill and all(v.dtype == torch.float32 for v in distill.values()), distill
    optimizer.zero_grad()
    total = sum(losses.values())
    if scaler is None:
        total.backward()
        optimizer.step()
    else:  # as detectron2's AMPTrainer
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
    return losses


def _check_guides_on_the_device(model):
    assert all(p.device.type == DEVICE.type for p in model.teacher.parameters())
    assert all(b.device.type == DEVICE.type for b in model.teacher.buffers())
    if DEVICE.type == "cuda":  # "auto": bf16 guides, channels-last backbones
        assert model.guide_dtype in (torch.bfloat16, torch.float16)
        conv = model.teacher.backbone.bottom_up.stem.conv1.weight
        assert conv.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("family", ["faster_rcnn", "retinanet"])
def test_distiller_step_teacher_and_tsm_on_the_device(tmp_path, family):
    cfg = tiny_distill_cfg(tmp_path, family)
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model, DistillationDetector)
    assert model.device.type == DEVICE.type
    _check_guides_on_the_device(model)
    tsm = model.losses["SharedKDLoss"][0].tsm
    assert all(p.device.type == DEVICE.type for p in tsm.parameters())
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    model.train()
    _step(model, random_batch(2, seed=0), optimizer)
    scaler = torch.amp.GradScaler(DEVICE.type) if DEVICE.type == "cuda" else None
    _step(model, random_batch(2, seed=1), optimizer, scaler)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in tsm.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_guides_stay_close_to_fp32(tmp_path, precision):
    cfg = tiny_distill_cfg(tmp_path, "retinanet", losses=("SharedKDLoss", "SoftTargetKDLoss"))
    cfg.MODEL.DISTILL.GUIDE_AUTOCAST = precision
    model = build_model(cfg).train()
    batch = random_batch(2)
    with EventStorage(0):
        model.student(batch)  # the logit tap records the student's side
    low = model.guide_outputs(model.teacher, batch)
    dtype, model.guide_dtype = model.guide_dtype, None
    ref = model.guide_outputs(model.teacher, batch)
    model.guide_dtype = dtype
    for f, x in low.features.items():
        assert x.dtype == torch.float32 and not x.is_inference() and x.is_contiguous(), f
        err = (x - ref.features[f]).norm() / ref.features[f].norm()
        assert err < 0.05, f"{f}: {precision} guide features off by {err:.2%}"
    assert low.class_logits.dtype == torch.float32
    err = (low.class_logits - ref.class_logits).norm() / ref.class_logits.norm()
    assert err < 0.05, f"logits off by {err:.2%}"


def test_export_and_reload_on_the_device(tmp_path):
    cfg = tiny_distill_cfg(tmp_path)
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    model.train()
    _step(model, random_batch(2), optimizer)
    out = tmp_path / "student"
    export_student(cfg, model.state_dict(), str(out))
    plain_cfg = get_cfg()  # vanilla detectron2 keys only
    plain_cfg.merge_from_file(str(out / "config.yaml"))
    plain = build_model(plain_cfg)
    DetectionCheckpointer(plain).load(str(out / "model_final.pth"))
    assert plain.device.type == DEVICE.type
    inputs = [{"image": b["image"], "height": 64, "width": 64} for b in random_batch(2, seed=3)]
    model.eval()
    plain.eval()
    with torch.no_grad():
        ours, theirs = model(inputs), plain(inputs)
    for a, b in zip(ours, theirs):
        a, b = a["instances"], b["instances"]
        assert len(a) == len(b)
        # the same weights and kernels; cuDNN may still pick other algorithms per instance
        torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-4)


def test_a_lazy_distiller_moves_to_the_device_with_bf16_guides(tmp_path):
    """As train_net.py builds a .py config: instantiate on the CPU, then .to(train.device)."""
    cfg = load_lazy_config(LAZY_DISTILL)
    cfg.model.guides[0].weights = None  # random weights: only devices and dtypes are checked
    model = instantiate(cfg.model)
    assert model.teacher.device.type == "cpu" and model.guide_dtype is None
    model.to(DEVICE)
    assert model.student.device.type == DEVICE.type
    _check_guides_on_the_device(model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    model.train()
    scaler = torch.amp.GradScaler(DEVICE.type) if DEVICE.type == "cuda" else None
    _step(model, random_batch(2, size=128, seed=0), optimizer, scaler)
