"""What every job of the GPU check shares: paths, the log line, names, hashes, bootstrap."""

import hashlib
import importlib
import importlib.util
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_DEST = os.path.join(ROOT, ".gpu_wheels")
PARTS = ("install", "tests", "train", "bench", "cost")


def log(msg):
    print(f"[gpu_check] {msg}", flush=True)


def canonical(name):
    """A project name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def load_bootstrap():
    """tools/bootstrap.py as a module: its detectron2 sdist, sha256 and install steps."""
    spec = importlib.util.spec_from_file_location(
        "sharedkd_bootstrap", os.path.join(ROOT, "tools", "bootstrap.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def packaging_module():
    """``packaging`` (or pip's vendored copy): requirements, markers, wheel tags."""
    try:
        import packaging.markers
        import packaging.requirements
        import packaging.tags
        import packaging.utils
        import packaging.version

        return packaging
    except ImportError:  # pragma: no cover - pip always vendors it
        from pip._vendor import packaging

        for sub in ("markers", "requirements", "tags", "utils", "version"):
            importlib.import_module(f"pip._vendor.packaging.{sub}")
        return packaging


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
