"""MODEL.DISTILL.GUIDE_AUTOCAST on the CPU: the guides in reduced precision, the losses in fp32."""

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from shared_kd.benchmark import FP32_GUIDES, FP32_GUIDES_LABEL, format_report, run_benchmark
from shared_kd.modeling.distiller import guide_dtype
from shared_kd.utils.testing import get_tiny_cfg, random_batch

from ..gpu.common import tiny_distill_cfg

LOSSES = ("SharedKDLoss", "SoftTargetKDLoss")  # features, and R-CNN logits through the tap


@pytest.mark.slow
def test_auto_is_off_on_cpu(tmp_path):
    assert get_tiny_cfg().MODEL.DISTILL.GUIDE_AUTOCAST == "auto"
    assert guide_dtype("auto", "cpu") is None and guide_dtype("off", "cuda") is None
    assert guide_dtype("bf16", "cpu") is torch.bfloat16
    assert guide_dtype("fp16", "cuda") is torch.float16
    model = build_model(tiny_distill_cfg(tmp_path, device="cpu"))
    assert model.guide_autocast == "auto" and model.guide_dtype is None
    conv = model.teacher.backbone.bottom_up.stem.conv1.weight
    assert not conv.is_contiguous(memory_format=torch.channels_last)  # only on CUDA


def test_unknown_value_fails_clearly(tmp_path):
    cfg = tiny_distill_cfg(tmp_path, device="cpu")
    cfg.MODEL.DISTILL.GUIDE_AUTOCAST = "int8"
    with pytest.raises(ValueError, match="GUIDE_AUTOCAST must be one of"):
        build_model(cfg)


def _bf16_model(tmp_path):
    cfg = tiny_distill_cfg(tmp_path, device="cpu", losses=LOSSES)
    cfg.MODEL.DISTILL.GUIDE_AUTOCAST = "bf16"
    torch.manual_seed(0)
    model = build_model(cfg).train()
    assert model.guide_dtype is torch.bfloat16
    return model


@pytest.mark.slow
def test_bf16_guides_give_fp32_features_close_to_fp32_ones(tmp_path):
    model = _bf16_model(tmp_path)
    batch = random_batch(2)
    with EventStorage(0):
        model.student(batch)  # records the proposals the guide's box head scores
    low = model.guide_outputs(model.teacher, batch)
    model.guide_dtype = None
    ref = model.guide_outputs(model.teacher, batch)
    for f, x in low.features.items():
        # plain fp32 tensors: autograd may save them (the TSM's conv does)
        assert x.dtype == torch.float32 and not x.is_inference() and x.is_contiguous(), f
        err = (x - ref.features[f]).norm() / ref.features[f].norm()
        assert 0 < err < 0.05, f"{f}: off by {err:.2%}"
    assert low.class_logits.dtype == torch.float32 and not low.class_logits.is_inference()
    torch.testing.assert_close(low.class_logits, ref.class_logits, rtol=0.05, atol=0.05)


@pytest.mark.slow
def test_losses_run_in_fp32_under_autocast(tmp_path):
    """An AMP step (bf16 autocast on CPU): the losses see fp32 inputs with autocast off."""
    model = _bf16_model(tmp_path)
    seen = []

    def record(module, args):
        student, guide = args
        dtypes = {x.dtype for x in list(student.features.values()) + [student.class_logits]}
        dtypes |= {x.dtype for x in list(guide.features.values()) + [guide.class_logits]}
        seen.append((dtypes, torch.is_autocast_cpu_enabled()))

    for modules in model.losses.values():
        modules[0].register_forward_pre_hook(record)
    with EventStorage(0), torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(random_batch(2))
    assert len(seen) == len(LOSSES)
    assert all(dtypes == {torch.float32} and not autocast for dtypes, autocast in seen), seen
    distill = {k: v for k, v in losses.items() if k in ("loss_sharedkd_ident", "loss_kd")}
    assert len(distill) == 2 and all(v.dtype == torch.float32 for v in distill.values())
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    tsm = model.losses["SharedKDLoss"][0].tsm
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in tsm.parameters())


@pytest.mark.slow
def test_benchmark_times_fp32_guides_for_reference(tmp_path):
    cfg = tiny_distill_cfg(tmp_path, device="cpu")
    cfg.MODEL.DISTILL.GUIDE_AUTOCAST = "bf16"
    cfg.SOLVER.IMS_PER_BATCH = 2
    result = run_benchmark(
        cfg, iters=1, warmup=0, random_teacher=True, memory=False, batch=random_batch(2)
    )
    assert result["guide_precision"] == "bfloat16"
    assert result["timings"][FP32_GUIDES]["count"] == 1
    report = format_report(result)
    assert FP32_GUIDES_LABEL in report
    # --amp trains in detectron2's AMPTrainer, which needs CUDA: said before anything is built
    with pytest.raises(ValueError, match="AMPTrainer trains on CUDA only"):
        run_benchmark(cfg, iters=1, warmup=0, random_teacher=True, memory=False, amp=True)
