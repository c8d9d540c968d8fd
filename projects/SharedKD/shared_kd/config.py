"""
SharedKD's config keys: everything lives under ``cfg.MODEL.DISTILL`` (plus ``MODEL.FCOS`` and
``DATASETS.COCO_INSTANCES``). This file holds the distiller's own keys; each loss adds its node
itself (``DistillLoss.add_config`` in ``shared_kd/losses/``).
"""

from typing import Sequence

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from .losses import add_distill_loss_configs
from .names import DISTILL_META_ARCH

__all__ = [
    "MODEL_ZOO_PREFIX",
    "add_dataset_config",
    "add_sharedkd_config",
    "load_config",
    "plain_detector_config",
    "resolve_config_file",
]

MODEL_ZOO_PREFIX = "model_zoo:"


def resolve_config_file(config_file: str) -> str:
    """
    The path of a config file; ``model_zoo:<name>`` names one of detectron2's model-zoo
    configs, e.g. ``model_zoo:COCO-Detection/retinanet_R_101_FPN_3x.yaml``.
    """
    if config_file.startswith(MODEL_ZOO_PREFIX):
        from detectron2 import model_zoo

        return model_zoo.get_config_file(config_file[len(MODEL_ZOO_PREFIX) :])
    return config_file


def load_config(config_file: str, opts: Sequence[str] = ()):
    """
    detectron2's default config with SharedKD's keys, merged with ``config_file`` (see
    :func:`resolve_config_file`) and ``KEY VALUE`` overrides; not frozen.
    """
    cfg = get_cfg()
    add_sharedkd_config(cfg)
    cfg.merge_from_file(resolve_config_file(config_file))
    cfg.merge_from_list(list(opts))
    return cfg


def add_sharedkd_config(cfg):
    """
    Add SharedKD's keys to a detectron2 config, in place. Call it before ``merge_from_file``.

    Every key has a one-line comment: meaning, range, and the paper's symbol where there is one.
    Here: the distiller's keys (student, levels, losses, guides); every registered loss adds its
    own node (``DistillLoss.add_config``), so a loss of another package must be imported first.
    A config whose ``MODEL.META_ARCHITECTURE`` is not ``"DistillationDetector"`` (a teacher, a
    baseline student) ignores ``MODEL.DISTILL`` and trains as a plain detectron2 model.
    """
    _C = cfg
    _C.MODEL.DISTILL = CN()
    # Meta-architecture of the student that DistillationDetector builds and trains (any name in
    # META_ARCH_REGISTRY: GeneralizedRCNN, RetinaNet, FCOS). The rest of MODEL.* describes it.
    _C.MODEL.DISTILL.STUDENT_META_ARCHITECTURE = "GeneralizedRCNN"
    # FPN levels that take part, fine to coarse (e.g. p2..p6 for R-CNN, p3..p7 for dense heads).
    # Empty: every level of the student's backbone. Both backbones must produce each level.
    _C.MODEL.DISTILL.IN_FEATURES = []
    # Names of the losses to build from DISTILL_LOSS_REGISTRY; each has its own node below.
    _C.MODEL.DISTILL.LOSSES = ["SharedKDLoss"]
    # Guides' forward precision: "auto" (bf16 on CUDA, fp16 where no bf16; off elsewhere), "bf16",
    # "fp16" (autocast, inference_mode, channels-last on CUDA) or "off" (fp32). Losses stay fp32.
    _C.MODEL.DISTILL.GUIDE_AUTOCAST = "auto"

    # The teacher: a frozen detector built from its own config file and trained weights.
    _C.MODEL.DISTILL.TEACHER = CN()
    # Path to the teacher's detectron2 yaml config (a plain one, or an exported student's).
    _C.MODEL.DISTILL.TEACHER.CONFIG_FILE = ""
    # Path (or detectron2 URL) of the teacher's trained weights; loaded strictly.
    _C.MODEL.DISTILL.TEACHER.WEIGHTS = ""
    # Overrides for the teacher's config, as KEY VALUE pairs (like train_net.py's opts).
    _C.MODEL.DISTILL.TEACHER.OPTS = []

    # Teaching assistants (M-KD / DGKD): intermediate-size guides, frozen like the teacher. Each
    # guide (teacher and TAs) contributes every per-guide loss; terms are averaged over guides.
    _C.MODEL.DISTILL.ASSISTANTS = CN()
    # Config files of the TAs (plain detectron2 configs, exported students, or SharedKD configs).
    _C.MODEL.DISTILL.ASSISTANTS.CONFIG_FILES = []
    # Trained weights of the TAs, parallel to CONFIG_FILES; loaded strictly.
    _C.MODEL.DISTILL.ASSISTANTS.WEIGHTS = []
    # DGKD's stochastic drop: probability of dropping each guide in a step, [0, 1); one is kept.
    _C.MODEL.DISTILL.ASSISTANTS.DROP_PROB = 0.0

    # Every registered loss's own node (DistillLoss.add_config), e.g. MODEL.DISTILL.SHARED_KD.
    add_distill_loss_configs(_C)

    add_fcos_config(_C)
    add_dataset_config(_C)


def add_dataset_config(cfg):
    """
    ``DATASETS.COCO_INSTANCES``: COCO-format datasets that train_net.py and the analysis tools
    register before building anything (:mod:`shared_kd.data.register`), so that a user's own
    data needs no code. The one key of this project outside ``MODEL.DISTILL``: it is about data.
    """
    # COCO-format datasets to register: [[name, annotation json, image folder], ...]; then use
    # the names in DATASETS.TRAIN / TEST. Relative paths are read from the current directory.
    cfg.DATASETS.COCO_INSTANCES = []


def add_fcos_config(cfg):
    """``MODEL.FCOS``: the keys of the yaml FCOS builder (detectron2 ships FCOS as LazyConfig)."""
    _C = cfg
    _C.MODEL.FCOS = CN()
    # Number of foreground classes.
    _C.MODEL.FCOS.NUM_CLASSES = 80
    # Backbone levels the head runs on, fine to coarse.
    _C.MODEL.FCOS.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    # Convs in each head tower (classification / regression).
    _C.MODEL.FCOS.NUM_CONVS = 4
    # Norm of the head towers: "GN" (as in the paper), "" or another get_norm name.
    _C.MODEL.FCOS.NORM = "GN"
    # Initial foreground probability of the classification logits.
    _C.MODEL.FCOS.PRIOR_PROB = 0.01
    # Radius (in strides) of the positive "center" region of a box.
    _C.MODEL.FCOS.CENTER_SAMPLING_RADIUS = 1.5
    # Focal loss alpha and gamma.
    _C.MODEL.FCOS.FOCAL_LOSS_ALPHA = 0.25
    _C.MODEL.FCOS.FOCAL_LOSS_GAMMA = 2.0
    # Inference: score threshold, candidates per level before NMS, NMS IoU threshold.
    _C.MODEL.FCOS.SCORE_THRESH_TEST = 0.2
    _C.MODEL.FCOS.TOPK_CANDIDATES_TEST = 1000
    _C.MODEL.FCOS.NMS_THRESH_TEST = 0.6


def plain_detector_config(cfg):
    """
    The config of the detector ``cfg`` builds, as plain detectron2 reads it: for a distillation
    config the student's (its meta-architecture, ``MODEL.DISTILL.STUDENT_META_ARCHITECTURE``),
    for a plain one (teacher, assistant, baseline) the same detector; in both cases without
    SharedKD's keys, so vanilla ``get_cfg().merge_from_file`` reads it. A yaml FCOS keeps
    ``MODEL.FCOS``: building it needs ``import shared_kd``. A new config; ``cfg`` is unchanged.
    """
    out = cfg.clone()
    out.defrost()
    if out.MODEL.META_ARCHITECTURE == DISTILL_META_ARCH:
        out.MODEL.META_ARCHITECTURE = out.MODEL.DISTILL.STUDENT_META_ARCHITECTURE
    out.MODEL.pop("DISTILL", None)
    if out.MODEL.META_ARCHITECTURE != "FCOS":
        out.MODEL.pop("FCOS", None)
    out.DATASETS.pop("COCO_INSTANCES", None)
    return out
