# PKD (the peer baseline) with LazyConfig teacher and student, the twin of
# pkd_faster_rcnn_R34_to_R18_FPN_tiny.yaml: sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.py with
# PKDLoss in place of SharedKDLoss. Train the teacher first; paths are relative to the
# repository root:
#   python train_net.py --config-file configs/shapes/faster_rcnn_R34_FPN_tiny_teacher.py
#   python train_net.py --config-file configs/shapes/pkd_faster_rcnn_R34_to_R18_FPN_tiny.py
# Options as model.losses.PKDLoss.weight=3 on the command line (MODEL.DISTILL.PKD's keys).
from .sharedkd_faster_rcnn_R34_to_R18_FPN_tiny import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

model.losses = {"PKDLoss": {}}  # its defaults, as MODEL.DISTILL.PKD's
train.output_dir = "./output/shapes/lazy/pkd_faster_rcnn_R34_to_R18_FPN_tiny"
