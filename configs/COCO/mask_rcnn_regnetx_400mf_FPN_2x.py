# Mask R-CNN RegNetX-400MF FPN, COCO 2017, 2x schedule: a small LazyConfig student (RegNet has no
# yaml builder in detectron2), from ImageNet weights of pycls (the DDS paper's RegNetX-400MF),
# as detectron2's COCO-InstanceSegmentation/mask_rcnn_regnetx_4gf_dds_fpn_1x.py builds 4GF.
#   python train_net.py --num-gpus 8 --config-file configs/COCO/mask_rcnn_regnetx_400mf_FPN_2x.py
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import RegNet
from detectron2.modeling.backbone.regnet import ResBottleneckBlock, SimpleStem

_base = model_zoo.get_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py")
dataloader, model, optimizer, train = _base.dataloader, _base.model, _base.optimizer, _base.train
lr_multiplier = model_zoo.get_config("common/coco_schedule.py").lr_multiplier_2x

# pycls configs/dds_baselines/regnetx/RegNetX-400MF_dds_8gpu.yaml
model.backbone.bottom_up = L(RegNet)(
    stem_class=SimpleStem,
    stem_width=32,
    block_class=ResBottleneckBlock,
    depth=22,
    w_a=24.48,
    w_0=24,
    w_m=2.54,
    group_width=16,
    freeze_at=2,
    norm="FrozenBN",
    out_features=["s1", "s2", "s3", "s4"],
)
model.pixel_std = [57.375, 57.120, 58.395]  # pycls's ImageNet std, BGR
optimizer.weight_decay = 5e-5
train.init_checkpoint = (
    "https://dl.fbaipublicfiles.com/pycls/dds_baselines/160905967/RegNetX-400MF_dds_8gpu.pyth"
)
train.max_iter = 180000  # 2x at batch 16
train.output_dir = "./output/COCO/mask_rcnn_regnetx_400mf_FPN_2x"
