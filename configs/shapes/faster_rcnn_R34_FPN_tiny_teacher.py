# Tiny Faster R-CNN teacher, ResNet-34 FPN-128, 600 iterations: the LazyConfig twin of
# faster_rcnn_R34_FPN_tiny_teacher.yaml. Train it first:
#   python train_net.py --config-file configs/shapes/faster_rcnn_R34_FPN_tiny_teacher.py
from .base_rcnn_fpn_tiny import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 34
model.backbone.out_channels = 128
train.max_iter = 600
lr_multiplier.warmup_length = 50 / 600
train.output_dir = "./output/shapes/lazy/faster_rcnn_R34_FPN_tiny_teacher"
