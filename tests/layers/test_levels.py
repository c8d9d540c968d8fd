import pytest
from detectron2.layers import ShapeSpec

from shared_kd.layers.levels import resolve_in_features

SHAPES = {"p4": ShapeSpec(channels=8, stride=16), "p2": ShapeSpec(channels=8, stride=4)}


def test_default_is_every_level_fine_to_coarse():
    assert resolve_in_features([], SHAPES, "student") == ["p2", "p4"]


def test_configured_levels_are_kept_as_given():
    assert resolve_in_features(("p4",), SHAPES, "student") == ["p4"]


def test_missing_levels_are_named_with_whose_backbone_and_its_levels():
    with pytest.raises(ValueError, match=r"names \['p9'\], which the teacher's backbone") as e:
        resolve_in_features(["p2", "p9"], SHAPES, "teacher")
    assert "['p4', 'p2']" in str(e.value)
