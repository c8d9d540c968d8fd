#!/usr/bin/env python
"""SharedKD: knowledge distillation for detectron2 detectors (Shared-KD and M-KD)."""

import os

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = "projects/SharedKD"


def read_requirements(name):
    """Requirement lines of ``requirements/<name>`` (comments and blanks dropped)."""
    with open(os.path.join(ROOT, "requirements", name)) as f:
        return [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]


setup(
    name="shared_kd",
    version="0.1.0",
    description="Shared-KD and M-KD knowledge distillation for detectron2 detectors",
    long_description=open(os.path.join(ROOT, "README.md")).read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.8",
    package_dir={"": PACKAGE_ROOT},
    packages=find_packages(PACKAGE_ROOT),
    # torch and detectron2 are deliberately absent: a user's existing (CUDA) builds must win.
    # tools/bootstrap.py installs them on a machine that has neither.
    install_requires=read_requirements("base.txt"),
    extras_require={
        "torch": read_requirements("torch.txt"),
        "dev": read_requirements("dev.txt"),
    },
)
