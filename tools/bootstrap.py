#!/usr/bin/env python3
"""
Install what SharedKD needs into the running Python environment, and nothing it already has.

Run by ``make install`` (and so by ``make demo`` / ``make test``) with the interpreter of the
environment to fill. Standard library only: it runs before anything is installed.

Order, and why:

1. If ``detectron2`` is importable, it is kept, and so is the torch it was built against:
   a user's own (CUDA) build must never be replaced.
2. Otherwise torch/torchvision: kept if a pair whose compiled ops load is importable, else the
   pinned pair from ``requirements/torch.txt`` is installed.
3. Otherwise detectron2 itself: the official v0.6 release as republished on PyPI
   (``pb1-detectron2==0.6``), verified by sha256, installed *without* its compiled ops as
   ``detectron2==0.6+noops``. Two compatibility gaps with today's stack are patched, and a stub
   ``detectron2._C`` raises a clear error if any code reaches a missing compiled op.
4. ``requirements/base.txt`` (+ ``requirements/dev.txt`` with ``--dev``) and this project
   (``pip install -e .``).

Every step is a no-op when its outcome is already there, so running it twice changes nothing.
"""

import argparse
import hashlib
import os
import re
import shutil
import string
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache")

# The official detectron2 v0.6 release sdist, republished on PyPI (Python sources only).
D2_SDIST_PROJECT = "pb1-detectron2"
D2_SDIST_FILE = "pb1-detectron2-0.6.tar.gz"
D2_SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
D2_FALLBACK_VERSION = "0.6+noops"
# Bump when the patches or the templates change: an older fallback (ours, never a user's build)
# is then reinstalled.
D2_FALLBACK_REVISION = 3

# Files written into the release sources (string.Template, $-placeholders):
# - detectron2_C.py.in: a stub for the missing extension. Module-level __getattr__ (PEP 562)
#   turns any use of a compiled op into an error that says what is missing and how to get it;
#   import-time references (``from detectron2 import _C``) keep working, and so does
#   detectron2's collect_env.
# - detectron2_setup.py.in: a setup.py for the Python-only install (the release's own one
#   compiles the extension and pins black==21.4b2).
TEMPLATES = os.path.join(ROOT, "tools", "bootstrap_templates")


# (file, old, new, why): textual patches applied to the release sources.
D2_PATCHES = [
    (
        "detectron2/data/transforms/transform.py",
        "interp=Image.LINEAR",
        "interp=Image.BILINEAR",
        "Image.LINEAR was removed in Pillow 10 (upstream main uses BILINEAR, the same filter)",
    ),
    (
        "detectron2/layers/nms.py",
        "    return torch.ops.detectron2.nms_rotated(boxes, scores, iou_threshold)",
        "    from detectron2 import _C\n\n    return _C.nms_rotated(boxes, scores, iou_threshold)",
        "rotated NMS goes through the _C stub, which names the missing op",
    ),
    (
        "detectron2/export/__init__.py",
        "from .api import *\n",
        "try:\n    from caffe2.proto import caffe2_pb2 as _tmp  # noqa: F401\n"
        "except ImportError:  # caffe2 is optional\n    pass\nelse:\n    from .api import *\n",
        "caffe2 (gone from PyTorch) is optional for detectron2.export, as in upstream main: "
        "TracingAdapter and TorchScript export need no caffe2",
    ),
    (
        "detectron2/__init__.py",
        '__version__ = "0.6"',
        f'__version__ = "{D2_FALLBACK_VERSION}"',
        "report the fallback by its version",
    ),
]


def log(msg):
    print(f"[bootstrap] {msg}", flush=True)


def run(cmd):
    log("$ " + " ".join(cmd))
    subprocess.check_call(cmd)


def pip(*args):
    run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args])


def probe(code):
    """
    Run ``code`` in a fresh interpreter (imports must not stick to this process).

    Returns (success, the last line of stdout) on success, (False, stdout + stderr) otherwise;
    stderr is kept apart because imports print warnings there.
    """
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if res.returncode == 0:
        lines = res.stdout.strip().splitlines()
        return True, lines[-1] if lines else ""
    return False, (res.stdout + res.stderr).strip()


def detectron2_version():
    ok, out = probe("import detectron2; print(detectron2.__version__)")
    return out if ok else None


def fallback_revision():
    """The revision of our fallback detectron2 if that is what is installed, else None."""
    ok, out = probe("from detectron2 import _C; print(getattr(_C, 'FALLBACK_REVISION', ''))")
    return int(out) if ok and out.isdigit() else None


def torch_pair_works():
    return probe(
        "import torch, torchvision\n"
        "b = torch.tensor([[0., 0., 1., 1.]])\n"
        "torchvision.ops.nms(b, torch.ones(1), 0.5)\n"
        "print(torch.__version__, torchvision.__version__)"
    )


def index_url():
    """The index pip is configured with (users may point pip at a mirror)."""
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        res = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
            capture_output=True,
            text=True,
        )
        url = res.stdout.strip() if res.returncode == 0 else ""
    if not url:
        from pip._internal.models.index import PyPI  # pip's own default index

        url = PyPI.simple_url
    return url.rstrip("/")


def fetch_detectron2_sdist():
    """Download the release sdist once into .cache/ and check its sha256."""
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, D2_SDIST_FILE)
    if not os.path.exists(path):
        page_url = f"{index_url()}/{D2_SDIST_PROJECT}/"
        log(f"looking up {D2_SDIST_FILE} at {page_url}")
        page = urllib.request.urlopen(page_url, timeout=120).read().decode()
        links = [
            urllib.parse.urljoin(page_url, href)
            for href in re.findall(r'href="([^"]+)"', page)
            if D2_SDIST_FILE in href
        ]
        if not links:
            sys.exit(f"[bootstrap] {D2_SDIST_FILE} is not listed at {page_url}")
        tmp = path + ".part"
        with urllib.request.urlopen(links[0].split("#")[0], timeout=300) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
        os.replace(tmp, path)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if digest != D2_SDIST_SHA256:
        os.remove(path)
        sys.exit(
            f"[bootstrap] sha256 mismatch for {D2_SDIST_FILE}: got {digest}, "
            f"expected {D2_SDIST_SHA256}. The file was removed; run again, and if it persists "
            "the index serves a different file: install detectron2 yourself."
        )
    log(f"{D2_SDIST_FILE}: sha256 verified")
    return path


def render_template(name, **values):
    """The text of ``TEMPLATES/name`` with its ``$key`` placeholders replaced by ``values``."""
    with open(os.path.join(TEMPLATES, name)) as f:
        return string.Template(f.read()).substitute(values)


def install_detectron2_fallback():
    sdist = fetch_detectron2_sdist()
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(sdist) as tar:
            # The "data" filter refuses absolute paths and links out of the tree where available.
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, **safe)
        src = os.path.join(tmp, "pb1-detectron2-0.6")
        for rel, old, new, why in D2_PATCHES:
            fpath = os.path.join(src, rel)
            text = open(fpath).read()
            if old not in text:
                sys.exit(f"[bootstrap] patch target not found in {rel}: {old!r}")
            open(fpath, "w").write(text.replace(old, new))
            log(f"patched {rel}: {why}")
        with open(os.path.join(src, "detectron2", "_C.py"), "w") as f:
            f.write(render_template("detectron2_C.py.in", revision=D2_FALLBACK_REVISION))
        with open(os.path.join(src, "setup.py"), "w") as f:
            f.write(render_template("detectron2_setup.py.in", version=D2_FALLBACK_VERSION))
        os.remove(os.path.join(src, "setup.cfg"))
        shutil.rmtree(os.path.join(src, "pb1_detectron2.egg-info"), ignore_errors=True)
        pip("--no-build-isolation", "--no-deps", src)
    log(
        f"WARNING: installed detectron2 {D2_FALLBACK_VERSION}: the official v0.6 Python "
        "sources without compiled ops (enough for Faster/Mask R-CNN, RetinaNet, FCOS). "
        "See README.md for the full build."
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dev", action="store_true", help="also install test/style tools")
    args = parser.parse_args()
    req = os.path.join(ROOT, "requirements")
    log(f"environment: {sys.prefix}")

    # setuptools<81 first: detectron2.model_zoo imports pkg_resources, and the fallback build
    # runs without build isolation.
    pip("-q", "-r", os.path.join(req, "base.txt"))

    d2 = detectron2_version()
    if d2 == D2_FALLBACK_VERSION and fallback_revision() != D2_FALLBACK_REVISION:
        log(f"updating SharedKD's own fallback detectron2 to revision {D2_FALLBACK_REVISION}")
        install_detectron2_fallback()
    elif d2 is not None:
        log(f"detectron2 {d2} is importable: keeping it and its torch")
    else:
        ok, out = torch_pair_works()
        if ok:
            log(f"torch/torchvision already work ({out}): keeping them")
        else:
            log("installing the pinned torch/torchvision pair (several GB the first time)")
            # torch asks for a recent setuptools; keep it below 81 in the same resolve, since
            # detectron2.model_zoo imports pkg_resources.
            pip("-r", os.path.join(req, "torch.txt"), "setuptools<81")
            ok, out = torch_pair_works()
            if not ok:
                sys.exit(f"[bootstrap] torch/torchvision do not work after install:\n{out}")
        install_detectron2_fallback()
        d2 = detectron2_version()
        if d2 is None:
            sys.exit("[bootstrap] detectron2 does not import after the fallback install")

    if args.dev:
        pip("-q", "-r", os.path.join(req, "dev.txt"))
    pip("-q", "--no-build-isolation", "--no-deps", "-e", ROOT)
    ok, out = probe("import shared_kd, detectron2; print(detectron2.__version__)")
    if not ok:
        sys.exit(f"[bootstrap] `import shared_kd` fails after install:\n{out}")
    log(f"ready: detectron2 {out}, shared_kd installed in editable mode")


if __name__ == "__main__":
    main()
