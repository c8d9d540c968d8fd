"""Facts about the installed detectron2 that change what SharedKD may use."""

import functools

__all__ = ["detectron2_has_compiled_ops"]


@functools.lru_cache(maxsize=None)
def detectron2_has_compiled_ops() -> bool:
    """
    Whether ``detectron2._C`` is a real compiled extension.

    False for the Python-only fallback that ``tools/bootstrap.py`` installs (0.6+noops, whose
    ``_C`` is a stub marked ``FALLBACK``) and for a source tree whose extension was never built.
    Decides, e.g., whether COCOEvaluator may use its C++ fast path.
    """
    try:
        from detectron2 import _C
    except ImportError:
        return False
    return not getattr(_C, "FALLBACK", False)
