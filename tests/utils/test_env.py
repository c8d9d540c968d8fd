"""shared_kd.utils.env: whether detectron2's compiled ops are there."""

import sys
import types

import detectron2
import pytest

from shared_kd.utils.env import detectron2_has_compiled_ops


@pytest.fixture
def fake_c(monkeypatch):
    """Install ``module`` as ``detectron2._C`` (None: not importable); the answer recomputed."""

    def install(module):
        detectron2_has_compiled_ops.cache_clear()
        if module is None:
            monkeypatch.delattr(detectron2, "_C", raising=False)
        else:
            monkeypatch.setattr(detectron2, "_C", module, raising=False)
        monkeypatch.setitem(sys.modules, "detectron2._C", module)

    yield install
    detectron2_has_compiled_ops.cache_clear()


def test_a_compiled_extension(fake_c):
    fake_c(types.ModuleType("detectron2._C"))
    assert detectron2_has_compiled_ops() is True


def test_the_fallback_stub(fake_c):
    stub = types.ModuleType("detectron2._C")
    stub.FALLBACK = True
    fake_c(stub)
    assert detectron2_has_compiled_ops() is False


def test_no_extension(fake_c):
    fake_c(None)  # a source tree whose extension was never built: the import fails
    assert detectron2_has_compiled_ops() is False


def test_the_installed_detectron2():
    detectron2_has_compiled_ops.cache_clear()
    try:
        from detectron2 import _C
    except ImportError:
        expected = False
    else:
        expected = not getattr(_C, "FALLBACK", False)
    assert detectron2_has_compiled_ops() is expected
    assert detectron2_has_compiled_ops.cache_info().currsize == 1  # asked once per process
