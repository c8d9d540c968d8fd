"""
Leaf helpers every loss and the distiller share: feature alignment (``alignment``), the
detector-output record (``outputs``), level names from shapes (``levels``) and inherit/explore's
encoders (``encoders``). They import torch, detectron2 and the package's other leaf modules
(``checkpoint``, ``names``, ``utils.io``) only, never ``losses``, ``modeling`` or ``config``:
the layers above import them, so no import can go round in a circle (``tests/test_imports.py``).
"""

from .alignment import align_pair, crop_channels, crop_to_extent, pool_to
from .levels import resolve_in_features
from .outputs import DetectorOutputs

__all__ = [
    "DetectorOutputs",
    "align_pair",
    "crop_channels",
    "crop_to_extent",
    "pool_to",
    "resolve_in_features",
]
