# LazyConfig twin of Base-RCNN-FPN-Tiny.yaml: a self-contained base for tiny R-CNN detectors on
# the embedded shapes dataset (128x128 images, 3 classes), trained from scratch on the CPU.
# detectron2's R-CNN FPN (configs/common/models/mask_rcnn_fpn.py) without the mask head, with
# the yaml's deltas: ResNet-18 with GroupNorm everywhere (random FrozenBN diverges), an FPN of
# width 64, few RoIs. Run with train_net.py and key=value overrides, e.g. train.max_iter=20.
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.data import (
    DatasetMapper,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.data import transforms as T
from detectron2.evaluation import COCOEvaluator
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import ResNet
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import CompositeParamScheduler, ConstantParamScheduler
from omegaconf import OmegaConf

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
model.backbone.bottom_up.stem.norm = "GN"
# BasicBlocks (depth 18, 34) take no stride_in_1x1; deeper ones would take False here.
model.backbone.bottom_up.stages = L(ResNet.make_default_stages)(depth=18, norm="GN")
model.backbone.bottom_up.freeze_at = 0
model.backbone.out_channels = 64
model.backbone.norm = "GN"
model.proposal_generator.head.in_channels = "${...backbone.out_channels}"
model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]  # 14-52 px
model.proposal_generator.batch_size_per_image = 128
model.proposal_generator.pre_nms_topk = (1000, 500)
model.proposal_generator.post_nms_topk = (256, 100)
model.roi_heads.num_classes = 3
model.roi_heads.batch_size_per_image = 64
model.roi_heads.box_head.input_shape = L(ShapeSpec)(
    channels="${....backbone.out_channels}", height=7, width=7
)
model.roi_heads.box_head.fc_dims = [256, 256]
model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=256)
model.roi_heads.box_predictor.test_score_thresh = 0.05
model.roi_heads.box_predictor.test_topk_per_image = 20
for key in ("mask_in_features", "mask_pooler", "mask_head"):
    del model.roi_heads[key]

dataloader = OmegaConf.create()
dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="shapes_train"),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=(128,), max_size=128, sample_style="choice"),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="BGR",
    ),
    total_batch_size=4,
    num_workers=2,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="shapes_val", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=128, max_size=128)],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=2,
)
dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}")

optimizer = model_zoo.get_config("common/optim.py").SGD
optimizer.lr = 0.02

train = model_zoo.get_config("common/train.py").train
train.device = "cpu"  # on a GPU: train.device=cuda
train.max_iter = 300
train.eval_period = 0  # at the end only
train.checkpointer.period = 100000  # the final checkpoint only
train.seed = 42
# The learning rate steps down 10x at 80% of the run (the yaml's 240 of 300 iterations), after a
# linear warm-up over its first sixth: fractions, so that train.max_iter=<n> alone shortens it.
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(CompositeParamScheduler)(
        schedulers=[L(ConstantParamScheduler)(value=1.0), L(ConstantParamScheduler)(value=0.1)],
        lengths=[0.8, 0.2],
        interval_scaling=["rescaled", "rescaled"],
    ),
    warmup_length=50 / 300,
    warmup_factor=0.001,
)
