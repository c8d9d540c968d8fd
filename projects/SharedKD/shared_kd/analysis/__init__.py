"""
Analysis tools, one submodule each (import what you use from it):

- ``shared_kd.analysis.common``: ``load_detector``, ``read_detector_config``;
- ``shared_kd.analysis.feature_gaps``: gaps between FPN levels (the Shared-KD premise);
- ``shared_kd.analysis.qualitative``: a grid of detections (matplotlib);
- ``shared_kd.analysis.soft_targets``: what an R-CNN teacher's soft targets carry per temperature;
- ``shared_kd.analysis.study``: seeded studies' summaries and curves.

Command-line front ends: ``tools/feature_gaps.py``, ``tools/qualitative.py``,
``tools/soft_targets.py``, ``tools/study.py``.
The package re-exports nothing: ``train_net.py`` reaches ``common`` through the benchmark, and a
re-export of ``qualitative`` would make every training process import matplotlib and
detectron2's visualizer (0.6 to 0.9 s of CPU at each process's start, measured).
"""
