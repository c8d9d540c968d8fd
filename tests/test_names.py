"""shared_kd.names: the names that the distiller, its checkpoints and the tools share."""

import ast

from detectron2.modeling import META_ARCH_REGISTRY

import shared_kd.names as names
from shared_kd.modeling import DistillationDetector, TeacherAutoEncoder


def test_the_meta_architecture_names_are_the_registered_classes():
    assert names.DISTILL_META_ARCH == "DistillationDetector"
    assert names.AUTOENCODER_META_ARCH == "TeacherAutoEncoder"
    assert META_ARCH_REGISTRY.get(names.DISTILL_META_ARCH) is DistillationDetector
    assert META_ARCH_REGISTRY.get(names.AUTOENCODER_META_ARCH) is TeacherAutoEncoder


def test_the_student_prefix_is_a_state_dict_prefix():
    # the distiller holds its student as the submodule `student`: its keys are "student.<key>"
    assert names.STUDENT_PREFIX == "student."
    assert names.STUDENT_PREFIX.endswith(".") and "." not in names.STUDENT_PREFIX[:-1]


def test_the_module_imports_nothing():
    with open(names.__file__) as f:
        tree = ast.parse(f.read())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert sorted(names.__all__) == ["AUTOENCODER_META_ARCH", "DISTILL_META_ARCH", "STUDENT_PREFIX"]
