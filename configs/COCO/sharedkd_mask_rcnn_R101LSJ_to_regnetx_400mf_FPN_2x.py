# Shared-KD, LazyConfig teacher and student: Mask R-CNN RegNetX-400MF FPN
# (mask_rcnn_regnetx_400mf_FPN_2x.py; its backbone has a tenth of ResNet-50's ImageNet FLOPs,
# 0.4 against 4.1 GFLOPs) distilled from detectron2's LSJ R101 Mask R-CNN (400 epochs, 48.9 box
# AP), on P2-P6.
#   python train_net.py --num-gpus 8 \
#       --config-file configs/COCO/sharedkd_mask_rcnn_R101LSJ_to_regnetx_400mf_FPN_2x.py
# Loss options are MODEL.DISTILL.<NODE>'s keys in lower case (docs/CONFIG.md), e.g.
# model.losses.SharedKDLoss.alpha=10; AMP: train.amp.enabled=True (the teacher runs in bf16).
from detectron2.config import LazyCall as L

from shared_kd.modeling import DistillationDetector, build_guide

from .mask_rcnn_regnetx_400mf_FPN_2x import dataloader, lr_multiplier, optimizer, train
from .mask_rcnn_regnetx_400mf_FPN_2x import model as student

model = L(DistillationDetector)(
    student=student,
    guides=[
        L(build_guide)(
            config_file="model_zoo:new_baselines/mask_rcnn_R_101_FPN_400ep_LSJ.py",
            weights="detectron2://new_baselines/mask_rcnn_R_101_FPN_400ep_LSJ/42073830/model_final_f96b26.pkl",
        )
    ],
    losses={"SharedKDLoss": {}},
    in_features=["p2", "p3", "p4", "p5", "p6"],
    max_iter="${train.max_iter}",
)
train.output_dir = "./output/COCO/sharedkd_mask_rcnn_R101LSJ_to_regnetx_400mf_FPN_2x"
