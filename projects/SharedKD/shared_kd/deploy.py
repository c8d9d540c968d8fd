"""
Detectors that run without Python detectron2: TorchScript and ONNX files traced with
``detectron2.export.TracingAdapter``, as detectron2's ``tools/deploy/export_model.py`` traces
them (R-CNN through ``inference(..., do_postprocess=False)``, dense detectors through their eval
forward).

The exported program takes one image, a ``3 x H x W`` uint8 tensor in the model's input format
(``INPUT.FORMAT``, e.g. BGR) at the size the model expects (its test-time resize is the
caller's), and returns flat tensors, in the order ``<file>.json`` lists: ``pred_boxes``
(``N x 4``, x0 y0 x1 y1 in that image's pixels), ``pred_classes`` (``N``), ``scores`` (``N``),
for Mask R-CNN also ``pred_masks`` (``N x 1 x 28 x 28`` RoI masks), and ``image_size``. Loading
a TorchScript file needs ``torch`` and ``import torchvision`` (its ``nms`` and ``roi_align``
ops); an ONNX file runs under ``onnxruntime``.

What works, measured by ``tests/test_deploy.py`` on the fallback v0.6 and torch 2.14: TorchScript
and ONNX (opset 17, PyTorch's TorchScript-based exporter) for Faster R-CNN, Mask R-CNN,
RetinaNet and FCOS. ``torch.export`` (a ``.pt2`` program), and ONNX's dynamo exporter built on it,
are not offered: the detectors' NMS and box filtering give outputs of data-dependent size, which
it does not trace (tried on Faster R-CNN: ``GuardOnDataDependentSymNode``; :data:`UNSUPPORTED`).
"""

import json
import os
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from detectron2.export import TracingAdapter

from .modeling.families import family_of
from .utils.io import atomic_write

__all__ = [
    "FORMATS",
    "UNSUPPORTED",
    "eager_outputs",
    "export_detector",
    "output_names",
    "trace_detector",
]

# format -> file suffix
FORMATS = {"torchscript": ".ts", "onnx": ".onnx"}
# Formats asked for that do not work, and why (checked: a clear error instead of a broken file).
UNSUPPORTED = {
    "torch.export": "torch.export cannot trace the data-dependent output sizes of NMS and box "
    "filtering in detectron2's detectors; use torchscript or onnx",
}
ONNX_OPSET = 17  # torchvision's roi_align (aligned) needs >= 16


def trace_detector(model: nn.Module, image: torch.Tensor):
    """
    ``(traced TorchScript module, TracingAdapter)`` of ``model`` in eval mode, traced on
    ``image`` (``3 x H x W`` uint8, the model's input format).
    """
    if image.dtype != torch.uint8 or image.dim() != 3:
        raise ValueError(
            f"Trace on a 3 x H x W uint8 image, got {image.dtype} {tuple(image.shape)}"
        )
    adapter = _adapter(model, image)
    with torch.no_grad():
        traced = torch.jit.trace(adapter, adapter.flattened_inputs)
    return traced, adapter


def _adapter(model: nn.Module, image: torch.Tensor) -> TracingAdapter:
    model = getattr(model, "student", model).eval()  # a distillation model exports its student
    inference = family_of(model, "Export").export_inference
    return TracingAdapter(model, [{"image": image}], inference)


def output_names(adapter: TracingAdapter) -> List[str]:
    """The names of the traced program's outputs, in order (``pred_boxes``, ..., ``image_size``)."""
    instances = adapter.outputs_schema.schemas[0].schemas[0]  # list -> dict -> Instances
    return list(instances.keys) + ["image_size"]


def export_detector(
    model: nn.Module,
    image: torch.Tensor,
    path: str,
    fmt: str = "torchscript",
    input_format: Optional[str] = None,
) -> Dict[str, object]:
    """
    Write ``model`` as ``fmt`` to ``path``, and ``path + ".json"``: the outputs' names, the
    input's format and the image size it was traced at.

    Args:
        model: a detectron2 detector (or a distillation model: its student).
        image: a ``3 x H x W`` uint8 image in the model's input format (e.g. a test image
            resized by the config's test mapper).
        path: the file to write (``.ts`` / ``.onnx``).
        fmt: "torchscript" or "onnx".
        input_format: recorded in the json (default: the model's ``input_format``).

    Returns:
        dict: what the json holds.
    """
    if fmt in UNSUPPORTED:
        raise ValueError(f"--format {fmt}: {UNSUPPORTED[fmt]}")
    if fmt not in FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}; choose from {sorted(FORMATS)}")
    traced, adapter = trace_detector(model, image)
    names = output_names(adapter)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if fmt == "torchscript":
        atomic_write(path, lambda p: traced.save(p))
    else:

        def write_onnx(p):
            with torch.no_grad():
                torch.onnx.export(
                    adapter,
                    (image,),
                    p,
                    opset_version=ONNX_OPSET,
                    input_names=["image"],
                    output_names=names,
                    dynamic_axes={"image": {1: "height", 2: "width"}},
                    dynamo=False,  # the TorchScript-based exporter: it handles the NMS
                )

        atomic_write(path, write_onnx)
    student = getattr(model, "student", model)
    info = {
        "format": fmt,
        "outputs": names,
        "input": "image: 3 x H x W uint8",
        "input_format": input_format or getattr(student, "input_format", None),
        "traced_image_size": list(image.shape[-2:]),
        "meta_architecture": type(student).__name__,
    }
    atomic_write(path + ".json", lambda p: _write_json(p, info))
    return info


def _write_json(path: str, payload) -> None:
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)


def eager_outputs(model: nn.Module, image: torch.Tensor) -> Sequence[torch.Tensor]:
    """The model's own outputs on ``image``, flattened as the exported program returns them."""
    with torch.no_grad():
        return _adapter(model, image)(image)
