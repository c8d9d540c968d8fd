"""
DetectionCheckpointers that save atomically and load with ``torch.load(weights_only=True)``;
:class:`StrictCheckpointer` also loads a frozen guide's weights strictly.

Saving: each checkpoint is written to a temporary file and renamed, and then ``last_checkpoint``
is rewritten the same way, so a run killed at any moment of a save leaves the previous
checkpoint intact and ``last_checkpoint`` naming a complete file.

Loading: SharedKD's and detectron2's ``.pth`` checkpoints hold tensors and plain containers
only, so they are unpickled with ``weights_only=True``, which cannot run code from the file.
"""

import os

import torch
from detectron2.checkpoint import DetectionCheckpointer

from .names import STUDENT_PREFIX
from .utils.io import atomic_write, is_local_path

__all__ = [
    "CheckpointReadError",
    "SafeCheckpointer",
    "StrictCheckpointer",
    "TeacherLoadError",
    "load_checkpoint_file",
    "student_state_dict",
]


def student_state_dict(state_dict):
    """
    The student's weights in a DistillationDetector state dict: its ``student.*`` entries
    without the prefix (the guides are not in it; ``losses.*`` are dropped).

    Raises:
        ValueError: when there are none (not a SharedKD distillation checkpoint).
    """
    student = {
        k[len(STUDENT_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(STUDENT_PREFIX)
    }
    if not student:
        raise ValueError(
            "No 'student.*' weights found: this is not a SharedKD distillation checkpoint "
            "(a plain detectron2 checkpoint needs no export)."
        )
    return student


class CheckpointReadError(RuntimeError):
    """A checkpoint file exists but cannot be read as a PyTorch checkpoint."""


def load_checkpoint_file(path: str) -> dict:
    """
    ``torch.load(path, weights_only=True)`` onto the CPU, with a clear error for a file that is
    damaged, truncated, not a checkpoint, or holds more than tensors and plain containers.
    """
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        # torch's weights_only refusal starts with advice to load unsafely; its cause is on
        # the "WeightsUnpickler error" line (or the one after it).
        at = next((i for i, line in enumerate(lines) if "WeightsUnpickler error" in line), None)
        if at is not None:
            cause = lines[at].split("WeightsUnpickler error:")[-1].strip()
            cause = cause or (lines[at + 1] if at + 1 < len(lines) else "")
            detail = f"not a plain checkpoint of tensors ({cause[:200]})"
        else:
            detail = lines[0] if lines else type(e).__name__
        raise CheckpointReadError(
            f"Cannot read checkpoint {path!r}: {detail}. The file is damaged, truncated, not a "
            "PyTorch checkpoint, or holds Python objects, which SharedKD does not unpickle "
            "(weights_only=True); point the config at a complete checkpoint of tensors (e.g. a "
            "model_final.pth written by train_net.py)."
        ) from e
    if not isinstance(loaded, dict):
        raise CheckpointReadError(
            f"Checkpoint {path!r} holds a {type(loaded).__name__}, not a dict of tensors."
        )
    return loaded


class SafeCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with atomic saves and ``weights_only`` loads (see module doc)."""

    def save(self, name: str, **kwargs) -> None:
        if not is_local_path(self.save_dir):  # an iopath URI: no rename there
            return super().save(name, **kwargs)
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_write(save_file, lambda tmp: torch.save(data, tmp))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if not is_local_path(self.save_dir):
            return super().tag_last_checkpoint(last_filename_basename)

        def write(tmp):
            with open(tmp, "w") as f:
                f.write(last_filename_basename)

        atomic_write(os.path.join(self.save_dir, "last_checkpoint"), write)

    def _load_file(self, filename: str):
        if filename.endswith((".pkl", ".pyth")):
            # Detectron1/Caffe2 model-zoo .pkl files are pickles of numpy arrays and pycls .pyth
            # files hold pickled objects: neither loads with weights_only, so detectron2 reads
            # them with pickle. Only use such files from a source you trust.
            return super()._load_file(filename)
        loaded = load_checkpoint_file(filename)
        if "model" not in loaded:  # a bare state dict, as DetectionCheckpointer accepts it
            loaded = {"model": loaded}
        return loaded


class TeacherLoadError(RuntimeError):
    """A guide's weights cannot be read or do not match its architecture."""


class StrictCheckpointer(SafeCheckpointer):
    """
    A DetectionCheckpointer for frozen guides: every parameter must be loaded, nothing may be
    left over, and every shape must match. A SharedKD distillation checkpoint (keys under
    ``student.``) loads as its student.
    """

    def __init__(self, model, config_file="", key="MODEL.DISTILL.TEACHER.WEIGHTS", **kwargs):
        """
        Args:
            model: the guide detector.
            config_file: the config it was built from, named in errors.
            key: the config node that names the weights, named in errors.
            kwargs: as for ``DetectionCheckpointer``.
        """
        super().__init__(model, **kwargs)
        self.config_file = config_file
        self.key = key
        self._path = None

    def load(self, path, *args, **kwargs):
        if "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(
                f"Weights {path!r} not found. Set {self.key} to the checkpoint of the trained "
                "model (e.g. output/.../model_final.pth)."
            )
        self._path = path
        try:
            return super().load(path, *args, **kwargs)
        except CheckpointReadError as e:
            raise TeacherLoadError(f"{self.key}: {e}") from e

    def _load_model(self, checkpoint):
        state = checkpoint["model"]
        if any(k.startswith(STUDENT_PREFIX) for k in state):
            checkpoint["model"] = student_state_dict(state)
        incompatible = super()._load_model(checkpoint)
        problems = []
        if incompatible.missing_keys:
            problems.append(f"missing keys: {_abbrev(incompatible.missing_keys)}")
        if incompatible.unexpected_keys:
            problems.append(f"unexpected keys: {_abbrev(incompatible.unexpected_keys)}")
        if incompatible.incorrect_shapes:
            shapes = [
                f"{k} {tuple(a)} vs model {tuple(b)}" for k, a, b in incompatible.incorrect_shapes
            ]
            problems.append(f"shape mismatches: {_abbrev(shapes)}")
        if problems:
            raise TeacherLoadError(
                f"The weights {self._path!r} do not fit the architecture of "
                f"{self.config_file!r}: " + "; ".join(problems) + f". Check that {self.key} was "
                "trained with the config file given beside it (and its OPTS)."
            )
        return incompatible


def _abbrev(keys, n=5):
    keys = list(keys)
    return ", ".join(keys[:n]) + (f" (and {len(keys) - n} more)" if len(keys) > n else "")
