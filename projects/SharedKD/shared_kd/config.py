"""SharedKD's config keys: everything lives under ``cfg.MODEL.DISTILL`` (plus ``MODEL.FCOS``)."""

from detectron2.config import CfgNode as CN

__all__ = ["add_sharedkd_config"]


def add_sharedkd_config(cfg):
    """
    Add SharedKD's keys to a detectron2 config, in place. Call it before ``merge_from_file``.

    Every key has a one-line comment: meaning, range, and the paper's symbol where there is one.
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

    # The teacher: a frozen detector built from its own config file and trained weights.
    _C.MODEL.DISTILL.TEACHER = CN()
    # Path to the teacher's detectron2 yaml config (a plain one, or an exported student's).
    _C.MODEL.DISTILL.TEACHER.CONFIG_FILE = ""
    # Path (or detectron2 URL) of the teacher's trained weights; loaded strictly.
    _C.MODEL.DISTILL.TEACHER.WEIGHTS = ""
    # Overrides for the teacher's config, as KEY VALUE pairs (like train_net.py's opts).
    _C.MODEL.DISTILL.TEACHER.OPTS = []

    # Shared-KD (Electronics 2024). Loss = ALPHA * (L_ident + L_cross).
    _C.MODEL.DISTILL.SHARED_KD = CN()
    # alpha: weight of the Shared-KD feature losses, >= 0 (paper's best: 2; Table 5: 2, 5, 10, 20).
    _C.MODEL.DISTILL.SHARED_KD.ALPHA = 2.0
    # Teacher Share Module: fuse teacher level l with level l+1 (T'_l); off means T'_l = T_l.
    _C.MODEL.DISTILL.SHARED_KD.TEACHER_SHARE = True
    # Identical-layer loss L_ident = mean_l ||A(S_l) - A(T'_l)||^2 (teacher -> student).
    _C.MODEL.DISTILL.SHARED_KD.IDENTICAL = True
    # Cross-layer loss L_cross within the student: level i guides level j (stop-gradient on i).
    _C.MODEL.DISTILL.SHARED_KD.CROSS = True
    # Cross-layer pairs: "adjacent" ((i, i+1) both ways) or "all" (every ordered pair i != j).
    _C.MODEL.DISTILL.SHARED_KD.CROSS_PAIRS = "adjacent"
    # TSM upsampling of T_{l+1} to T_l's size: "nearest" or "bilinear".
    _C.MODEL.DISTILL.SHARED_KD.TSM_UPSAMPLE = "nearest"
    # TSM fusion conv kernel size: 1 or 3.
    _C.MODEL.DISTILL.SHARED_KD.TSM_KERNEL_SIZE = 3

    add_fcos_config(_C)


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
