"""
The GPU machine prepare fills a folder for: nvidia-h200 in the device library's KINDS.md (read
2026-11-17). Its Python and platform are here; its preinstalled packages are the data file
``device_packages.txt`` beside this module (:func:`device_packages`).
"""

import os
import re

from .common import HERE, canonical, packaging_module

DEVICE_PYTHON = (3, 12)
DEVICE_PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in range(39, 16, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]
DEVICE_PACKAGES_FILE = os.path.join(HERE, "device_packages.txt")
# What one `run` call may carry: the working tree and the carried folders together.
TRAVEL_LIMIT_MB = 64

_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")


def device_packages(path=None):
    """
    The GPU machine's preinstalled projects, as canonical names: what prepare leaves out. Read
    from ``path`` (default :data:`DEVICE_PACKAGES_FILE`): one name per line, ``#`` comments.
    """
    path = path or DEVICE_PACKAGES_FILE
    names = set()
    with open(path) as f:
        for number, raw in enumerate(f, 1):
            line = raw.split("#")[0].strip()
            if not line:
                continue
            if not _NAME.fullmatch(line):
                raise ValueError(f"{path}:{number}: {line!r} is not one project name")
            names.add(canonical(line))
    return names


def marker_environment():
    """PEP 508 marker values of the GPU machine's interpreter (for Requires-Dist markers)."""
    return {
        "python_version": "%d.%d" % DEVICE_PYTHON,
        "python_full_version": "%d.%d.3" % DEVICE_PYTHON,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }


def supported_tags():
    """The wheel tags that install on the GPU machine's CPython 3.12, manylinux x86_64."""
    tags = packaging_module().tags
    interpreter = "cp%d%d" % DEVICE_PYTHON
    return set(
        tags.cpython_tags(
            DEVICE_PYTHON, abis=[interpreter, "abi3", "none"], platforms=DEVICE_PLATFORMS
        )
    ) | set(tags.compatible_tags(DEVICE_PYTHON, interpreter, platforms=DEVICE_PLATFORMS))
