"""
Analysis tools: feature gaps between FPN levels (the Shared-KD premise). Command-line front end:
``tools/feature_gaps.py``.
"""

from .common import atomic_write, load_detector, load_detector_config
from .feature_gaps import (
    FeatureGaps,
    aligned_mse,
    compute_feature_gaps,
    feature_gaps_from_files,
    gap_matrix,
    write_feature_gaps,
)

__all__ = [
    "FeatureGaps",
    "aligned_mse",
    "atomic_write",
    "compute_feature_gaps",
    "feature_gaps_from_files",
    "gap_matrix",
    "load_detector",
    "load_detector_config",
    "write_feature_gaps",
]
