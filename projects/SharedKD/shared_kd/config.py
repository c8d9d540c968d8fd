"""SharedKD's config keys: everything lives under ``cfg.MODEL.DISTILL``."""

from detectron2.config import CfgNode as CN

__all__ = ["add_sharedkd_config"]


def add_sharedkd_config(cfg):
    """
    Add SharedKD's keys to a detectron2 config, in place. Call it before ``merge_from_file``.

    Every key has a one-line comment: meaning, range, and the paper's symbol where there is one.
    """
    _C = cfg
    # Distillation settings. A config without distillation (a teacher, a baseline student) still
    # carries this node and is trained as a plain detectron2 model.
    _C.MODEL.DISTILL = CN()
