"""
Analysis tools: feature gaps between FPN levels (the Shared-KD premise) and a qualitative grid
of detections. Command-line front ends: ``tools/feature_gaps.py`` and ``tools/qualitative.py``.
"""

from .common import load_detector, read_detector_config
from .feature_gaps import (
    FeatureGaps,
    aligned_mse,
    compute_feature_gaps,
    feature_gaps_from_files,
    gap_matrix,
    write_feature_gaps,
)
from .qualitative import draw_grid, predict, qualitative_grid, select_images

__all__ = [
    "FeatureGaps",
    "aligned_mse",
    "compute_feature_gaps",
    "draw_grid",
    "feature_gaps_from_files",
    "gap_matrix",
    "load_detector",
    "read_detector_config",
    "predict",
    "qualitative_grid",
    "select_images",
    "write_feature_gaps",
]
