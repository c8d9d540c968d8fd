"""
What the check needs installed, read from the project's requirement files (``requirements/``),
the same files ``tools/bootstrap.py`` installs with ``pip -r``: prepare carries what of this the
GPU machine lacks, and :func:`~.prepare.check_prepared` checks every line of it.
"""

import os

from .common import ROOT, canonical, packaging_module

REQUIREMENTS_DIR = os.path.join(ROOT, "requirements")

# (file in REQUIREMENTS_DIR, the projects the check takes from it; None: every line).
SOURCES = (
    # detectron2 v0.6's and SharedKD's requirements besides torch: bootstrap installs them first.
    ("base.txt", None),
    # Part (a) runs pytest. The file's other tools (pytest-xdist, ruff, onnx, onnxruntime) serve
    # `make test`, style and export, which the check does not run.
    ("dev.txt", {"pytest"}),
)
# requirements/torch.txt is not read: bootstrap installs that pair only where no working
# torch/torchvision imports, and the GPU machine's own CUDA build is kept (as is any detectron2).


def read_requirements(path):
    """
    The requirement lines of the pip requirements file ``path``, in order: comments and blank
    lines dropped, ``-r FILE`` included in place. Any other pip option is refused: this reader
    would otherwise drop it silently.
    """
    lines = []
    with open(path) as f:
        for raw in f:
            line = raw.split("#")[0].strip()
            if not line:
                continue
            if line.startswith(("-r ", "--requirement ", "--requirement=")):
                included = line.split("=", 1)[1] if "=" in line else line.split(None, 1)[1]
                lines += read_requirements(os.path.join(os.path.dirname(path), included.strip()))
            elif line.startswith("-"):
                raise ValueError(f"{path}: {line!r}: tools/gpu_check.py reads no pip options")
            else:
                lines.append(line)
    return lines


def check_requirements():
    """The requirement lines the check needs: :data:`SOURCES` read from :data:`REQUIREMENTS_DIR`."""
    requirement = packaging_module().requirements.Requirement
    out = []
    for name, take in SOURCES:
        path = os.path.join(REQUIREMENTS_DIR, name)
        lines = read_requirements(path)
        if take is not None:
            lines = [line for line in lines if canonical(requirement(line).name) in take]
            missing = set(take) - {canonical(requirement(line).name) for line in lines}
            if missing:
                raise ValueError(f"{path} names no {sorted(missing)}, which the check needs")
        out += lines
    return out
