# Tiny Faster R-CNN, ResNet-18 FPN-64, on the shapes dataset: the LazyConfig twin of
# faster_rcnn_R18_FPN_tiny.yaml (the student of the tiny .py configs).
#   python train_net.py --config-file configs/shapes/faster_rcnn_R18_FPN_tiny.py
from .base_rcnn_fpn_tiny import dataloader, lr_multiplier, model, optimizer, train

train.output_dir = "./output/shapes/lazy/faster_rcnn_R18_FPN_tiny"
