"""SharedKD: knowledge distillation for detectron2 detectors."""

from . import losses, modeling  # noqa: F401  (register losses and meta-architectures)
from .config import add_sharedkd_config
from .data import register_all_shapes

__version__ = "0.1.0"

register_all_shapes()

__all__ = ["add_sharedkd_config", "register_all_shapes"]
