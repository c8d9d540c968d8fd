"""SharedKD's config keys: everything lives under ``cfg.MODEL.DISTILL`` (plus ``MODEL.FCOS``)."""

from typing import Sequence

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

__all__ = [
    "MODEL_ZOO_PREFIX",
    "add_dataset_config",
    "add_sharedkd_config",
    "load_config",
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

    # Shared-KD (Electronics 2024). Loss = alpha(t) * (L_ident + CROSS_WEIGHT * L_cross).
    _C.MODEL.DISTILL.SHARED_KD = CN()
    # alpha: weight of the Shared-KD feature losses, >= 0. 15 with NORMALIZE "channel" (PKD's
    # weight, chosen by the study); the paper's best is 2 on raw maps (Table 5: 2, 5, 10, 20).
    _C.MODEL.DISTILL.SHARED_KD.ALPHA = 15.0
    # Ramp alpha linearly from 0 to ALPHA over this many iterations, >= 0 (0: the paper, none).
    _C.MODEL.DISTILL.SHARED_KD.ALPHA_WARMUP_ITERS = 0
    # Teacher Share Module: fuse teacher level l with level l+1 (T'_l); off means T'_l = T_l.
    _C.MODEL.DISTILL.SHARED_KD.TEACHER_SHARE = True
    # TSM gates: "softmax" (convex, a0 + a1 = 1: the target keeps the teacher's scale) or
    # "sigmoid" (independent gates; they collapse to 0 in training, kept only to reproduce that).
    _C.MODEL.DISTILL.SHARED_KD.TSM_GATE = "softmax"
    # TSM gate of T_l at initialisation, in (0, 1) (up(T_{l+1}) gets 1 - it); 0.5: an even mix.
    _C.MODEL.DISTILL.SHARED_KD.TSM_INIT_FINE = 0.5
    # Train the TSM's gates (by L_ident, through the target; the paper); False (the study's
    # choice: learned gates drift to the easier of the two levels) keeps the initial mix.
    _C.MODEL.DISTILL.SHARED_KD.TSM_LEARN_GATES = False
    # TSM upsampling of T_{l+1} to T_l's size: "nearest" or "bilinear".
    _C.MODEL.DISTILL.SHARED_KD.TSM_UPSAMPLE = "nearest"
    # TSM fusion conv kernel size: 1 or 3.
    _C.MODEL.DISTILL.SHARED_KD.TSM_KERNEL_SIZE = 3
    # Identical-layer loss L_ident = mean_l D(A(S_l), A(T'_l)) (teacher -> student).
    _C.MODEL.DISTILL.SHARED_KD.IDENTICAL = True
    # Cross-layer loss L_cross within the student: level i guides level j (stop-gradient on i).
    # Off by default (the study: it lowered AP at every weight tried); on in the paper.
    _C.MODEL.DISTILL.SHARED_KD.CROSS = False
    # Weight of L_cross relative to L_ident, >= 0 (the paper: 1).
    _C.MODEL.DISTILL.SHARED_KD.CROSS_WEIGHT = 1.0
    # Cross-layer pairs: "adjacent" ((i, i+1) both ways) or "all" (every ordered pair i != j).
    _C.MODEL.DISTILL.SHARED_KD.CROSS_PAIRS = "adjacent"
    # Which level of a pair guides: "both" (the paper), "fine_to_coarse" (the finer level
    # guides the coarser) or "coarse_to_fine".
    _C.MODEL.DISTILL.SHARED_KD.CROSS_DIRECTION = "both"
    # Distance D: "channel" (mean squared difference of maps standardised per channel over batch
    # and positions, as PKD does; the study's choice) or "none" (of the raw maps, the paper).
    _C.MODEL.DISTILL.SHARED_KD.NORMALIZE = "channel"
    # Weight of positions inside ground-truth boxes in L_ident (background: 1), >= 1; the
    # weighted mean keeps the loss's scale. 1: unweighted (the paper).
    _C.MODEL.DISTILL.SHARED_KD.FOREGROUND_WEIGHT = 1.0

    # Peer baseline, FitNets-style hints (Romero et al. 2015) on FPN levels, no learned
    # regressor: L = WEIGHT * mean_l ||A(S_l) - A(T_l)||^2 (Shared-KD's L_ident without a TSM).
    _C.MODEL.DISTILL.FITNETS = CN()
    # Weight of the term, >= 0.
    _C.MODEL.DISTILL.FITNETS.WEIGHT = 2.0

    # Peer baseline, PKD (Cao et al., NeurIPS 2022): Pearson correlation of FPN levels,
    # L = WEIGHT * sum_l ||std(A(S_l)) - std(A(T_l))||^2 / 2, std = per-channel standardisation.
    _C.MODEL.DISTILL.PKD = CN()
    # Weight of the term (per level: the levels' terms are summed, as in PKD), >= 0.
    _C.MODEL.DISTILL.PKD.WEIGHT = 6.0

    # Teaching assistants (M-KD / DGKD): intermediate-size guides, frozen like the teacher. Each
    # guide (teacher and TAs) contributes every per-guide loss; terms are averaged over guides.
    _C.MODEL.DISTILL.ASSISTANTS = CN()
    # Config files of the TAs (plain detectron2 configs, exported students, or SharedKD configs).
    _C.MODEL.DISTILL.ASSISTANTS.CONFIG_FILES = []
    # Trained weights of the TAs, parallel to CONFIG_FILES; loaded strictly.
    _C.MODEL.DISTILL.ASSISTANTS.WEIGHTS = []
    # DGKD's stochastic drop: probability of dropping each guide in a step, [0, 1); one is kept.
    _C.MODEL.DISTILL.ASSISTANTS.DROP_PROB = 0.0

    # M-KD soft targets (Hinton KD): L_kd = T^2 * KL(p_T || p_S) on classification logits of the
    # same boxes (R-CNN: softmax) or locations (RetinaNet/FCOS: per-class sigmoid).
    _C.MODEL.DISTILL.KD = CN()
    # Weight of L_kd, >= 0.
    _C.MODEL.DISTILL.KD.WEIGHT = 1.0
    # Temperature T at the first iteration (> 0); the paper anneals from 5.
    _C.MODEL.DISTILL.KD.T_START = 5.0
    # Temperature T at the last iteration, SOLVER.MAX_ITER - 1 (> 0); the paper anneals to 1.
    # Equal to T_START: constant.
    _C.MODEL.DISTILL.KD.T_END = 1.0
    # Annealing schedule from T_START to T_END: "linear" or "cosine".
    _C.MODEL.DISTILL.KD.SCHEDULE = "linear"

    # M-KD attention transfer (Zagoruyko & Komodakis): L_at = mean_l ||AT(A(S_l)) - AT(A(T_l))||^2,
    # AT(x) = normalize(flatten(mean_c |x|^p)); a mean over positions, hence the large weight.
    _C.MODEL.DISTILL.AT = CN()
    # Weight of L_at, >= 0 (the attention-transfer paper's beta).
    _C.MODEL.DISTILL.AT.WEIGHT = 1000.0
    # Exponent p of the attention map, > 0.
    _C.MODEL.DISTILL.AT.P = 2.0

    # M-KD FSP relation (Yim et al.): for consecutive levels, G = x^T y / (H W) over channels;
    # L_fsp = mean_l ||G_S - G_T||^2.
    _C.MODEL.DISTILL.FSP = CN()
    # Weight of L_fsp, >= 0.
    _C.MODEL.DISTILL.FSP.WEIGHT = 1.0

    # M-KD inherit/explore (IE-KD): stage A trains per-level auto-encoders on the frozen
    # teacher's features (META_ARCHITECTURE "TeacherAutoEncoder"); stage B splits the student's
    # FPN channels into an inherit and an explore half and compares each, through encoders, with
    # the teacher's latent code.
    _C.MODEL.DISTILL.INHERIT_EXPLORE = CN()
    # Channels of the latent code (stage A and B must agree), >= 1.
    _C.MODEL.DISTILL.INHERIT_EXPLORE.LATENT = 32
    # Stage B: the auto-encoder checkpoint written by stage A (its model_final.pth).
    _C.MODEL.DISTILL.INHERIT_EXPLORE.AE_WEIGHTS = ""
    # Weight of L_inh = ||F(E_s(S_inh)) - F(E(T))||_1, >= 0.
    _C.MODEL.DISTILL.INHERIT_EXPLORE.INHERIT_WEIGHT = 1.0
    # Weight of L_exp = -||F(E_s(S_exp)) - F(E(T))||_1, >= 0.
    _C.MODEL.DISTILL.INHERIT_EXPLORE.EXPLORE_WEIGHT = 1.0

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
