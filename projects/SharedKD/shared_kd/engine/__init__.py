"""Training-loop pieces: hooks for distillation runs."""

from .hooks import ExportStudentHook

__all__ = ["ExportStudentHook"]
