"""
detectron2's LazyConfig files (``.py``, and the ``.yaml`` that ``LazyConfig.save`` writes), read
with checks: which config system a file uses, overrides in ``key=value`` form whose keys must
exist, and the targets of ``LazyCall`` nodes.

Only detectron2 and omegaconf are imported here: the config readers above it
(:mod:`shared_kd.detector_config`) and the training script use it.
"""

import difflib
import inspect
import os
from typing import Any, List, Optional, Sequence

import yaml
from detectron2.config import LazyConfig
from detectron2.utils.registry import locate
from omegaconf import DictConfig, ListConfig

__all__ = [
    "LazyConfigError",
    "check_lazy_overrides",
    "is_lazy_config",
    "load_lazy_config",
    "target_name",
    "target_of",
]


class LazyConfigError(ValueError):
    """A LazyConfig file or one of its overrides cannot be used."""


def is_lazy_config(path: str) -> bool:
    """
    Whether ``path`` is a LazyConfig: a ``.py`` file, or a yaml file that ``LazyConfig.save``
    wrote (lower-case top-level keys with a ``model`` node naming a ``_target_``, as
    ``config.yaml`` of a LazyConfig run), rather than a yacs yaml (``MODEL:``, ``_BASE_``).
    """
    if path.endswith(".py"):
        return True
    if not path.endswith((".yaml", ".yml")) or not os.path.isfile(path):
        return False
    try:
        with open(path) as f:
            content = yaml.load(f, Loader=_SniffLoader)
    except (OSError, yaml.YAMLError):
        return False  # yacs then reports what is wrong with it
    model = content.get("model") if isinstance(content, dict) else None
    return isinstance(model, dict) and "_target_" in model


class _SniffLoader(yaml.SafeLoader):
    """A safe loader that reads Python-specific tags (``LazyConfig.save`` writes tuples as
    ``!!python/tuple``) as None: enough to tell the config system, without running anything."""


_SniffLoader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def target_of(node) -> Any:
    """The callable a ``LazyCall`` node names (its ``_target_``, located if a string), or None."""
    if not isinstance(node, (DictConfig, dict)) or "_target_" not in node:
        return None
    target = node["_target_"]
    return locate(target) if isinstance(target, str) else target


def target_name(node) -> Optional[str]:
    """The ``__name__`` of a ``LazyCall`` node's target (e.g. "GeneralizedRCNN"), or None."""
    target = target_of(node)
    return getattr(target, "__name__", None) if target is not None else None


def _parameters(target) -> Optional[List[str]]:
    """The keyword names ``target`` accepts, or None when it accepts any (``**kwargs``)."""
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: cannot check
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL]


def _child(node, part: str):
    if isinstance(node, ListConfig):
        return node[int(part)] if part.isdigit() and int(part) < len(node) else None
    if isinstance(node, DictConfig):
        return node.get(part) if part in node else None
    return None


def check_lazy_overrides(cfg: DictConfig, overrides: Sequence[str], source: str) -> None:
    """
    Raise :class:`LazyConfigError` unless every override is ``key=value`` and names a key of
    ``cfg``: one that exists, or a parameter of the ``LazyCall`` whose node it would be added
    to (e.g. ``model.backbone.bottom_up.freeze_at=2`` where the config leaves it at its
    default), or a key of a plain mapping inside a ``LazyCall`` (e.g.
    ``model.losses.SharedKDLoss.alpha=10``: the distiller checks a loss's options). ``+key=value``
    adds a key that is in none of these (hydra's syntax; its parent must exist), ``~key``
    deletes an existing one (e.g. ``~dataloader.evaluator``: train without evaluating).

    Args:
        cfg: the loaded config.
        overrides: ``key=value`` strings (detectron2's ``LazyConfig.apply_overrides`` form).
        source: the config file, named in errors.
    """
    for override in overrides:
        key, sep, _ = str(override).partition("=")
        deletion, addition = key.startswith("~"), key.startswith("+")
        key = key.strip().lstrip("+~")
        if deletion:
            sep = sep or "="  # "~key" deletes: it takes no value
        if not sep or not key or " " in key:
            raise LazyConfigError(
                f"Override {override!r} of the LazyConfig {source!r} is not key=value: a .py "
                "config takes detectron2's LazyConfig overrides, e.g. train.max_iter=100 "
                "(KEY VALUE pairs are for yaml configs)."
            )
        node, parts, inside_call = cfg, key.split("."), False
        for i, part in enumerate(parts):
            inside_call = inside_call or target_of(node) is not None
            child = _child(node, part)
            if child is not None or (isinstance(node, DictConfig) and part in node):
                node = child
                continue
            if deletion:
                raise LazyConfigError(
                    f"Override {override!r}: {'.'.join(parts[: i + 1])} is not in {source!r}: "
                    "there is nothing to delete."
                )
            where = ".".join(parts[:i]) or "the config"
            if i == len(parts) - 1 and isinstance(node, DictConfig):
                target = target_of(node)
                params = _parameters(target) if target is not None else []
                if addition or params is None or part in params:
                    break  # added on purpose, or a keyword the file leaves at its default
                if target is None and inside_call:
                    break  # a mapping argument of a LazyCall: its callee checks its keys
                known = sorted(set(node.keys()) | set(params))
            else:
                known = list(node.keys()) if isinstance(node, DictConfig) else []
            known = [str(k) for k in known if not str(k).startswith("_")]
            close = difflib.get_close_matches(part, known, n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else f"; it has {known}"
            raise LazyConfigError(
                f"Override {override!r}: {where} of {source!r} has no key {part!r}{hint}"
                + ("" if close else " (+key=value adds a new one)")
            )


def load_lazy_config(path: str, overrides: Sequence[str] = ()) -> DictConfig:
    """
    ``LazyConfig.load(path)`` with ``overrides`` applied in order (``key=value``, ``+key=value``,
    ``~key``, each checked by :func:`check_lazy_overrides`), as detectron2's
    ``tools/lazyconfig_train_net.py`` reads a config, with errors that name the file.
    """
    try:
        cfg = LazyConfig.load(path)
    except (SyntaxError, ImportError, AttributeError, NameError, KeyError, ValueError) as e:
        raise LazyConfigError(
            f"LazyConfig {path!r} cannot be loaded: {type(e).__name__}: {e}"
        ) from e
    # In the given order, each checked against the config as the earlier ones left it.
    for override in map(str, overrides):
        check_lazy_overrides(cfg, [override], path)
        if override.startswith("~"):  # detectron2's apply_overrides implements no deletion
            *parents, last = override[1:].partition("=")[0].split(".")
            node = cfg
            for part in parents:
                node = _child(node, part)
            del node[int(last) if isinstance(node, ListConfig) else last]
            continue
        try:
            LazyConfig.apply_overrides(cfg, [override])
        except Exception as e:  # hydra's parser: a value it cannot read
            raise LazyConfigError(
                f"Override {override!r} of {path!r}: {type(e).__name__}: {e}"
            ) from e
    return cfg
