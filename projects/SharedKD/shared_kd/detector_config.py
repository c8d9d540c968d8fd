"""
One detector's config in either of detectron2's config systems: a yacs yaml (the classic model
zoo) or a LazyConfig (``.py``, e.g. the LSJ baselines, RegNet, ViTDet). The guide builder, the
auto-encoder stage, the analysis tools and the benchmark read detectors through it.

    cfg = load_detector_config("model_zoo:new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py")
    model = cfg.build_model("cpu")      # instantiate(cfg.model), or build_model for a yaml
    cfg.input_format                    # "BGR" / "RGB": the channel order it was trained on

A SharedKD distillation config (yaml or ``.py``) is read as its student, the model it trains.
"""

import logging
import os
from typing import Any, List, Optional, Sequence

import detectron2
import torch.nn as nn
import yaml
from detectron2.config import instantiate
from detectron2.data import DatasetMapper
from detectron2.modeling import build_model
from omegaconf import DictConfig

from .config import load_config, plain_detector_config, resolve_config_file
from .lazy import LazyConfigError, is_lazy_config, load_lazy_config, target_name
from .names import DISTILL_META_ARCH

__all__ = [
    "INPUT_FORMATS",
    "DetectorConfig",
    "load_detector_config",
    "yaml_model",
]

logger = logging.getLogger(__name__)

# The channel orders a guide and a student can be reconciled across (by flipping channels).
INPUT_FORMATS = ("BGR", "RGB")


def yaml_model(config_file: str, opts: Sequence[str] = ()) -> nn.Module:
    """
    A detector built with ``build_model`` from a yacs yaml config, on the CPU (the LazyConfig
    training moves it to ``train.device``): how a LazyConfig names a yaml student, e.g.
    ``student=L(yaml_model)(config_file="...yaml")``. A distillation config gives its student.
    Its ``MODEL.WEIGHTS`` are not loaded: a LazyConfig run initialises from
    ``train.init_checkpoint``.
    """
    cfg = plain_detector_config(load_config(resolve_config_file(config_file), opts))
    if cfg.MODEL.WEIGHTS:
        logger.warning(
            f"{config_file}: MODEL.WEIGHTS {cfg.MODEL.WEIGHTS!r} is not loaded by yaml_model; set "
            "train.init_checkpoint to it to initialise the student from it."
        )
    cfg.MODEL.DEVICE = "cpu"
    return build_model(cfg)


class DetectorConfig:
    """
    A detector's config, yacs or Lazy, with what the project reads of it.

    Attributes:
        source: the config file as given (for messages).
        cfg: a plain yacs ``CfgNode`` (no SharedKD keys), or the Lazy root ``DictConfig``.
        node: for a Lazy config, the detector's ``LazyCall`` node (``cfg.model``, or the
            student node of a distillation config); None for yacs.
        datasets: the COCO-format datasets a yaml names (``DATASETS.COCO_INSTANCES``, which
            ``cfg`` no longer has), to register before reading its test data.
    """

    def __init__(
        self, source: str, cfg: Any, node: Optional[DictConfig] = None, datasets: Sequence = ()
    ):
        self.source = source
        self.cfg = cfg
        self.node = node
        self.datasets = [list(d) for d in datasets]

    @property
    def is_lazy(self) -> bool:
        return self.node is not None

    def build_model(self, device: str = "cpu") -> nn.Module:
        """The detector with random weights (or its config's init), in train mode, on ``device``."""
        if not self.is_lazy:
            cfg = self.cfg.clone()
            cfg.defrost()
            cfg.MODEL.DEVICE = device
            cfg.MODEL.WEIGHTS = ""
            return build_model(cfg)
        model = instantiate(self.node)
        if not isinstance(model, nn.Module):
            raise LazyConfigError(
                f"The model of {self.source!r} instantiates to a {type(model).__name__}, not a "
                "torch.nn.Module."
            )
        return model.to(device)

    @property
    def device(self) -> str:
        """Where its config runs it: yacs ``MODEL.DEVICE``, Lazy ``train.device`` (else "cpu")."""
        if not self.is_lazy:
            return self.cfg.MODEL.DEVICE
        device = _select(self.cfg, "train.device")
        return device if isinstance(device, str) else "cpu"

    @property
    def input_format(self) -> str:
        """
        The channel order of the images the detector was trained on: yacs ``INPUT.FORMAT``;
        Lazy ``model.input_format``, else ``dataloader.train.mapper.image_format``.
        """
        if not self.is_lazy:
            return self.cfg.INPUT.FORMAT
        if self.node.get("input_format") is not None:
            return self.node.input_format
        mapper = _select(self.cfg, "dataloader.train.mapper")
        if mapper is not None and mapper.get("image_format") is not None:
            return mapper.image_format
        raise LazyConfigError(
            f"{self.source!r} names no input format: set model.input_format (or "
            "dataloader.train.mapper.image_format) to the channel order its images had in "
            "training, 'BGR' or 'RGB'."
        )

    @property
    def test_datasets(self) -> List[str]:
        """The datasets it is evaluated on (yacs ``DATASETS.TEST``, Lazy ``dataloader.test``)."""
        if not self.is_lazy:
            return list(self.cfg.DATASETS.TEST)
        names = _select(self.cfg, "dataloader.test.dataset.names")
        if names is None:
            return []
        return [names] if isinstance(names, str) else list(names)

    def test_mapper(self):
        """Its test-time ``DatasetMapper`` (image format and resizing)."""
        if not self.is_lazy:
            return DatasetMapper(self.cfg, is_train=False)
        mapper = _select(self.cfg, "dataloader.test.mapper")
        if mapper is None:
            raise LazyConfigError(f"{self.source!r} has no dataloader.test.mapper")
        return instantiate(mapper)

    def __repr__(self):
        return f"DetectorConfig({self.source!r}, {'lazy' if self.is_lazy else 'yacs'})"


def _select(cfg: DictConfig, key: str):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return None
        node = node[part]
    return node


def _detector_node(cfg: DictConfig, source: str):
    """The detector node of a Lazy config: ``model``, or a distillation model's ``student``."""
    if "model" not in cfg:
        raise LazyConfigError(
            f"LazyConfig {source!r} defines no `model`: a detector's config must assign "
            "`model = L(<meta-architecture>)(...)` (as detectron2's configs/common/models do)."
        )
    node = cfg.model
    if target_name(node) == DISTILL_META_ARCH:
        if "student" not in node:
            raise LazyConfigError(f"The distillation model of {source!r} names no student")
        node = node.student
    return node


def load_detector_config(
    config_file: str, opts: Sequence[str] = (), role: str = "model", key: str = "--config-file"
) -> DetectorConfig:
    """
    Read a detector's config of either system; a distillation config gives its student's.

    Args:
        config_file: a yacs yaml, a LazyConfig (``.py``, or a yaml that ``LazyConfig.save``
            wrote); ``model_zoo:<path>`` names one of detectron2's model-zoo configs, e.g.
            ``model_zoo:new_baselines/mask_rcnn_R_101_FPN_400ep_LSJ.py``. Relative paths are
            read from the current directory.
        opts: overrides: ``KEY VALUE`` pairs for yacs, ``key=value`` strings for Lazy.
        role: what the detector is ("teacher", "teaching assistant 1", ...), for messages.
        key: the config key or flag that named ``config_file``, for messages.
    """
    if not config_file:
        raise ValueError(
            f"{key} is empty: set it to the {role}'s detectron2 config file (the yaml or .py "
            "it was trained with)."
        )
    try:
        path = resolve_config_file(config_file)
    except RuntimeError as e:  # model_zoo: "... not available in Model Zoo!"
        hint = (
            " (ViTDet and MViTv2 are in upstream detectron2 main, not in v0.6)"
            if detectron2.__version__.startswith("0.6")
            else ""
        )
        raise FileNotFoundError(
            f"{key}: {e} This detectron2 has no such model-zoo config{hint}."
        ) from e
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{role.capitalize()} config {path!r} not found ({key}); relative paths are read "
            "from the current directory."
        )
    if is_lazy_config(path):
        cfg = load_lazy_config(path, opts)
        node = _detector_node(cfg, path)
        if target_name(node) == "yaml_model":  # a Lazy distillation config's yaml student
            return load_detector_config(node.config_file, node.get("opts", ()), role, key)
        return DetectorConfig(config_file, cfg, node)
    try:
        cfg = load_config(path, opts)
    except (OSError, yaml.YAMLError, KeyError, ValueError, TypeError, AssertionError) as e:
        raise ValueError(
            f"{role.capitalize()} config {path!r} ({key}) cannot be read: "
            f"{type(e).__name__}: {e}. It must be the detectron2 config the {role} was trained "
            "with (its _BASE_ files beside it)."
        ) from e
    datasets = cfg.DATASETS.get("COCO_INSTANCES", [])
    cfg = plain_detector_config(cfg)
    cfg.freeze()
    return DetectorConfig(config_file, cfg, datasets=datasets)
