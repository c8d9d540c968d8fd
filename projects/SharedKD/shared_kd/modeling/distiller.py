"""The distillation meta-architecture: a student trained with frozen guides' guidance."""

import contextlib
import dataclasses
import functools
import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_model
from detectron2.utils.events import get_event_storage

from ..config import plain_detector_config
from ..layers.alignment import crop_to_extent
from ..layers.levels import resolve_in_features
from ..layers.outputs import DetectorOutputs
from ..losses import DistillLoss, build_distill_losses, build_distill_losses_from_options
from ..names import DISTILL_META_ARCH, STUDENT_PREFIX
from .families import build_logit_tap
from .guide import (
    Guide,
    as_guide,
    build_guide,
    check_fits_square,
    check_input_formats,
    in_input_format,
)

__all__ = [
    "GUIDE_AUTOCAST_CHOICES",
    "DistillationDetector",
    "average_over_guides",
    "guide_dtype",
    "sample_kept_guides",
]

logger = logging.getLogger(__name__)


def sample_kept_guides(num_guides: int, drop_prob: float, generator=None) -> List[int]:
    """
    DGKD's stochastic guidance: drop each guide with probability ``drop_prob``, but keep at
    least one (a uniformly chosen one when all were dropped).

    Returns:
        list[int]: the indices of the guides kept this step, ascending.
    """
    keep = (torch.rand(num_guides, generator=generator) >= drop_prob).nonzero().flatten()
    if len(keep) == 0:
        keep = torch.randint(num_guides, (1,), generator=generator)
    return keep.tolist()


GUIDE_AUTOCAST_CHOICES = ("auto", "bf16", "fp16", "off")


def guide_dtype(guide_autocast: str, device) -> Optional[torch.dtype]:
    """
    The dtype the frozen guides' forward autocasts to on ``device`` for a
    ``MODEL.DISTILL.GUIDE_AUTOCAST`` value, or None for full precision (fp32).

    "auto" is bf16 on CUDA (fp16 on a GPU without bf16) and None elsewhere: on CPUs reduced
    precision rarely pays.
    """
    if guide_autocast not in GUIDE_AUTOCAST_CHOICES:
        raise ValueError(
            f"MODEL.DISTILL.GUIDE_AUTOCAST must be one of {GUIDE_AUTOCAST_CHOICES}, got "
            f"{guide_autocast!r}"
        )
    device = torch.device(device)
    if guide_autocast == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[guide_autocast]


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        if device_type == "cuda":
            return torch.is_autocast_enabled()
        return device_type == "cpu" and torch.is_autocast_cpu_enabled()


def _float32(x: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return x if x is None or x.dtype == torch.float32 else x.float()


def _in_full_precision(losses_fn):
    """
    Run a method ``(self, student: DetectorOutputs, ...)`` that computes distillation losses in
    fp32: autocast (e.g. SOLVER.AMP) off, the student's features and logits cast to fp32.
    """

    @functools.wraps(losses_fn)
    def wrapper(self, student, *args, **kwargs):
        device_type = self.device.type
        off = (
            torch.autocast(device_type, enabled=False)
            if _autocast_enabled(device_type)
            else contextlib.nullcontext()
        )
        if any(x.dtype != torch.float32 for x in student.features.values()) or (
            student.class_logits is not None and student.class_logits.dtype != torch.float32
        ):
            student = dataclasses.replace(
                student,
                features={f: _float32(x) for f, x in student.features.items()},
                class_logits=_float32(student.class_logits),
            )
        with off:
            return losses_fn(self, student, *args, **kwargs)

    return wrapper


def average_over_guides(per_term: Dict[str, List[torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """
    Each distillation term's mean over the guides that computed it.

    Args:
        per_term: term name (e.g. ``"loss_kd"``) -> its values, one per guide that computed it
            (in guide order), each a scalar: a 0-dim tensor, shape ``()``.

    Returns:
        term name -> the mean of its values, a 0-dim tensor (shape ``()``), in the order of
        ``per_term``. Gradients flow to every value. (A value with more elements would be
        averaged over its elements too: the result is always a scalar.)
    """
    empty = [term for term, values in per_term.items() if len(values) == 0]
    if empty:
        raise ValueError(f"No values to average for the term(s) {empty}")
    return {term: torch.stack(list(values)).mean() for term, values in per_term.items()}


def _guide_name(index: int) -> str:
    return "teacher" if index == 0 else f"teaching assistant {index}"


def distilled_levels(
    configured: Sequence[str], student: nn.Module, guides: Sequence[nn.Module]
) -> List[str]:
    """
    The levels the losses read: ``configured`` (``MODEL.DISTILL.IN_FEATURES``), or every level
    of the student's backbone when it is empty; checked to be distinct, fine to coarse, and
    levels of the student and of every guide.
    """
    student_shapes = student.backbone.output_shape()
    configured = list(configured or [])
    # The configured list first (the default, all levels by stride, is always fine); its
    # levels that the student lacks are named just below.
    strides = [student_shapes[f].stride for f in configured if f in student_shapes]
    if len(set(configured)) != len(configured) or strides != sorted(strides):
        raise ValueError(
            f"MODEL.DISTILL.IN_FEATURES must list distinct levels fine to coarse, got {configured}"
        )
    in_features = resolve_in_features(configured, student_shapes, "student")
    for i, guide in enumerate(guides):
        resolve_in_features(in_features, guide.backbone.output_shape(), _guide_name(i))
    return in_features


def _check_finite(losses: Dict[str, torch.Tensor]) -> None:
    """
    Stop with the names of the non-finite loss terms and the iteration.

    One device sync per step: detectron2 syncs each step anyway to log the losses. It raises
    on a non-finite total too, but only after the backward pass and without naming the term.
    """
    if bool(torch.isfinite(torch.stack([v.detach().float() for v in losses.values()])).all()):
        return
    bad = {k: float(v) for k, v in losses.items() if not bool(torch.isfinite(v).all())}
    try:
        where = f" at iteration {get_event_storage().iter}"
    except AssertionError:  # called outside a trainer (no event storage)
        where = ""
    raise FloatingPointError(
        f"Loss term(s) {bad} became non-finite{where}. Lower SOLVER.BASE_LR, clip gradients "
        "(SOLVER.CLIP_GRADIENTS.ENABLED True), or lower the weight of the named term under "
        "MODEL.DISTILL; resume from the last checkpoint with --resume."
    )


@META_ARCH_REGISTRY.register()
class DistillationDetector(nn.Module):
    """
    Wraps a student detector (any meta-architecture) and frozen guides: the teacher, then any
    teaching assistants.

    Training: each kept guide's ``preprocess_image`` + ``backbone`` (and, for logit losses, its
    box or dense head) run under ``torch.no_grad()``; the student runs its own ``forward`` (its
    task losses) while hooks on its backbone and heads record what the losses need. Evaluation:
    exactly the student's ``forward``.

    Guides are deliberately not registered submodules: they stay out of ``parameters()`` (so out
    of the optimizer and DDP), out of ``state_dict()`` (so out of checkpoints) and unaffected by
    ``.train()``; ``.to()`` moves them to the student's device (and nothing else about them).
    The checkpoint holds ``student.*`` and ``losses.*`` (e.g. the Teacher Share Module), and a
    plain detectron2 checkpoint of the student loads into it too.

    Each guide sees the input it was trained on: the student's images with their channels
    flipped when the guide's input format differs (BGR <-> RGB), normalised with the guide's own
    pixel mean and std and padded its own way (its ``preprocess_image``); where the padded sizes
    differ, the losses compare each level only over the part of the input both tensors hold.

    Precision: the guides' forward may run in reduced precision (``MODEL.DISTILL.GUIDE_AUTOCAST``,
    see :func:`guide_dtype`; on CUDA their backbones are then also channels-last); their outputs
    are cast back to fp32, and the losses always run in fp32, also under ``SOLVER.AMP``.
    """

    @configurable
    def __init__(
        self,
        *,
        student: nn.Module,
        guides: Sequence[Union[Guide, nn.Module]],
        losses: Union[nn.ModuleDict, Mapping[str, Mapping[str, Any]], Sequence[str]],
        in_features: Optional[Sequence[str]] = None,
        input_format: Optional[str] = None,
        drop_prob: float = 0.0,
        guide_autocast: str = "auto",
        max_iter: int = 0,
    ):
        """
        Args:
            student: a detectron2 detector with a ``backbone`` returning ``Dict[str, Tensor]``.
            guides: frozen guides (:class:`Guide`, e.g. from :func:`build_guide`; or bare
                detectors, see :func:`~shared_kd.modeling.guide.as_guide`): the teacher first,
                then the teaching assistants.
            losses: the built losses, loss name -> ModuleList with one module per guide (or one
                for the teacher only), see :func:`shared_kd.losses.build_distill_losses`; or
                loss name -> options (a list of names: the defaults), built here with
                :func:`shared_kd.losses.build_distill_losses_from_options`, as a LazyConfig
                names them: ``{"SharedKDLoss": {"alpha": 10.0}}``.
            in_features: the levels passed to the losses, fine to coarse; None or empty: every
                level of the student's backbone.
            input_format: the channel order of the images in the batches ("BGR", "RGB"; the
                data loader's); None: the student's ``input_format`` attribute.
            drop_prob: DGKD's probability of dropping a guide in a step (one is always kept).
            guide_autocast: the guides' forward precision, see :func:`guide_dtype` (the
                guides' device decides what "auto" means).
            max_iter: the training run's length, for losses built here that follow the
                schedule (a LazyConfig passes ``"${train.max_iter}"``).
        """
        super().__init__()
        if not guides:
            raise ValueError("DistillationDetector needs at least one guide (the teacher)")
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(
                f"MODEL.DISTILL.ASSISTANTS.DROP_PROB must be in [0, 1), got {drop_prob}"
            )
        input_format = input_format or getattr(student, "input_format", None)
        if not input_format:
            raise ValueError(
                f"The student ({type(student).__name__}) has no input_format: give the "
                "distiller input_format, the channel order of the training images ('BGR'/'RGB')."
            )
        guides = [as_guide(g, input_format) for g in guides]
        self.student = student
        self._guides = tuple(g.model for g in guides)  # a tuple hides them from nn.Module
        self.input_format = input_format
        self.guide_input_formats = tuple(g.input_format for g in guides)
        # Per guide: whether the student's images reach it with their channels reversed.
        self._flip = tuple(
            check_input_formats(input_format, g.input_format, _guide_name(i))
            for i, g in enumerate(guides)
        )
        self.in_features = distilled_levels(in_features, student, self._guides)
        student_shapes = student.backbone.output_shape()
        guide_shapes = [g.backbone.output_shape() for g in self._guides]
        if not isinstance(losses, nn.ModuleDict):
            losses = build_distill_losses_from_options(
                losses,
                {f: student_shapes[f] for f in self.in_features},
                [{f: shapes[f] for f in self.in_features} for shapes in guide_shapes],
                self._guides,
                max_iter,
            )
        self.losses = losses
        self.drop_prob = drop_prob
        self.guide_autocast = guide_autocast
        # Strides of every level, to crop maps to the part of the input both models saw.
        self._student_strides = {f: shape.stride for f, shape in student_shapes.items()}
        self._guide_strides = [{f: s.stride for f, s in shapes.items()} for shapes in guide_shapes]
        self._set_guide_precision()
        needs_logits = any(m[0].NEEDS_LOGITS for m in losses.values())
        self.logit_tap = build_logit_tap(student) if needs_logits else None
        if self.logit_tap is not None:
            for i, guide in enumerate(self._guides):
                self.logit_tap.check_guide(guide, _guide_name(i))
        self._student_features = None
        student.backbone.register_forward_hook(self._capture_student_features)
        self._register_load_state_dict_pre_hook(self._accept_plain_student_checkpoint)

    def _set_guide_precision(self):
        # None: fp32. Public so that a benchmark can time the guides in fp32 for reference.
        self.guide_dtype = guide_dtype(self.guide_autocast, self._guides[0].device)
        if self.guide_dtype is not None and self._guides[0].device.type == "cuda":
            for guide in self._guides:  # frozen: converting them in place changes no value
                guide.backbone.to(memory_format=torch.channels_last)

    def _apply(self, fn, *args, **kwargs):
        # .to() / .cuda() / .cpu(): the guides, hidden from nn.Module, follow the student's
        # device (a LazyConfig builds the model on the CPU, then moves it to train.device).
        # Only the device: `fn` itself is not applied to them, so .half() / .double() leave the
        # guides in fp32, and their compute precision stays the autocast's (_set_guide_precision).
        super()._apply(fn, *args, **kwargs)
        device = self.student.device
        if any(g.device != device for g in self._guides):
            for guide in self._guides:
                guide.to(device)
            self._set_guide_precision()
        return self

    @classmethod
    def from_config(cls, cfg, guides: Optional[Sequence[Union[Guide, nn.Module]]] = None):
        """
        Args:
            guides: frozen guides to use instead of building the teacher and the teaching
                assistants from ``MODEL.DISTILL.TEACHER`` / ``.ASSISTANTS`` (the teacher first,
                then one per TA config file), e.g. randomly initialised ones to time a step
                without trained weights (``tools/benchmark.py --random-teacher``). Training
                leaves it None.
        """
        d = cfg.MODEL.DISTILL
        if d.STUDENT_META_ARCHITECTURE == DISTILL_META_ARCH:
            raise ValueError("MODEL.DISTILL.STUDENT_META_ARCHITECTURE cannot be itself")
        student = build_model(plain_detector_config(cfg))
        ta = d.ASSISTANTS
        if len(ta.CONFIG_FILES) != len(ta.WEIGHTS):
            raise ValueError(
                f"MODEL.DISTILL.ASSISTANTS.CONFIG_FILES ({len(ta.CONFIG_FILES)}) and .WEIGHTS "
                f"({len(ta.WEIGHTS)}) must be parallel lists, one entry per teaching assistant"
            )
        if guides is not None:
            guides = list(guides)
            if len(guides) != 1 + len(ta.CONFIG_FILES):
                raise ValueError(
                    f"{len(guides)} guides given for a config with a teacher and "
                    f"{len(ta.CONFIG_FILES)} teaching assistants"
                )
        else:
            device = cfg.MODEL.DEVICE
            guides = [build_guide(d.TEACHER.CONFIG_FILE, d.TEACHER.WEIGHTS, d.TEACHER.OPTS, device)]
            for config_file, weights in zip(ta.CONFIG_FILES, ta.WEIGHTS):
                guides.append(build_guide(config_file, weights, (), device, role="assistant"))
        models = [g.model if isinstance(g, Guide) else g for g in guides]
        in_features = distilled_levels(d.IN_FEATURES, student, models)
        student_shapes = student.backbone.output_shape()
        losses = build_distill_losses(
            cfg,
            {f: student_shapes[f] for f in in_features},
            [{f: m.backbone.output_shape()[f] for f in in_features} for m in models],
            models,
        )
        return {
            "student": student,
            "guides": guides,
            "in_features": in_features,
            "losses": losses,
            "input_format": cfg.INPUT.FORMAT,
            "drop_prob": ta.DROP_PROB,
            "guide_autocast": d.GUIDE_AUTOCAST,
            "max_iter": cfg.SOLVER.MAX_ITER,
        }

    def set_log_period(self, period: int) -> None:
        """Tell every loss how often the trainer writes scalars (its PeriodicWriter's period)."""
        for module in self.losses.modules():
            if isinstance(module, DistillLoss):
                module.log_period = period

    @property
    def teacher(self) -> nn.Module:
        return self._guides[0]

    @property
    def guides(self):
        return self._guides

    @property
    def device(self):
        return self.student.device

    def _capture_student_features(self, module, inputs, output):
        if module.training:
            # the maps, and the (H, W) of the padded image tensor they were computed from
            self._student_features = (output, tuple(inputs[0].shape[-2:]))

    def _accept_plain_student_checkpoint(self, state_dict, prefix, *args):
        # A detectron2 checkpoint of the student alone (e.g. to initialise it) has no
        # "student." prefix: give it one. fvcore compared shapes before this renaming, so
        # mismatches (e.g. another NUM_CLASSES) are skipped here, with the same warning.
        ours = (prefix + STUDENT_PREFIX, prefix + "losses.")
        if not state_dict or any(k.startswith(ours) for k in state_dict):
            return
        own = self.student.state_dict()
        for k in [k for k in state_dict if k.startswith(prefix)]:
            value = state_dict.pop(k)
            target = own.get(k[len(prefix) :])
            if target is not None and tuple(target.shape) != tuple(value.shape):
                logger.warning(
                    f"Skip loading parameter '{k}' into the student: shape {tuple(value.shape)} "
                    f"in the checkpoint, {tuple(target.shape)} in the model."
                )
                continue
            state_dict[prefix + STUDENT_PREFIX + k[len(prefix) :]] = value

    @torch.no_grad()
    def guide_outputs(
        self,
        guide: Union[int, nn.Module],
        batched_inputs,
        model: Optional[nn.Module] = None,
    ) -> DetectorOutputs:
        """
        A guide's backbone features (and logits on the student's locations, if needed), fp32,
        on the batch in the guide's input format (channels flipped if it differs from the
        student's), normalised and padded by the guide's own ``preprocess_image``.

        With a reduced :attr:`guide_dtype`, the backbone runs under autocast and
        ``inference_mode`` (channels-last on CUDA); its features are then copied back to fp32
        (normal tensors, which the losses' autograd may save), and the logit heads run on them
        in fp32 (the R-CNN box pooler would otherwise round the boxes to the reduced precision).

        Args:
            guide: the guide's index (0: the teacher) or the guide model itself.
            model: a detector to run in that guide's place (e.g. a benchmark's fp32 copy of it).
        """
        index = guide if isinstance(guide, int) else self._guides.index(guide)
        guide = self._guides[index] if model is None else model
        check_fits_square(guide, batched_inputs, _guide_name(index))
        inputs = in_input_format(batched_inputs, self._flip[index])
        if self.guide_dtype is None:
            x = guide.preprocess_image(inputs).tensor
            features = guide.backbone(x)
        else:
            device_type = guide.device.type
            with torch.inference_mode(), torch.autocast(device_type, dtype=self.guide_dtype):
                x = guide.preprocess_image(inputs).tensor
                if device_type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                reduced = guide.backbone(x)
            features = {
                f: v.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
                for f, v in reduced.items()
            }
        out = DetectorOutputs(
            {f: features[f] for f in self.in_features}, input_size=tuple(x.shape[-2:])
        )
        if self.logit_tap is not None:
            out.class_logits = self.logit_tap.guide_logits(guide, features)
            out.logit_activation = self.logit_tap.activation
        return out

    def _on_common_extent(
        self, student: DetectorOutputs, guide: Optional[DetectorOutputs], index: int
    ) -> Tuple[DetectorOutputs, Optional[DetectorOutputs]]:
        """
        The student's and a guide's outputs cut to the top-left part of the input that both
        padded tensors hold (every image lies in it): where the guide pads its own way (e.g. a
        ViTDet teacher's 1024 square around a 640-pixel batch) the losses compare maps of the
        same pixels. Outputs of equally padded inputs, and the side that padded less, come back
        as they are (the usual case: the student's whole maps, with its step's memo).
        """
        if guide is None or None in (student.input_size, guide.input_size):
            return student, guide
        if student.input_size == guide.input_size:
            return student, guide
        extent = tuple(min(a, b) for a, b in zip(student.input_size, guide.input_size))

        def crop(out, strides):
            maps = {f: crop_to_extent(x, strides[f], extent) for f, x in out.features.items()}
            if all(maps[f] is x for f, x in out.features.items()):
                return out  # this side padded no more than the other: whole maps, same memo
            # other maps, so a memo of its own: a student-only term (the cross-layer one) is
            # not computed on one guide's crop and reused for another guide
            return dataclasses.replace(out, features=maps, input_size=extent, cache={})

        return crop(student, self._student_strides), crop(guide, self._guide_strides[index])

    def student_outputs(self, batched_inputs) -> DetectorOutputs:
        """
        The student's outputs that its training forward on ``batched_inputs`` recorded (its
        backbone features of :attr:`in_features`, and its logits if a loss reads logits), with
        the inputs' ground-truth boxes; call it once after each ``self.student(batched_inputs)``
        in training mode: it takes what was recorded (a second call raises).
        """
        captured, self._student_features = self._student_features, None
        if captured is None:
            raise RuntimeError(
                "The student's forward did not call its backbone in training mode; "
                "DistillationDetector needs a detector whose forward runs self.backbone."
            )
        features, input_size = captured
        out = DetectorOutputs({f: features[f] for f in self.in_features}, input_size=input_size)
        if all("instances" in x for x in batched_inputs):
            # On the host as the loader gave them: a loss that weights positions by box moves
            # them to the device, the others never touch them.
            out.gt_boxes = [x["instances"].gt_boxes.tensor for x in batched_inputs]
        if self.logit_tap is not None:
            out.class_logits = self.logit_tap.pop_student_logits()
            out.logit_activation = self.logit_tap.activation
            out.logit_normalizer = self.logit_tap.student_normalizer(self.student)
        return out

    def forward(self, batched_inputs):
        """
        Args:
            batched_inputs: a list of dicts in detectron2's model input format.

        Returns:
            Training: dict of scalar losses, the student's own and the distillation terms.
            Evaluation: the student's outputs, unchanged.
        """
        if not self.training:
            return self.student(batched_inputs)
        try:
            losses = self.student(batched_inputs)
            student = self.student_outputs(batched_inputs)
            kept = (
                sample_kept_guides(len(self._guides), self.drop_prob)
                if self.drop_prob > 0
                else list(range(len(self._guides)))
            )
            distill = self.distillation_losses(student, batched_inputs, kept)
        finally:  # never keep a step's tensors (and their graphs) alive past it
            self._student_features = None
            if self.logit_tap is not None:
                self.logit_tap.clear()
        clash = set(distill) & set(losses)
        if clash:
            raise RuntimeError(f"Loss names {sorted(clash)} produced twice")
        losses.update(distill)
        _check_finite(losses)
        return losses

    def _losses_by_guide(self, kept: Sequence[int]) -> Dict[int, List[nn.Module]]:
        """
        Guide index -> the loss modules that use it this step, ascending: the per-guide modules
        of the kept guides, and the teacher-only modules (with the teacher) always.
        """
        per_guide = [m for m in self.losses.values() if m[0].PER_GUIDE]
        teacher_only = [m[0] for m in self.losses.values() if not m[0].PER_GUIDE]
        by_guide = {}
        for i in sorted(set(kept) | ({0} if teacher_only else set())):
            modules = [m[i] for m in per_guide] if i in kept else []
            by_guide[i] = modules + (teacher_only if i == 0 else [])
        return by_guide

    def guides_read(self, kept: Optional[Sequence[int]] = None) -> List[int]:
        """
        The indices of the guides whose outputs the losses read in a step with the guides
        ``kept`` (default: every guide), ascending: :meth:`distillation_losses` runs
        :meth:`guide_outputs` for exactly these (e.g. none for Shared-KD's cross-layer term).
        """
        kept = range(len(self._guides)) if kept is None else kept
        return [
            i
            for i, modules in self._losses_by_guide(kept).items()
            if any(m.needs_guide for m in modules)
        ]

    @_in_full_precision
    def distillation_losses(
        self,
        student: DetectorOutputs,
        batched_inputs,
        kept: Optional[Sequence[int]] = None,
        guide_outputs: Optional[Dict[int, DetectorOutputs]] = None,
    ) -> Dict[str, torch.Tensor]:
        """
        Every distillation term, averaged over the guides that provide it
        (:func:`average_over_guides`): per-guide losses over the kept guides, teacher-only
        losses (one module) always, from the teacher. Runs in fp32 (autocast off, the student's
        tensors cast to fp32). With more than one guide it logs ``distill/guides_kept`` (and
        losses may log their own scalars): call it inside an ``EventStorage``.

        Args:
            student: the student's outputs of this step (:meth:`student_outputs`).
            batched_inputs: the step's inputs, for the guides that run.
            kept: the indices of the guides kept this step (DGKD's stochastic guidance, see
                :func:`sample_kept_guides`); None: every guide.
            guide_outputs: guide index -> that guide's outputs on ``batched_inputs`` computed
                beforehand (:meth:`guide_outputs`), used instead of running the guide, e.g. to
                time the losses alone; the guides read (:meth:`guides_read`) but not in it
                still run. Each is used with a fresh ``cache``, so the same outputs may serve
                several calls.

        Returns:
            dict: loss term name -> scalar. A dropped guide's learned modules (e.g. its TSM)
            enter the first term with weight zero, so that they stay in the graph (DDP).
        """
        kept = list(range(len(self._guides))) if kept is None else list(kept)
        precomputed = dict(guide_outputs or {})
        unknown = [i for i in precomputed if not 0 <= i < len(self._guides)]
        if unknown:
            raise ValueError(
                f"guide_outputs has guide indices {unknown}; there are {len(self._guides)} guides"
            )
        per_term: Dict[str, List[torch.Tensor]] = {}
        for i, modules in self._losses_by_guide(kept).items():
            # Run a guide only when some loss reads it (Shared-KD's cross-layer term does not).
            if not any(m.needs_guide for m in modules):
                guide = None
            elif i in precomputed:  # a fresh per-step memo, as a guide's run would give
                guide = dataclasses.replace(precomputed[i], cache={})
            else:
                guide = self.guide_outputs(self._guides[i], batched_inputs)
            seen_by_both, guide = self._on_common_extent(student, guide, i)
            for module in modules:
                for term, value in module(seen_by_both, guide).items():
                    per_term.setdefault(term, []).append(value)
        terms = average_over_guides(per_term)
        dropped = [i for i in range(len(self._guides)) if i not in kept]
        unused = [
            p
            for m in self.losses.values()
            if m[0].PER_GUIDE
            for i in dropped
            for p in m[i].parameters()
            if p.requires_grad
        ]
        if unused and terms:
            # A dropped guide's learned modules (e.g. its TSM) get no gradient this step; a
            # zero-weighted use keeps them in the graph, as DDP requires.
            first = next(iter(terms))
            terms[first] = terms[first] + sum(p.sum() for p in unused) * 0.0
        if len(self._guides) > 1:
            storage = get_event_storage()
            storage.put_scalar("distill/guides_kept", float(len(kept)), smoothing_hint=False)
        return terms

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, guides={len(self._guides)}"
