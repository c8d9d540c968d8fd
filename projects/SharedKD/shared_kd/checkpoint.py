"""
A DetectionCheckpointer that saves atomically and loads with ``torch.load(weights_only=True)``.

Saving: each checkpoint is written to a temporary file and renamed, and then ``last_checkpoint``
is rewritten the same way, so a run killed at any moment of a save leaves the previous
checkpoint intact and ``last_checkpoint`` naming a complete file.

Loading: SharedKD's and detectron2's ``.pth`` checkpoints hold tensors and plain containers
only, so they are unpickled with ``weights_only=True``, which cannot run code from the file.
"""

import os

import torch
from detectron2.checkpoint import DetectionCheckpointer

from .utils.io import atomic_write, is_local_path

__all__ = ["CheckpointReadError", "SafeCheckpointer", "load_checkpoint_file"]


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
