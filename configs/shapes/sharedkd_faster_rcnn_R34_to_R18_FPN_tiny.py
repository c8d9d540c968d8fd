# Shared-KD with LazyConfig teacher and student, the twin of
# sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.yaml: the tiny R18 Faster R-CNN
# (faster_rcnn_R18_FPN_tiny.py) distilled from the tiny R34 teacher
# (faster_rcnn_R34_FPN_tiny_teacher.py). Train the teacher first; paths are relative to the
# repository root:
#   python train_net.py --config-file configs/shapes/faster_rcnn_R34_FPN_tiny_teacher.py
#   python train_net.py --config-file configs/shapes/sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.py
# Loss options are the lower-case keys of MODEL.DISTILL.<NODE> (docs/CONFIG.md), e.g.
# model.losses.SharedKDLoss.alpha=10 on the command line.
from detectron2.config import LazyCall as L

from shared_kd.modeling import DistillationDetector, build_guide

from .faster_rcnn_R18_FPN_tiny import dataloader, lr_multiplier, optimizer, train
from .faster_rcnn_R18_FPN_tiny import model as student

model = L(DistillationDetector)(
    student=student,
    guides=[
        L(build_guide)(
            config_file="configs/shapes/faster_rcnn_R34_FPN_tiny_teacher.py",
            weights="./output/shapes/lazy/faster_rcnn_R34_FPN_tiny_teacher/model_final.pth",
        )
    ],
    losses={"SharedKDLoss": {}},  # its defaults, as MODEL.DISTILL.SHARED_KD's
    in_features=["p2", "p3", "p4", "p5", "p6"],
    max_iter="${train.max_iter}",
)
train.output_dir = "./output/shapes/lazy/sharedkd_faster_rcnn_R34_to_R18_FPN_tiny"
