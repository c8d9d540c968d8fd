"""Training-loop pieces: the Trainer, its hooks, multi-process launch, output-folder checks."""

from .hooks import ExportStudentHook, ReseedHook
from .launch import create_ddp_model, launch
from .lazy_training import build_lazy_trainer, lazy_main, setup_lazy
from .output_dir import OutputDirInUseError, check_output_dir, write_portable_config
from .trainer import Trainer

__all__ = [
    "ExportStudentHook",
    "OutputDirInUseError",
    "ReseedHook",
    "Trainer",
    "build_lazy_trainer",
    "check_output_dir",
    "create_ddp_model",
    "launch",
    "lazy_main",
    "setup_lazy",
    "write_portable_config",
]
