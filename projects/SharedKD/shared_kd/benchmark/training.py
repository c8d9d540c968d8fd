"""
What distillation costs per training iteration: the student alone, the guides' forward, the
distillation step, and the distillation losses alone, timed in one process on one batch.

The student is built with random weights (and the guides too with ``random_teacher``); their
FrozenBN layers, if any, get the batch's statistics (:func:`calibrate_frozen_bn`), so that deep
random ResNets train with finite losses, at the speed of trained ones.

:func:`run_benchmark` measures, after warm-up, the wall time of

- (a) ``student_step``: a training step of the student built alone from the distillation config
  (:func:`shared_kd.config.plain_detector_config`), as detectron2 trains it: its ``SimpleTrainer``'s
  ``run_step`` (forward with its own losses, backward, metric write, optimizer step) and an
  LR-scheduler step;
- (b) ``teacher_forward``: ``DistillationDetector.guide_outputs`` of every guide the losses
  read (the teacher, and teaching assistants if any), under ``torch.no_grad()``;
- (c) ``distill_step``: the same training step of the ``DistillationDetector`` built from the
  config;
- (d) ``distill_losses``: forward + backward of ``DistillationDetector.distillation_losses``
  alone, on the student's outputs and the read guides' outputs captured once (the student's
  training forward, then ``guide_outputs``): the student's as leaf tensors that require grad,
  the guides' passed as its ``guide_outputs`` argument, not recomputed;

and, when the guides run in reduced precision (``MODEL.DISTILL.GUIDE_AUTOCAST``), (b) once more
with them in fp32 (``teacher_forward_fp32``, as peers run a teacher: the saving is reported); and
checks two targets (:func:`judge_targets`): (c) <= 1.02 x ((a) + (b)) (the wrapper adds at
most 2% over the work it cannot avoid) and (d) <= 2% of (c). Data loading is excluded: one
batch of the config's train loader is reused every iteration. The four measurements run
interleaved, one of each per round, so that a change in the machine's load affects all of them
alike.

With ``amp``, the training steps (a) and (c) run in detectron2's ``AMPTrainer`` (fp16 autocast
and a gradient scaler; CUDA only, as in detectron2); (b) and (d) run as inside (c), where the
guides use their own precision and the losses fp32.

Peak memory of (a) and (c) is measured in a fresh process each (``multiprocessing`` spawn) that
builds only that model, so that neither includes the other's tensors or the allocator's cache.
On CUDA the child reports ``torch.cuda.max_memory_allocated``; on CPU (Linux) its peak RSS
(``VmHWM``; not ``ru_maxrss``, which a spawned child inherits from its parent) and its RSS
before it built the model (``baseline_bytes``: the interpreter, torch and the batch).
"""

import concurrent.futures
import copy
import dataclasses
import itertools
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import detectron2
import torch
import torch.nn as nn
from detectron2.data import build_detection_train_loader
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances, PolygonMasks
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage

from .. import config
from ..config import plain_detector_config
from ..data.register import model_num_classes
from ..layers.levels import resolve_in_features
from ..layers.outputs import DetectorOutputs
from ..modeling.autoencoder import TeacherAutoEncoder
from ..modeling.distiller import DistillationDetector
from ..modeling.guide import Guide, build_guide
from ..names import DISTILL_META_ARCH
from .memory import proc_status_bytes, reset_peak_rss

__all__ = [
    "LOSS_SHARE_TARGET",
    "MEASUREMENTS",
    "OVERHEAD_TARGET",
    "build_distiller",
    "build_random_guides",
    "build_student",
    "calibrate_frozen_bn",
    "format_report",
    "judge_targets",
    "load_batch",
    "load_config",
    "peak_memory",
    "run_benchmark",
    "synthetic_batch",
]


OVERHEAD_TARGET = 1.02  # (c) <= OVERHEAD_TARGET * ((a) + (b))
LOSS_SHARE_TARGET = 0.02  # (d) <= LOSS_SHARE_TARGET * (c)

# name -> label, in the order (a)-(d)
MEASUREMENTS = {
    "student_step": "(a) student alone: train step",
    "teacher_forward": "(b) guides' forward (no_grad)",
    "distill_step": "(c) distillation: train step",
    "distill_losses": "(d) distillation losses: fwd + bwd",
}
# Timed only when the guides run in reduced precision: (b) with them in fp32.
FP32_GUIDES = "teacher_forward_fp32"
FP32_GUIDES_LABEL = "(b) guides' forward in fp32 (reference)"


def load_config(config_file: str, opts: Sequence[str] = ()):
    """A distillation config from a file and ``KEY VALUE`` overrides, frozen."""
    cfg = config.load_config(config_file, opts)
    cfg.freeze()
    return cfg


def _check_distill_cfg(cfg):
    if cfg.MODEL.META_ARCHITECTURE != DISTILL_META_ARCH:
        raise ValueError(
            f"The benchmark needs a distillation config (MODEL.META_ARCHITECTURE "
            f"{DISTILL_META_ARCH!r}), got {cfg.MODEL.META_ARCHITECTURE!r}."
        )


def _seed(cfg):
    seed = cfg.SEED if cfg.SEED >= 0 else 0
    torch.manual_seed(seed)
    return seed


def build_student(cfg) -> nn.Module:
    """The distillation config's student, built alone (no guides, no distillation)."""
    _check_distill_cfg(cfg)
    _seed(cfg)
    return build_model(plain_detector_config(cfg))


def build_random_guides(cfg) -> List[Guide]:
    """
    The teacher and the teaching assistants, built from their config files (yaml or ``.py``,
    which must exist) with random weights instead of loading ``WEIGHTS``; frozen and in eval
    mode, on ``MODEL.DEVICE``, as :func:`shared_kd.modeling.build_guide` returns them.
    """
    d = cfg.MODEL.DISTILL
    specs = [(d.TEACHER.CONFIG_FILE, d.TEACHER.OPTS, "teacher")]
    specs += [(f, (), "assistant") for f in d.ASSISTANTS.CONFIG_FILES]
    return [
        build_guide(config_file, None, opts, cfg.MODEL.DEVICE, role)
        for config_file, opts, role in specs
    ]


def build_distiller(cfg, random_teacher: bool = False) -> DistillationDetector:
    """
    The ``DistillationDetector`` of a distillation config.

    Args:
        random_teacher: build the guides (teacher and TAs) with random weights (see
            :func:`build_random_guides`) instead of loading their trained weights. The
            inherit/explore loss's auto-encoder, which is tied to the trained teacher's weights,
            is then a random one made for the random teacher. Timing does not depend on weights.
    """
    _check_distill_cfg(cfg)
    _seed(cfg)
    if not random_teacher:
        return build_model(cfg)  # exactly what training builds
    guides = build_random_guides(cfg)
    with tempfile.TemporaryDirectory(prefix="sharedkd-bench-") as tmp:
        if "InheritExploreLoss" in cfg.MODEL.DISTILL.LOSSES:
            cfg = _with_random_autoencoder(cfg, guides[0].model, tmp)
        model = DistillationDetector(cfg, guides=guides)
    return model.to(torch.device(cfg.MODEL.DEVICE))


def _with_random_autoencoder(cfg, teacher, folder):
    """``cfg`` with ``AE_WEIGHTS`` pointing at a random stage-A checkpoint of ``teacher``."""
    d = cfg.MODEL.DISTILL
    shapes = teacher.backbone.output_shape()
    in_features = resolve_in_features(d.IN_FEATURES, shapes, "teacher")
    ae = TeacherAutoEncoder(
        teacher=teacher, in_features=in_features, shapes=shapes, latent=d.INHERIT_EXPLORE.LATENT
    )
    path = os.path.join(folder, "random_autoencoder.pth")
    torch.save({"model": ae.state_dict()}, path)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DISTILL.INHERIT_EXPLORE.AE_WEIGHTS = path
    cfg.freeze()
    return cfg


@torch.no_grad()
def calibrate_frozen_bn(detector: nn.Module, batch) -> int:
    """
    Give a randomly initialised detector's ``FrozenBatchNorm2d`` layers the per-channel mean and
    variance of their inputs on ``batch`` (what a BatchNorm's statistics would be), so that its
    activations keep the scale of a trained model's.

    A fresh ``FrozenBatchNorm2d`` is the identity, so a random ResNet's activations grow about
    sqrt(2)-fold per residual block: some 2^16-fold through R101, past fp16's range, and the
    losses of such a teacher or student are in the billions. No-op for a model without one
    (GroupNorm). Returns the number of layers set.
    """
    layers = [m for m in detector.backbone.modules() if isinstance(m, FrozenBatchNorm2d)]

    def set_statistics(module, args):
        x = args[0].float()
        module.running_mean.copy_(x.mean((0, 2, 3)))
        module.running_var.copy_(x.var((0, 2, 3)))

    hooks = [m.register_forward_pre_hook(set_statistics) for m in layers]
    training = detector.backbone.training
    try:
        if layers:
            detector.backbone.eval()  # (a distiller's hooks record training forwards only)
            detector.backbone(detector.preprocess_image(batch).tensor)
    finally:
        detector.backbone.train(training)
        for h in hooks:
            h.remove()
    return len(layers)


def load_batch(cfg) -> List[Dict[str, Any]]:
    """One batch (``SOLVER.IMS_PER_BATCH`` images) of the config's train loader, seeded."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATALOADER.NUM_WORKERS = 0  # one batch: no worker processes to start
    seed_all_rng(cfg.SEED if cfg.SEED >= 0 else 0)  # the sampler's order and augmentations
    return next(iter(build_detection_train_loader(cfg)))


def synthetic_batch(cfg, height: int, width: int, num_images: int, seed: int = 0):
    """
    ``num_images`` random ``height x width`` images, as the model receives them after the data
    mapper (no resizing happens in the model), each with 2-12 random boxes of COCO-like sizes
    (and box-shaped polygon masks if ``MODEL.MASK_ON``): timing needs no dataset.
    """
    g = torch.Generator().manual_seed(seed)
    num_classes = model_num_classes(cfg)[1]
    if num_classes is None:
        raise ValueError(
            f"Synthetic batches need the number of classes of a detector family; "
            f"{cfg.MODEL.META_ARCHITECTURE!r} is of none (shared_kd.modeling.families)."
        )
    batch = []
    for _ in range(num_images):
        k = int(torch.randint(2, 13, (1,), generator=g))
        side = torch.tensor([width, height], dtype=torch.float32)
        wh = (0.04 + torch.rand(k, 2, generator=g) * 0.4) * side
        xy0 = torch.rand(k, 2, generator=g) * (side - wh)
        boxes = torch.cat([xy0, xy0 + wh], dim=1)
        inst = Instances((height, width))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.randint(0, num_classes, (k,), generator=g)
        if cfg.MODEL.MASK_ON:
            inst.gt_masks = PolygonMasks(
                [[[x0, y0, x1, y0, x1, y1, x0, y1]] for x0, y0, x1, y1 in boxes.tolist()]
            )
        image = torch.randint(0, 256, (3, height, width), generator=g).float()
        batch.append({"image": image, "height": height, "width": width, "instances": inst})
    return batch


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_amp(cfg, amp: bool):
    if amp and torch.device(cfg.MODEL.DEVICE).type != "cuda":
        raise ValueError(
            f"amp: detectron2's AMPTrainer trains on CUDA only, but MODEL.DEVICE is "
            f"{cfg.MODEL.DEVICE!r}. Drop --amp, or benchmark on a GPU (MODEL.DEVICE cuda)."
        )


class _Trainable:
    """
    A model trained by detectron2's own trainer on one batch reused every step: a
    ``SimpleTrainer`` (or with ``amp`` an ``AMPTrainer``: fp16 autocast and a gradient scaler,
    CUDA only, as in detectron2) with the optimizer and LR scheduler ``DefaultTrainer`` builds
    from the config. :meth:`step` is one ``run_step`` (forward with its losses, backward, the
    trainer's metric write, optimizer step) and one scheduler step, as the ``LRScheduler`` hook
    runs it, inside this model's own ``EventStorage``.
    """

    def __init__(self, cfg, model: nn.Module, batch: List[Dict[str, Any]], amp: bool = False):
        _check_amp(cfg, amp)
        optimizer = DefaultTrainer.build_optimizer(cfg, model)
        self.trainer = (AMPTrainer if amp else SimpleTrainer)(
            model.train(), itertools.repeat(batch), optimizer
        )
        self.scheduler = DefaultTrainer.build_lr_scheduler(cfg, optimizer)
        self.storage = EventStorage(0)

    @property
    def model(self) -> nn.Module:
        return self.trainer.model

    def step(self):
        with self.storage:
            self.trainer.iter = self.storage.iter
            self.trainer.run_step()
            self.scheduler.step()
            self.storage.step()

    def finish(self) -> float:
        """The last step's total loss, as the trainer wrote it (nan before any step)."""
        latest = self.storage.latest().get("total_loss")
        return float("nan") if latest is None else float(latest[0])


def _build_trainable(
    cfg, which: str, random_teacher: bool, amp: bool, batch: List[Dict[str, Any]]
) -> _Trainable:
    """
    The model of (a) or (c) with its trainer. Its random models (the student, and the guides if
    random) get FrozenBN statistics from ``batch`` (:func:`calibrate_frozen_bn`).
    """
    if which == "student_step":
        model = build_student(cfg)
        detectors = [model]
    elif which == "distill_step":
        model = build_distiller(cfg, random_teacher)
        detectors = [model.student] + (list(model.guides) if random_teacher else [])
    else:
        raise ValueError(f"Unknown trainable {which!r}")
    for detector in detectors:
        calibrate_frozen_bn(detector, batch)
    return _Trainable(cfg, model, batch, amp)


@dataclasses.dataclass
class _Measurement:
    name: str
    run: Callable[[], Any]
    prepare: Optional[Callable[[], None]] = None  # untimed, before each run


def _time_interleaved(
    measurements: List[_Measurement], iters: int, warmup: int, device: torch.device
) -> Dict[str, List[float]]:
    """Seconds per run of each measurement: ``warmup`` untimed rounds, then ``iters`` timed."""
    samples = {m.name: [] for m in measurements}
    for i in range(warmup + iters):
        for m in measurements:
            if m.prepare is not None:
                m.prepare()
            _sync(device)
            start = time.perf_counter()
            m.run()
            _sync(device)
            if i >= warmup:
                samples[m.name].append(time.perf_counter() - start)
    return samples


def _capture(model: DistillationDetector, batch):
    """
    One dense step's inputs of the distillation losses: the student's outputs (as leaf tensors
    that require grad) and each read guide's outputs, by guide index.
    """
    model.train()
    model.student(batch)  # the hooks record its features (and logits)
    student = model.student_outputs(batch)
    recorded: Dict[int, DetectorOutputs] = {
        i: model.guide_outputs(model.guides[i], batch) for i in model.guides_read()
    }

    def leaf(x):
        return None if x is None else x.detach().requires_grad_()

    student = dataclasses.replace(
        student,
        features={f: leaf(x) for f, x in student.features.items()},
        class_logits=leaf(student.class_logits),
        cache={},
    )
    return student, recorded


def _summary(samples: List[float]) -> Dict[str, Any]:
    if not samples:
        return {
            "median_s": 0.0,
            "mean_s": 0.0,
            "min_s": 0.0,
            "max_s": 0.0,
            "count": 0,
            "samples_s": [],
        }
    return {
        "median_s": statistics.median(samples),
        "mean_s": statistics.mean(samples),
        "min_s": min(samples),
        "max_s": max(samples),
        "count": len(samples),
        "samples_s": list(samples),
    }


def _peak_memory_worker(
    cfg, batch, which: str, random_teacher: bool, steps: int, threads: int, amp: bool = False
):
    torch.set_num_threads(threads)
    device = torch.device(cfg.MODEL.DEVICE)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        baseline = reset_peak_rss()  # this process's own high-water mark from here on
        if baseline is None:
            raise RuntimeError("CPU peak memory needs Linux's /proc/self/status; use --no-memory")
    trainable = _build_trainable(cfg, which, random_teacher, amp, batch)
    for _ in range(steps):
        trainable.step()
    _sync(device)
    if device.type == "cuda":
        return {
            "kind": "cuda_max_memory_allocated",
            "peak_bytes": torch.cuda.max_memory_allocated(),
            # what the caching allocator held at most (closer to what nvidia-smi shows)
            "reserved_bytes": torch.cuda.max_memory_reserved(),
        }
    return {
        "kind": "cpu_peak_rss",
        "peak_bytes": proc_status_bytes("VmHWM")[0],
        "baseline_bytes": baseline,
    }


def peak_memory(
    cfg, batch, which: str, random_teacher: bool = False, steps: int = 3, amp: bool = False
):
    """
    Peak memory of ``steps`` training steps of one model, in a fresh (spawned) process that
    builds only that model and uses this process's ``torch.get_num_threads()``.

    Args:
        which: "student_step" (the student alone) or "distill_step" (the DistillationDetector).
        amp: train as detectron2's AMPTrainer does (see :func:`run_benchmark`).

    Returns:
        dict: ``kind`` ("cuda_max_memory_allocated" or "cpu_peak_rss"), ``peak_bytes``; on CUDA
        ``reserved_bytes`` (the allocator's peak), on CPU ``baseline_bytes``, the child's peak
        RSS before it built the model.
    """
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        job = pool.submit(
            _peak_memory_worker,
            cfg,
            batch,
            which,
            random_teacher,
            steps,
            torch.get_num_threads(),
            amp,
        )
        return job.result()


def run_benchmark(
    cfg,
    *,
    iters: int = 20,
    warmup: int = 5,
    random_teacher: bool = False,
    memory: bool = True,
    batch: Optional[List[Dict[str, Any]]] = None,
    config_file: str = "",
    amp: bool = False,
) -> Dict[str, Any]:
    """
    Time (a)-(d) (see the module docstring) and check the targets.

    Args:
        cfg: a distillation config (``MODEL.META_ARCHITECTURE: "DistillationDetector"``).
        iters: timed rounds (samples per measurement), >= 1.
        warmup: untimed rounds first, >= 0.
        random_teacher: see :func:`build_distiller`.
        memory: also measure the peak memory of (a) and (c), each in a fresh process.
        batch: the batch to reuse; default: :func:`load_batch`.
        config_file: recorded in the result.
        amp: the training steps (a) and (c) in mixed precision, as ``SOLVER.AMP.ENABLED`` trains
            (see the module docstring).

    Returns:
        dict: JSON-serialisable; ``timings`` (name -> median/mean/min/max seconds, count,
        samples; also ``teacher_forward_fp32`` when the guides run in reduced precision),
        ``memory`` (name -> peak bytes, or None), ``targets`` (name -> value, limit,
        passed) and the environment (device, versions, threads, config).
    """
    _check_distill_cfg(cfg)
    _check_amp(cfg, amp)
    if iters < 1 or warmup < 0:
        raise ValueError(f"iters must be >= 1 and warmup >= 0, got {iters} and {warmup}")
    device = torch.device(cfg.MODEL.DEVICE)
    batch = load_batch(cfg) if batch is None else batch

    student = _build_trainable(cfg, "student_step", random_teacher, amp, batch)
    distill = _build_trainable(cfg, "distill_step", random_teacher, amp, batch)
    model: DistillationDetector = distill.model
    with EventStorage():  # for the distiller's own reads in (b) and (d)
        captured_student, guide_outputs = _capture(model, batch)
        # The tap's state after the capture (e.g. R-CNN's sampled proposals, which the guides'
        # box heads score); (c)'s steps clear it, (b) restores it before each run.
        tap_state = model.logit_tap.snapshot() if model.logit_tap is not None else {}
        read = sorted(guide_outputs)  # the indices of the guides the losses read

        def restore_tap():
            if model.logit_tap is not None:
                model.logit_tap.restore(tap_state)

        def teacher_forward():
            for guide in read:
                model.guide_outputs(guide, batch)

        # Peers' way: the guides in fp32, in the default memory format (copies: ours may be
        # channels-last).
        fp32_guides = (
            [
                (i, copy.deepcopy(model.guides[i]).to(memory_format=torch.contiguous_format))
                for i in read
            ]
            if model.guide_dtype is not None
            else []
        )

        def teacher_forward_fp32():
            dtype, model.guide_dtype = model.guide_dtype, None
            try:
                for i, guide in fp32_guides:
                    model.guide_outputs(i, batch, model=guide)
            finally:
                model.guide_dtype = dtype

        leaves = [x for x in captured_student.features.values()]
        leaves += (
            [captured_student.class_logits] if captured_student.class_logits is not None else []
        )

        def distill_losses():
            for x in leaves:
                x.grad = None
            model.losses.zero_grad(set_to_none=True)
            s = dataclasses.replace(captured_student, cache={})  # a fresh per-step memo
            # Every guide kept (a dense step, as in the capture); the read ones not rerun.
            terms = model.distillation_losses(s, batch, guide_outputs=guide_outputs)
            if terms:
                sum(terms.values()).backward()

        measurements = [
            _Measurement("student_step", student.step),
            _Measurement("teacher_forward", teacher_forward, restore_tap),
            _Measurement("distill_step", distill.step),
            _Measurement("distill_losses", distill_losses),
        ]
        if fp32_guides:
            measurements.insert(2, _Measurement(FP32_GUIDES, teacher_forward_fp32, restore_tap))
        samples = _time_interleaved(measurements, iters, warmup, device)
        if not read:
            samples["teacher_forward"] = []  # no loss reads a guide: (c) runs none
    # A diverged model stops the run: the trainer raises FloatingPointError on a non-finite loss.
    final_losses = {"student_step": student.finish(), "distill_step": distill.finish()}
    timings = {name: _summary(samples[name]) for name in MEASUREMENTS}
    if fp32_guides:
        timings[FP32_GUIDES] = _summary(samples[FP32_GUIDES])
        fp32_guides.clear()  # free the copies before the memory measurements

    mem = {"student_step": None, "distill_step": None}
    if memory:
        for which in mem:
            mem[which] = peak_memory(cfg, batch, which, random_teacher, amp=amp)

    return {
        "config_file": config_file,
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine()
        ),
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "detectron2": detectron2.__version__,
        "python": platform.python_version(),
        "random_teacher": random_teacher,
        "amp": amp,
        "guide_precision": str(model.guide_dtype or torch.float32).replace("torch.", ""),
        "ims_per_batch": len(batch),
        "image_sizes": [list(x["image"].shape[-2:]) for x in batch],
        "losses": list(cfg.MODEL.DISTILL.LOSSES),
        "guides": len(model.guides),
        "guides_read": len(read),
        "drop_prob": cfg.MODEL.DISTILL.ASSISTANTS.DROP_PROB,
        "iters": iters,
        "warmup": warmup,
        "timings": timings,
        "memory": mem,
        "final_losses": final_losses,
        "targets": judge_targets({name: samples[name] for name in MEASUREMENTS}),
    }


def _median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else 0.0


def judge_targets(samples: Dict[str, Sequence[float]]) -> Dict[str, Dict[str, Any]]:
    """
    The two targets, judged on the timing samples of (a)-(d); pure arithmetic.

    Args:
        samples: each name of :data:`MEASUREMENTS` -> its samples, one per timed round (the
            i-th of each from the same round), in any one unit: only ratios come out. An
            empty list (``teacher_forward`` when no loss reads a guide) counts as 0 each round.

    Returns:
        dict: ``"overhead"``: (c) / ((a) + (b)), and ``"loss_share"``: (d) / (c), each with
        ``value`` (the ratio of the medians, which is judged), ``paired_median`` (the median
        over rounds of the ratio within each round: less sensitive to the machine's load
        drifting between rounds; reported, not judged), ``limit``
        (:data:`OVERHEAD_TARGET`, :data:`LOSS_SHARE_TARGET`), ``passed`` (value <= limit)
        and ``definition`` (the target in words).
    """
    missing = [name for name in MEASUREMENTS if name not in samples]
    lengths = {len(samples[name]) for name in MEASUREMENTS if name not in missing}
    lengths.discard(0)
    if missing or len(lengths) > 1 or not lengths:
        counts = {name: len(values) for name, values in samples.items()}
        raise ValueError(
            f"Need samples of each of {list(MEASUREMENTS)}, as many of each (or none), from at "
            f"least one round; got these counts: {counts}"
        )
    rounds = lengths.pop()
    a, b, c, d = (_median(samples[name]) for name in MEASUREMENTS)
    per_round = list(zip(*(samples[name] or [0.0] * rounds for name in MEASUREMENTS)))
    overhead, share = c / (a + b), d / c
    overhead_paired = statistics.median(rc / (ra + rb) for ra, rb, rc, _ in per_round)
    share_paired = statistics.median(rd / rc for _, _, rc, rd in per_round)
    return {
        "overhead": {
            "definition": f"(c) <= {OVERHEAD_TARGET} x ((a) + (b))",
            "value": overhead,
            "paired_median": overhead_paired,
            "limit": OVERHEAD_TARGET,
            "passed": overhead <= OVERHEAD_TARGET,
        },
        "loss_share": {
            "definition": f"(d) <= {LOSS_SHARE_TARGET:.0%} of (c)",
            "value": share,
            "paired_median": share_paired,
            "limit": LOSS_SHARE_TARGET,
            "passed": share <= LOSS_SHARE_TARGET,
        },
    }


def _mib(n):
    return "-" if n is None else f"{n / 2**20:.0f} MiB"


def format_report(result: Dict[str, Any]) -> str:
    """The result as two markdown tables: the measurements, then the targets."""
    lines = [
        f"Config: `{result['config_file']}`; device {result['device']} "
        f"({result['device_name']}, {result['torch_num_threads']} threads); torch "
        f"{result['torch']}, detectron2 {result['detectron2']}; batch of "
        f"{result['ims_per_batch']}; {result['warmup']} warm-up + {result['iters']} timed "
        f"rounds"
        + ("; random guides" if result["random_teacher"] else "")
        + ("; AMP" if result.get("amp") else "")
        + f"; guides in {result.get('guide_precision', 'float32')}",
        "",
        "| measurement | median (ms) | min (ms) | max (ms) | samples | peak memory |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    labels = list(MEASUREMENTS.items())
    if FP32_GUIDES in result["timings"]:
        labels.insert(2, (FP32_GUIDES, FP32_GUIDES_LABEL))
    for name, label in labels:
        t = result["timings"][name]
        m = result["memory"].get(name)
        if m is None:
            peak = "-"
        elif m["kind"] == "cpu_peak_rss":
            peak = f"{_mib(m['peak_bytes'])} RSS (+{_mib(m['peak_bytes'] - m['baseline_bytes'])})"
        else:
            peak = _mib(m["peak_bytes"])
        lines.append(
            f"| {label} | {t['median_s'] * 1e3:.1f} | {t['min_s'] * 1e3:.1f} | "
            f"{t['max_s'] * 1e3:.1f} | {t['count']} | {peak} |"
        )
    ov, ls = result["targets"]["overhead"], result["targets"]["loss_share"]
    lines += [
        "",
        "| target | measured (medians) | limit | result | per-round median |",
        "|---|---:|---:|---|---:|",
        f"| {ov['definition']} | {ov['value']:.3f} x | {ov['limit']:.2f} x | "
        f"{'PASS' if ov['passed'] else 'FAIL'} | {ov['paired_median']:.3f} x |",
        f"| {ls['definition']} | {ls['value']:.1%} | {ls['limit']:.0%} | "
        f"{'PASS' if ls['passed'] else 'FAIL'} | {ls['paired_median']:.1%} |",
        "",
        "Targets are judged on the medians; the per-round median (each round runs (a)-(d) back "
        "to back) is shown as a check against load drift.",
    ]
    return "\n".join(lines)
