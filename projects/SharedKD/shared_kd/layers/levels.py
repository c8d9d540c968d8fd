"""The backbone levels that distillation reads: ``MODEL.DISTILL.IN_FEATURES`` resolved."""

from typing import List, Mapping, Sequence

from detectron2.layers import ShapeSpec

__all__ = ["resolve_in_features"]


def resolve_in_features(
    in_features: Sequence[str], shapes: Mapping[str, ShapeSpec], whose: str
) -> List[str]:
    """
    The levels ``MODEL.DISTILL.IN_FEATURES`` names, or, when it is empty, every level of
    ``shapes`` fine to coarse (sorted by stride); checked to be levels of ``shapes``.

    Args:
        in_features: the configured levels (``MODEL.DISTILL.IN_FEATURES``), possibly empty.
        shapes: ``backbone.output_shape()`` of the model whose levels are the default and are
            checked.
        whose: that model, named in the error: "student", "teacher", "teaching assistant 1".

    Returns:
        list[str]: the levels.

    Raises:
        ValueError: naming the levels that the backbone does not produce, and those it has.
    """
    levels = list(in_features) or sorted(shapes, key=lambda f: shapes[f].stride)
    missing = [f for f in levels if f not in shapes]
    if missing:
        raise ValueError(
            f"MODEL.DISTILL.IN_FEATURES names {missing}, which the {whose}'s backbone does not "
            f"produce (it has {list(shapes)}). Use levels every backbone outputs."
        )
    return levels
