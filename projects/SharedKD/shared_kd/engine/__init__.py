"""Training-loop pieces: the Trainer, its hooks, multi-process launch, output-folder checks."""

from .hooks import ExportStudentHook, ReseedHook
from .launch import create_ddp_model, launch
from .output_dir import OutputDirInUseError, check_output_dir, write_portable_config
from .trainer import Trainer

__all__ = [
    "ExportStudentHook",
    "OutputDirInUseError",
    "ReseedHook",
    "Trainer",
    "check_output_dir",
    "create_ddp_model",
    "launch",
    "write_portable_config",
]
