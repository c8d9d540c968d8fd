"""
``prepare``: the folder of wheels (and detectron2's sdist) the GPU machine lacks, its
``MANIFEST.json``, and :func:`check_prepared`, the offline check that the set is complete.

What is carried comes from the project's requirement files (:mod:`.requirements`) less the GPU
machine's preinstalled packages (:mod:`.device`): :func:`plan`.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from .common import DEFAULT_DEST, ROOT, canonical, load_bootstrap, log, packaging_module, sha256
from .device import (
    DEVICE_PLATFORMS,
    DEVICE_PYTHON,
    TRAVEL_LIMIT_MB,
    device_packages,
    marker_environment,
    supported_tags,
)
from .requirements import check_requirements

MANIFEST = "MANIFEST.json"
GENERATOR_VERSION = 2  # bump when what prepare selects changes (2: requirements/dev.txt read)
# Carried although the device has a version: requirements/base.txt bounds it (setuptools<81:
# detectron2.model_zoo imports pkg_resources) and the device's version is not known.
ALWAYS_CARRY = {"setuptools"}


def plan(requirements=None, device=None):
    """
    Split the check's requirement lines (default: :func:`~.requirements.check_requirements`)
    into (carried, present): those prepare downloads, with their dependencies, and those the GPU
    machine has (``device``, default :func:`~.device.device_packages`).
    """
    requirements = check_requirements() if requirements is None else requirements
    device = device_packages() if device is None else device
    requirement = packaging_module().requirements.Requirement
    carried, present = [], []
    for line in requirements:
        name = canonical(requirement(line).name)
        if name in device and name not in ALWAYS_CARRY:
            present.append(line)
        else:
            carried.append(line)
    return carried, present


def inputs_digest():
    """What prepare's result depends on; a manifest with another digest is redone."""
    text = json.dumps(
        [
            GENERATOR_VERSION,
            check_requirements(),
            sorted(device_packages()),
            sorted(ALWAYS_CARRY),
            DEVICE_PYTHON,
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()


def working_tree_mb():
    """MiB of what a `run` call sends besides carried folders: tracked + untracked, not ignored."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    total = 0
    for rel in out.decode().split("\0"):
        path = os.path.join(ROOT, rel)
        if rel and os.path.isfile(path) and not os.path.islink(path):
            total += os.path.getsize(path)
    return total / 2**20


def _pip(*args, quiet=True):
    cmd = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"]
    if quiet:
        cmd.append("-q")
    log("$ " + " ".join(cmd))
    subprocess.check_call(cmd)


def _is_pure(wheel_name):
    """A wheel for any Python 3 on any platform (py3-none-any)."""
    tags = packaging_module().utils.parse_wheel_filename(wheel_name)[3]
    return all(
        t.abi == "none" and t.platform == "any" and t.interpreter.startswith("py") for t in tags
    )


def _up_to_date(dest, manifest_path):
    if not os.path.exists(manifest_path):
        return None
    with open(manifest_path) as f:
        manifest = json.load(f)
    if manifest.get("inputs") == inputs_digest() and all(
        os.path.isfile(os.path.join(dest, e["file"]))
        and os.path.getsize(os.path.join(dest, e["file"])) == e["bytes"]
        for e in manifest["files"]
    ):
        return manifest
    return None


def prepare(dest=DEFAULT_DEST, force=False):
    """Fill ``dest`` with what the GPU machine lacks; returns the manifest."""
    dest = os.path.abspath(dest)
    manifest_path = os.path.join(dest, MANIFEST)
    manifest = None if force else _up_to_date(dest, manifest_path)
    if manifest is not None:
        log(f"{dest} is up to date ({manifest['total_mb']:.1f} MiB); --force to redo it")
        check_prepared(dest)
        return manifest

    device = device_packages()
    wanted, present = plan(device=device)
    log(f"the GPU machine has {present}; preparing {wanted} and their dependencies")
    utils = packaging_module().utils

    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sharedkd-wheels-") as tmp:
        # Resolve (with this interpreter) and build: sdist-only projects become wheels here.
        _pip("wheel", "--wheel-dir", tmp, *wanted)
        keep = []
        for name in sorted(os.listdir(tmp)):
            project, version = utils.parse_wheel_filename(name)[:2]
            if project in device and project not in ALWAYS_CARRY:
                continue  # a dependency the GPU machine has
            if _is_pure(name):
                shutil.copy2(os.path.join(tmp, name), os.path.join(dest, name))
                keep.append(name)
                continue
            # A compiled wheel for this interpreter: fetch the GPU machine's build instead.
            before = set(os.listdir(dest))
            args = ["download", "--no-deps", "--only-binary=:all:", "--dest", dest]
            args += ["--python-version", "".join(map(str, DEVICE_PYTHON))]
            args += ["--implementation", "cp"]
            for abi in ("cp%d%d" % DEVICE_PYTHON, "abi3", "none"):
                args += ["--abi", abi]
            for plat in DEVICE_PLATFORMS:
                args += ["--platform", plat]
            _pip(*args, f"{project}=={version}")
            keep += sorted(set(os.listdir(dest)) - before) or [
                f
                for f in os.listdir(dest)
                if f.endswith(".whl") and utils.parse_wheel_filename(f)[0] == project
            ]
    sdist = load_bootstrap().fetch_detectron2_sdist()  # cached in .cache/, sha256-checked
    shutil.copy2(sdist, os.path.join(dest, os.path.basename(sdist)))
    keep.append(os.path.basename(sdist))
    for name in os.listdir(dest):  # older versions: one of each project only
        if name not in keep and name != MANIFEST:
            os.remove(os.path.join(dest, name))

    files = [
        {
            "file": name,
            "bytes": os.path.getsize(os.path.join(dest, name)),
            "sha256": sha256(os.path.join(dest, name)),
        }
        for name in sorted(keep)
    ]
    manifest = {
        "inputs": inputs_digest(),
        "python": "%d.%d" % DEVICE_PYTHON,
        "platform": "manylinux x86_64",
        "device_has": present,
        "carried_requirements": wanted,
        "files": files,
        "total_mb": sum(e["bytes"] for e in files) / 2**20,
    }
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=2)
    check_prepared(dest)
    return manifest


def _wheel_metadata(path):
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(name).decode("utf-8", "replace")
    head = text.split("\n\n", 1)[0]
    fields = {}
    for line in head.splitlines():
        if ": " in line:
            key, value = line.split(": ", 1)
            fields.setdefault(key, []).append(value)
    return fields


def check_prepared(dest=DEFAULT_DEST):
    """
    Check, without network, that ``dest`` and the GPU machine's packages satisfy the check's
    requirements (:func:`~.requirements.check_requirements`) and every carried wheel's
    dependencies, for Python 3.12 on manylinux x86_64: every wheel installs there, one version
    per project, the detectron2 sdist is the pinned one, and the folder plus the working tree
    fit one `run` call. Raises AssertionError naming what is wrong; returns a summary.
    """
    pk = packaging_module()
    dest = os.path.abspath(dest)
    env = marker_environment()
    supported = supported_tags()
    device = device_packages()
    problems = []
    carried = {}  # project -> version
    wheels = sorted(f for f in os.listdir(dest) if f.endswith(".whl"))
    requirements = [pk.requirements.Requirement(line) for line in check_requirements()]
    for name in wheels:
        project, version, _, tags = pk.utils.parse_wheel_filename(name)
        if project in carried:
            problems.append(f"two versions of {project}: pip would refuse the set")
        carried[project] = version
        if not tags & supported:
            problems.append(f"{name} does not install on CPython 3.12 manylinux x86_64")
        meta = _wheel_metadata(os.path.join(dest, name))
        for line in meta.get("Requires-Dist", []):
            req = pk.requirements.Requirement(line)
            if req.marker is None or req.marker.evaluate(env):
                requirements.append(req)
    for req in requirements:
        project = pk.utils.canonicalize_name(req.name)
        if project in carried:
            if not req.specifier.contains(carried[project], prereleases=True):
                problems.append(f"{req} is not met by the carried {project} {carried[project]}")
        elif project not in device:
            problems.append(f"{req}: neither carried nor on the GPU machine")
    bootstrap = load_bootstrap()
    sdist = os.path.join(dest, bootstrap.D2_SDIST_FILE)
    if not os.path.isfile(sdist):
        problems.append(f"{bootstrap.D2_SDIST_FILE} (the detectron2 fallback's source) is missing")
    elif sha256(sdist) != bootstrap.D2_SDIST_SHA256:
        problems.append(f"{bootstrap.D2_SDIST_FILE}: sha256 differs from bootstrap's pin")
    total_mb = sum(os.path.getsize(os.path.join(dest, f)) for f in os.listdir(dest)) / 2**20
    tree_mb = working_tree_mb()
    if total_mb + (tree_mb or 0) > TRAVEL_LIMIT_MB:
        problems.append(
            f"{total_mb:.1f} MiB prepared + {tree_mb:.1f} MiB working tree exceed the "
            f"{TRAVEL_LIMIT_MB} MiB a run call carries"
        )
    if problems:
        raise AssertionError("the prepared set is incomplete:\n  " + "\n  ".join(problems))
    summary = {
        "wheels": {p: str(v) for p, v in sorted(carried.items())},
        "sdist": bootstrap.D2_SDIST_FILE,
        "total_mb": total_mb,
        "working_tree_mb": tree_mb,
    }
    log(
        f"{dest}: complete for Python 3.12 manylinux x86_64: {len(wheels)} wheels + the "
        f"detectron2 sdist, {total_mb:.1f} MiB (working tree {tree_mb or 0:.1f} MiB; limit "
        f"{TRAVEL_LIMIT_MB} MiB together)"
    )
    return summary
