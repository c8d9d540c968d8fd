#!/usr/bin/env python3
"""
SharedKD on the GPU machine, in two halves (``tools/gpu_check.sh`` calls this file).

``prepare`` (here, where a package index is reachable)::

    tools/gpu_check.sh --prepare [--dest .gpu_wheels] [--force]

downloads into ``.gpu_wheels/`` (git-ignored) every wheel and sdist the GPU machine lacks, for its
Python 3.12 on manylinux x86_64: the requirements of ``requirements/base.txt`` that are not in
its package list (:data:`DEVICE_PACKAGES`, from the device library's KINDS.md), with their own
dependencies, pure-Python sdists built into wheels here, and the detectron2 v0.6 sdist that
``tools/bootstrap.py`` installs as its fallback (fetched and sha256-checked by bootstrap itself).
It then checks that the set is complete (:func:`check_prepared`) and writes ``MANIFEST.json``; a
second run with the same inputs does nothing.

the check (there, without network; ``--device cpu`` is the smoke run on a CPU machine)::

    tools/gpu_check.sh [--out DIR] [--device auto|cuda|cpu] [--budget S] [--parts ...]

installs from ``.gpu_wheels/`` only (``tools/bootstrap.py`` with pip set to ``--no-index
--find-links``; skipped when everything already imports), then runs, each part in its own
processes:

- (a) ``tests``: the ``gpu`` pytest marker's tests (``tests/gpu``);
- (b) ``train``: ``train_net.py`` on the tiny shapes configs, a teacher then a Shared-KD student,
  with ``SOLVER.AMP.ENABLED True`` on CUDA: finite losses, the student's AP, iterations/s; then
  the LazyConfig pair (``.py`` teacher in the guides' bf16, ``.py`` student under detectron2's
  ``AMPTrainer``, ``train.amp.enabled=True``) from the same teacher weights;
- (c) ``bench``: ``tools/benchmark.py`` at COCO scale (R101-FPN -> R50-FPN, random weights,
  800x1333, batches of 2 and 8, AMP) for Faster R-CNN and RetinaNet, with the guides' forward in
  their reduced precision and in fp32 for reference, and peak memory beside the paper's Table 4;
- (d) ``cost``: ``tools/cost_report.py`` for the deployment table of ``docs/BENCHMARK.md`` (R101
  teacher, R50 and R18 students at 800x1333: parameters, GFLOPs, latency, peak memory).

It writes ``gpu_check.json``, ``gpu_check.md`` and ``gpu_check.log`` to ``--out`` (``$OUT`` when
set, else ``output/gpu_check``) after every part, so that a run stopped by a time limit still
leaves its report, and prints the markdown at the end. Each part gets a share of ``--budget``
seconds; a part that fails or runs out of time is reported and the next one still runs.

Standard library (and pip's vendored ``packaging``) only: it runs before anything is installed.
"""

import argparse
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DEST = os.path.join(ROOT, ".gpu_wheels")
MANIFEST = "MANIFEST.json"
GENERATOR_VERSION = 1  # bump when what prepare selects changes

# The GPU machine (nvidia-h200 in the device library's KINDS.md, read 2026-11-17).
DEVICE_PYTHON = (3, 12)
DEVICE_PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in range(39, 16, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]
# Its preinstalled Python packages: what prepare leaves out.
DEVICE_PACKAGES = """
    absl-py, accelerate, aiofiles, aiohappyeyeballs, aiohttp, aiosignal, annotated-doc, anyio,
    attrs, botorch, build, certifi, charset-normalizer, chex, click, cloudpickle, cmake, colorama,
    contourpy, coverage, cuda-bindings, cuda-core, cuda-pathfinder, cuda-toolkit, cupy-cuda13x,
    cycler, cython, diffrax, e3nn, einops, equinox, etils, execnet, filelock, flatbuffers, flax,
    fonttools, formulaic, frozenlist, fsspec, gpytorch, grpcio, h11, h5py, hf-xet, httpcore,
    httpx, huggingface-hub, humanize, hypothesis, idna, imageio, iniconfig, interface-meta, jax,
    jax-cuda13-pjrt, jax-cuda13-plugin, jaxlib, jaxtyping, jinja2, joblib, kiwisolver,
    lazy-loader, lightning, lightning-utilities, linear-operator, lineax, llvmlite, lxml,
    markdown, markdown-it-py, markupsafe, matplotlib, mdurl, meson, ml-dtypes, mpi4py, mpmath,
    msgpack, multidict, multipledispatch, mypy-extensions, nanobind, narwhals, networkx, ninja,
    numba, numba-cuda, numpy, numpyro, nvidia-cublas, nvidia-cuda-cupti, nvidia-cuda-nvrtc,
    nvidia-cuda-runtime, nvidia-cudnn-cu13, nvidia-cufft, nvidia-cufile, nvidia-curand,
    nvidia-cusolver, nvidia-cusparse, nvidia-cusparselt-cu13, nvidia-ml-py, nvidia-nccl-cu13,
    nvidia-nvjitlink, nvidia-nvshmem-cu13, nvidia-nvtx, onnx, onnx-ir, onnxruntime, onnxscript,
    opencv-python-headless, optax, opt-einsum, opt-einsum-fx, optimistix, orbax-checkpoint,
    packaging, pandas, pathspec, patsy, peft, pillow, pip, pluggy, portalocker, prometheus-client,
    propcache, protobuf, psutil, pyarrow, pybind11, py-cpuinfo, pygments, pyparsing,
    pyproject-hooks, pyre-extensions, pytest, pytest-benchmark, pytest-cov, pytest-mock,
    pytest-timeout, pytest-xdist, python-dateutil, pytorch-lightning, pyyaml, regex, requests,
    rich, sacrebleu, safetensors, scikit-build-core, scikit-image, scikit-learn, scipy, seaborn,
    sentencepiece, sentence-transformers, setuptools, shellingham, simplejson, six,
    sortedcontainers, statsmodels, sympy, tabulate, tensorboard, tensorboard-data-server,
    tensorstore, threadpoolctl, tifffile, tiktoken, timm, tokenizers, toolz, torch, torchaudio,
    torchdiffeq, torch-geometric, torchmetrics, torchvision, tqdm, transformers, treescope,
    triton, typer, typing-extensions, typing-inspect, urllib3, uvloop, wadler-lindig, werkzeug,
    wheel, wrapt, xarray, xxhash, yarl, zipp
"""
# Carried although the device has a version: requirements/base.txt bounds it (setuptools<81:
# detectron2.model_zoo imports pkg_resources) and the device's version is not known.
ALWAYS_CARRY = {"setuptools"}
# What one `run` call may carry: the working tree and the carried folders together.
TRAVEL_LIMIT_MB = 64

PAPER_TABLE4_GB = {"Shared-KD": 3.8, "SemCKD": 4.5}  # RetinaNet R101 -> R50, per GPU

# (b): the tiny shapes configs (paths from the repository root).
TRAIN_TEACHER = "configs/shapes/faster_rcnn_R34_FPN_tiny_teacher.yaml"
TRAIN_STUDENT = "configs/shapes/sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.yaml"
# The LazyConfig twin: its .py teacher takes the yaml teacher's weights (the same detector).
TRAIN_LAZY_STUDENT = "configs/shapes/sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.py"
# (c): family -> (COCO config, tiny config for the CPU smoke run)
BENCH_CONFIGS = {
    "retinanet": (
        "configs/COCO/sharedkd_retinanet_R101_to_R50_FPN_2x.yaml",
        "configs/shapes/sharedkd_retinanet_R34_to_R18_FPN_tiny.yaml",
    ),
    "faster_rcnn": (
        "configs/COCO/sharedkd_faster_rcnn_R101_to_R50_FPN_2x.yaml",
        "configs/shapes/sharedkd_faster_rcnn_R34_to_R18_FPN_tiny.yaml",
    ),
}
PARTS = ("install", "tests", "train", "bench", "cost")
# (d): the deployment table of docs/BENCHMARK.md: (name, COCO config, tiny config for the smoke run)
COST_MODELS = [
    (
        "teacher R101",
        "model_zoo:COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml",
        "configs/shapes/faster_rcnn_R34_FPN_tiny_teacher.yaml",
    ),
    (
        "student R50",
        "configs/COCO/faster_rcnn_R50_FPN_2x.yaml",
        "configs/shapes/faster_rcnn_R18_FPN_tiny.yaml",
    ),
    (
        "student R18",
        "configs/COCO/faster_rcnn_R18_FPN_2x.yaml",
        "configs/shapes/faster_rcnn_R18_FPN_tiny.py",
    ),
]


def log(msg):
    print(f"[gpu_check] {msg}", flush=True)


def canonical(name):
    """A project name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def device_packages():
    return {canonical(n) for n in re.split(r"[,\s]+", DEVICE_PACKAGES) if n}


def load_bootstrap():
    """tools/bootstrap.py as a module: its detectron2 sdist, sha256 and install steps."""
    spec = importlib.util.spec_from_file_location(
        "sharedkd_bootstrap", os.path.join(ROOT, "tools", "bootstrap.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _packaging():
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


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def base_requirements():
    """The requirement lines of requirements/base.txt."""
    with open(os.path.join(ROOT, "requirements", "base.txt")) as f:
        return [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]


def _inputs_digest():
    text = json.dumps(
        [GENERATOR_VERSION, base_requirements(), sorted(device_packages()), DEVICE_PYTHON]
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
    tags = _packaging().utils.parse_wheel_filename(wheel_name)[3]
    return all(
        t.abi == "none" and t.platform == "any" and t.interpreter.startswith("py") for t in tags
    )


# ----------------------------------------------------------------------------------------------
# prepare


def prepare(dest=DEFAULT_DEST, force=False):
    """Fill ``dest`` with what the GPU machine lacks; returns the manifest."""
    dest = os.path.abspath(dest)
    manifest_path = os.path.join(dest, MANIFEST)
    if not force and os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
        if manifest.get("inputs") == _inputs_digest() and all(
            os.path.isfile(os.path.join(dest, e["file"]))
            and os.path.getsize(os.path.join(dest, e["file"])) == e["bytes"]
            for e in manifest["files"]
        ):
            log(f"{dest} is up to date ({manifest['total_mb']:.1f} MiB); --force to redo it")
            check_prepared(dest)
            return manifest

    device = device_packages()
    wanted, present = [], []
    req_mod = _packaging().requirements
    for line in base_requirements():
        name = canonical(req_mod.Requirement(line).name)
        if name in device and name not in ALWAYS_CARRY:
            present.append(line)
        else:
            wanted.append(line)
    log(f"the GPU machine has {present}; preparing {wanted} and their dependencies")

    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sharedkd-wheels-") as tmp:
        # Resolve (with this interpreter) and build: sdist-only projects become wheels here.
        _pip("wheel", "--wheel-dir", tmp, *wanted)
        keep = []
        for name in sorted(os.listdir(tmp)):
            project, version = _packaging().utils.parse_wheel_filename(name)[:2]
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
                if f.endswith(".whl") and _packaging().utils.parse_wheel_filename(f)[0] == project
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
            "sha256": _sha256(os.path.join(dest, name)),
        }
        for name in sorted(keep)
    ]
    manifest = {
        "inputs": _inputs_digest(),
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
    Check, without network, that ``dest`` and the GPU machine's packages satisfy
    requirements/base.txt and every carried wheel's dependencies, for Python 3.12 on manylinux
    x86_64: every wheel installs there, one version per project, the detectron2 sdist is the
    pinned one, and the folder plus the working tree fit one `run` call. Raises AssertionError
    naming what is wrong; returns a summary.
    """
    pk = _packaging()
    dest = os.path.abspath(dest)
    env = {
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
    interpreter = "cp%d%d" % DEVICE_PYTHON
    supported = set(
        pk.tags.cpython_tags(
            DEVICE_PYTHON, abis=[interpreter, "abi3", "none"], platforms=DEVICE_PLATFORMS
        )
    ) | set(pk.tags.compatible_tags(DEVICE_PYTHON, interpreter, platforms=DEVICE_PLATFORMS))
    device = device_packages()
    problems = []
    carried = {}  # project -> version
    wheels = sorted(f for f in os.listdir(dest) if f.endswith(".whl"))
    requirements = [pk.requirements.Requirement(line) for line in base_requirements()]
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
    elif _sha256(sdist) != bootstrap.D2_SDIST_SHA256:
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


# ----------------------------------------------------------------------------------------------
# the check


class Check:
    """The check's state: options, the device, the time budget, the report and the log."""

    # Share of the remaining budget each part leaves to the parts after it: a part that hangs
    # must not starve them.
    LEAVE_FOR_LATER = {"install": 0.7, "tests": 0.6, "train": 0.5, "bench": 0.15, "cost": 0.0}

    def __init__(self, args, device):
        self.args = args
        self.device = device
        self.py = args.python or sys.executable
        self.out = os.path.abspath(args.out)
        self.work = os.path.abspath(args.work)
        os.makedirs(self.out, exist_ok=True)
        shutil.rmtree(self.work, ignore_errors=True)
        os.makedirs(self.work)
        self.start = time.monotonic()
        self.log_path = os.path.join(self.out, "gpu_check.log")
        open(self.log_path, "w").close()
        self.report = {
            "version": 1,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "device": device,
            "budget_s": args.budget,
            "settings": {k: v for k, v in vars(args).items() if k.startswith(("train", "bench"))},
            "parts": {},
        }

    def elapsed(self):
        return time.monotonic() - self.start

    def remaining(self):
        return self.args.budget - self.elapsed()

    def allowance(self, part):
        """Seconds part may use now: the budget left, less what the later parts keep."""
        return self.remaining() * (1.0 - self.LEAVE_FOR_LATER[part])

    def run(self, name, cmd, timeout, env=None):
        """
        Run ``cmd`` from the repository root in its own process group (on a timeout the whole
        group is killed: data-loader and memory-measurement children too); its output goes to
        the log. Returns rc (None on a timeout), output, its tail and the seconds taken.
        """
        timeout = max(1.0, timeout)
        merged = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        t0 = time.monotonic()
        with open(self.log_path, "a") as logf:
            logf.write(f"\n===== {name}: $ {' '.join(cmd)}\n")
            logf.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=merged,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            try:
                output, _ = proc.communicate(timeout=timeout)
                rc, timed_out = proc.returncode, False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                output, _ = proc.communicate()
                rc, timed_out = None, True
            logf.write(output)
            logf.write(f"\n===== {name}: rc {rc}{' (timed out)' if timed_out else ''}\n")
        seconds = time.monotonic() - t0
        log(f"{name}: rc {rc}{' (timed out)' if timed_out else ''} in {seconds:.0f} s")
        return {
            "rc": rc,
            "timed_out": timed_out,
            "seconds": round(seconds, 1),
            "output": output,
            "tail": "\n".join(output.strip().splitlines()[-15:]),
        }

    def python(self, name, args, timeout, env=None):
        return self.run(name, [self.py, *args], timeout, env)

    def save(self):
        self.report["elapsed_s"] = round(self.elapsed(), 1)
        parts = self.report["parts"]
        self.report["ok"] = bool(parts) and all(p.get("ok") for p in parts.values())
        with open(os.path.join(self.out, "gpu_check.json"), "w") as f:
            json.dump(self.report, f, indent=2)
        with open(os.path.join(self.out, "gpu_check.md"), "w") as f:
            f.write(format_markdown(self.report))

    def part(self, name, fn):
        """Run part ``name`` (``fn()`` returns its report) unless deselected or out of time."""
        if name not in self.args.parts:
            return
        if self.remaining() < 5:
            self.report["parts"][name] = {"ok": False, "skipped": "time budget spent"}
        else:
            log(f"--- {name} ({self.remaining():.0f} s of the budget left)")
            t0 = time.monotonic()
            try:
                result = fn()
            except Exception as e:  # a broken part must not lose the others' report
                result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            result["seconds"] = round(time.monotonic() - t0, 1)
            self.report["parts"][name] = result
        self.save()


# install -------------------------------------------------------------------------------------

ENV_PROBE = r"""
import json, platform, torch, torchvision
info = {"python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "cuda_available": torch.cuda.is_available()}
try:
    import detectron2, fvcore, hydra, iopath, omegaconf, pycocotools, yacs, shared_kd
    info.update(detectron2=detectron2.__version__, shared_kd=shared_kd.__file__, imports_ok=True)
except Exception as e:
    info.update(imports_ok=False, import_error=f"{type(e).__name__}: {e}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, capability=f"{p.major}.{p.minor}",
                gpu_memory_gib=p.total_memory / 2**30, cuda=torch.version.cuda,
                cudnn=torch.backends.cudnn.version(),
                bf16=torch.cuda.is_bf16_supported(),
                tf32_conv=torch.backends.cudnn.allow_tf32,
                tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
print("ENV " + json.dumps(info))
"""


def probe_environment(check):
    """Versions, the GPU, and whether SharedKD and its requirements import (from this tree)."""
    res = check.python("environment", ["-c", ENV_PROBE], 180)
    env = {"imports_ok": False, "error": res["tail"]}
    for line in res["output"].splitlines():
        if line.startswith("ENV "):
            env = json.loads(line[4:])
    check.report["environment"] = env
    return env


def _installed(env):
    here = os.path.join(ROOT, "projects", "")
    return env.get("imports_ok") and env.get("shared_kd", "").startswith(here)


def part_install(check):
    env = probe_environment(check)
    if _installed(env):
        return {"ok": True, "action": "already installed", "detail": env.get("detectron2", "")}
    wheels = os.path.abspath(check.args.wheels)
    if not os.path.isdir(wheels):
        return {
            "ok": False,
            "error": f"SharedKD does not import ({env.get('import_error')}) and {wheels} does "
            "not exist: run `tools/gpu_check.sh --prepare` where a package index is reachable, "
            "and carry that folder",
        }
    # bootstrap reads the detectron2 sdist from .cache/ when it is there (and checks it).
    bootstrap = load_bootstrap()
    os.makedirs(bootstrap.CACHE, exist_ok=True)
    shutil.copy2(os.path.join(wheels, bootstrap.D2_SDIST_FILE), bootstrap.CACHE)
    offline = {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": wheels,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_CACHE_DIR": "1",
    }
    target = check.args.install_target or (None if _site_writable(check) else TARGET)
    if target is None:
        action = f"tools/bootstrap.py offline from {os.path.relpath(wheels, ROOT)}"
        res = check.python(
            "bootstrap (offline)", ["tools/bootstrap.py"], check.allowance("install"), offline
        )
    else:
        action = f"into {target} (on PYTHONPATH), offline from {wheels}"
        res = _install_into(check, target, wheels, offline)
    env = probe_environment(check)
    return {
        "ok": res["rc"] == 0 and bool(_installed(env)),
        "action": action,
        "detail": (env.get("import_error") or env.get("detectron2", ""))
        if res["rc"] == 0
        else res["tail"],
    }


# Where the install goes when the interpreter's site-packages is read-only.
TARGET = "/tmp/sharedkd-site"
SITE_PROBE = "import os, sysconfig; print(os.access(sysconfig.get_paths()['purelib'], os.W_OK))"
FALLBACK_PROBE = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('bootstrap', 'tools/bootstrap.py')\n"
    "b = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(b)\n"
    "b.install_detectron2_fallback()\n"
)


def _site_writable(check):
    res = subprocess.run([check.py, "-c", SITE_PROBE], capture_output=True, text=True)
    return res.stdout.strip() == "True"


def _install_into(check, target, wheels, offline):
    """
    The same install without writing to site-packages: every carried wheel into ``target``
    (``--no-deps``: the prepared set is complete), detectron2's fallback built by bootstrap's own
    function into it too, and ``target`` plus the project's package folder on PYTHONPATH for
    every later part (this process's environment is theirs).
    """
    files = sorted(os.path.join(wheels, f) for f in os.listdir(wheels) if f.endswith(".whl"))
    res = check.python(
        "pip --target (offline)",
        ["-m", "pip", "install", "-q", "--no-deps", "--upgrade", "--target", target, *files],
        check.allowance("install"),
        offline,
    )
    if res["rc"] != 0:
        return res
    paths = [target, os.path.join(ROOT, "projects", "SharedKD")]
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)  # setuptools<81 first, for the build
    return check.python(
        "detectron2 fallback (offline)",
        ["-c", FALLBACK_PROBE],
        check.allowance("install"),
        dict(offline, PIP_TARGET=target),
    )


# (a) tests -----------------------------------------------------------------------------------


def part_tests(check):
    junit = os.path.join(check.work, "junit.xml")
    res = check.python(
        "(a) gpu tests",
        ["-m", "pytest", "tests/gpu", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
        + ["--junitxml", junit],
        min(check.allowance("tests"), check.args.tests_timeout),
    )
    cases = []
    if os.path.exists(junit):
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcome, message = "passed", ""
            for kind in ("failure", "error", "skipped"):
                node = case.find(kind)
                if node is not None:
                    outcome = {"failure": "failed", "error": "error"}.get(kind, "skipped")
                    message = (node.get("message") or node.text or "")[:600]
            cases.append(
                {
                    "name": case.get("name"),
                    "outcome": outcome,
                    "seconds": float(case.get("time") or 0),
                    "message": message,
                }
            )
    counts = {
        k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")
    }
    # pytest exits 5 when every test was deselected, 0 when all passed or were skipped
    ok = res["rc"] == 0 and not counts["failed"] and not counts["error"]
    return {"ok": ok, "rc": res["rc"], "counts": counts, "cases": cases, "tail": res["tail"]}


# (b) train_net.py ---------------------------------------------------------------------------


def _metrics(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        pass
    return rows


def _speed(output):
    """detectron2's 'Overall training speed: N iterations in H:MM:SS (X s / it)'."""
    m = re.search(r"Overall training speed: (\d+) iterations in \S+ \(([\d.]+) s / it\)", output)
    return (int(m.group(1)), float(m.group(2))) if m else (None, None)


def _train_summary(run, out_dir):
    rows = _metrics(os.path.join(out_dir, "metrics.json"))
    train = [r for r in rows if "total_loss" in r]
    losses = {k for r in train for k in r if k.startswith("loss_") or k == "total_loss"}
    finite = bool(train) and all(
        math.isfinite(r[k]) for r in train for k in losses if isinstance(r.get(k), (int, float))
    )
    times = [r["time"] for r in train if isinstance(r.get("time"), (int, float))]
    iters, s_per_it = _speed(run["output"])
    # detectron2's own figure; without it (under 5 iterations), from the logged iteration times
    speed = 1.0 / s_per_it if s_per_it else (1.0 / statistics.median(times) if times else None)
    ap = next((r for r in reversed(rows) if "bbox/AP" in r), None)
    return {
        "ok": run["rc"] == 0 and finite,
        "rc": run["rc"],
        "timed_out": run["timed_out"],
        "seconds": run["seconds"],
        "iterations": (train[-1]["iteration"] + 1) if train else 0,
        "finite_losses": finite,
        "last_losses": {k: train[-1][k] for k in sorted(losses) if k in train[-1]} if train else {},
        "median_iter_s": statistics.median(times) if times else None,
        "iters_per_s": speed,
        "overall_iterations": iters,
        "ap": {k[len("bbox/") :]: v for k, v in ap.items() if k.startswith("bbox/")}
        if ap
        else None,
        "tail": run["tail"] if run["rc"] != 0 else "",
    }


def part_train(check):
    cuda = check.device == "cuda"
    iters = check.args.train_iters
    common = ["MODEL.DEVICE", check.device, "SOLVER.AMP.ENABLED", str(cuda)]
    if cuda:
        common += ["DATALOADER.NUM_WORKERS", "4"]
    else:  # the smoke run: few and small steps
        common += ["DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2"]
        common += ["SOLVER.WARMUP_ITERS", "2"]
    teacher_dir = os.path.join(check.work, "teacher")
    student_dir = os.path.join(check.work, "student")
    budget = check.allowance("train")
    t0 = time.monotonic()
    teacher = check.python(
        "(b) train_net.py teacher",
        ["train_net.py", "--config-file", TRAIN_TEACHER, "--overwrite"]
        + common
        + ["SOLVER.MAX_ITER", str(iters), "DATASETS.TEST", "()", "OUTPUT_DIR", teacher_dir],
        budget * 0.45,
    )
    result = {"amp": cuda, "teacher": _train_summary(teacher, teacher_dir)}
    if teacher["rc"] != 0:
        result["ok"] = False
        return result
    student = check.python(
        "(b) train_net.py Shared-KD student",
        ["train_net.py", "--config-file", TRAIN_STUDENT, "--overwrite"]
        + common
        + ["SOLVER.MAX_ITER", str(iters), "OUTPUT_DIR", student_dir]
        + ["MODEL.DISTILL.TEACHER.WEIGHTS", os.path.join(teacher_dir, "model_final.pth")],
        budget - (time.monotonic() - t0),
    )
    result["student"] = _train_summary(student, student_dir)
    lazy_dir = os.path.join(check.work, "lazy_student")
    lazy_common = [f"train.device={check.device}", f"train.amp.enabled={cuda}"]
    if cuda:
        lazy_common += ["dataloader.train.num_workers=4"]
    else:
        lazy_common += ["dataloader.train.num_workers=0", "dataloader.train.total_batch_size=2"]
    lazy = check.python(
        "(b) train_net.py Shared-KD student, LazyConfig (.py teacher and student)",
        ["train_net.py", "--config-file", TRAIN_LAZY_STUDENT, "--overwrite"]
        + lazy_common
        + [f"train.max_iter={iters}", f"train.output_dir={lazy_dir}"]
        + [f"model.guides.0.weights={os.path.join(teacher_dir, 'model_final.pth')}"],
        budget - (time.monotonic() - t0),
    )
    result["lazy_student"] = _train_summary(lazy, lazy_dir)
    result["ok"] = result["teacher"]["ok"] and result["student"]["ok"]
    result["ok"] = result["ok"] and result["student"]["ap"] is not None
    result["ok"] = result["ok"] and result["lazy_student"]["ok"]
    return result


# (c) benchmark -------------------------------------------------------------------------------


def part_bench(check):
    a = check.args
    runs = []
    # Table 4's setting first (RetinaNet, 2 images per GPU), the larger batches last.
    for batch in a.bench_batches:
        for family in a.bench_families:
            runs.append((family, batch))
    results, per_run = [], []
    for family, batch in runs:
        config = BENCH_CONFIGS[family][0 if a.bench_coco else 1]
        if per_run and check.remaining() < 1.2 * max(per_run):
            results.append({"family": family, "batch": batch, "ok": False, "skipped": "time"})
            continue
        out = os.path.join(check.work, f"bench_{family}_b{batch}.json")
        cmd = ["tools/benchmark.py", "--config-file", config, "--random-teacher"]
        cmd += ["--iters", str(a.bench_iters), "--warmup", str(a.bench_warmup), "--output", out]
        cmd += ["--synthetic", a.bench_size] + (["--amp"] if a.bench_amp else [])
        cmd += [] if a.bench_memory else ["--no-memory"]
        cmd += ["SOLVER.IMS_PER_BATCH", str(batch), "MODEL.DEVICE", check.device]
        res = check.python(f"(c) benchmark {family} x{batch}", cmd, check.remaining())
        per_run.append(res["seconds"])
        entry = {"family": family, "batch": batch, "config": config, "seconds": res["seconds"]}
        if res["rc"] == 0 and os.path.exists(out):
            with open(out) as f:
                full = json.load(f)
            entry.update(_bench_summary(full))
        else:
            entry.update(ok=False, rc=res["rc"], timed_out=res["timed_out"], tail=res["tail"])
        results.append(entry)
    return {
        "ok": bool(results) and all(r.get("ok") for r in results),
        "amp": a.bench_amp,
        "size": a.bench_size,
        "coco_scale": a.bench_coco,
        "iters": a.bench_iters,
        "warmup": a.bench_warmup,
        "runs": results,
    }


# (d) inference cost ---------------------------------------------------------------------------


def part_cost(check):
    """tools/cost_report.py: the teacher and two students at COCO scale (random weights)."""
    a = check.args
    out = os.path.join(check.work, "cost")
    cmd = ["tools/cost_report.py", "--device", check.device, "--output-dir", out]
    for name, coco, tiny in COST_MODELS:
        cmd += ["--model", name, coco if a.bench_coco else tiny, "-"]
    if a.bench_coco:
        cmd += ["--synthetic", a.bench_size, "--num-images", "2", "--latency-runs", "20"]
    else:  # the smoke run
        cmd += ["--synthetic", "128x128", "--num-images", "1", "--latency-runs", "2"]
    res = check.python("(d) cost report", cmd, check.allowance("cost"))
    result = {"ok": res["rc"] == 0, "rc": res["rc"], "seconds": res["seconds"]}
    if res["rc"] == 0 and os.path.exists(os.path.join(out, "cost.json")):
        with open(os.path.join(out, "cost.json")) as f:
            result["rows"] = json.load(f)
        with open(os.path.join(out, "cost.md")) as f:
            result["markdown"] = f.read()
    else:
        result.update(ok=False, tail=res["tail"])
    return result


def _bench_summary(r):
    t = {k: v["median_s"] for k, v in r["timings"].items()}
    mem = {k: (v or {}).get("peak_bytes") for k, v in r["memory"].items()}
    reserved = {k: (v or {}).get("reserved_bytes") for k, v in r["memory"].items()}
    finite = all(math.isfinite(v) for v in r["final_losses"].values())
    b, b32 = t.get("teacher_forward"), t.get("teacher_forward_fp32")
    return {
        "ok": finite,
        "finite_losses": finite,
        "final_losses": r["final_losses"],
        "median_ms": {k: v * 1e3 for k, v in t.items()},
        "guide_precision": r.get("guide_precision"),
        "guide_saving": (1 - b / b32) if b and b32 else None,
        "peak_bytes": mem,
        "reserved_bytes": reserved,
        "memory_kind": next((v["kind"] for v in r["memory"].values() if v), None),
        "targets": {
            k: {"value": v["value"], "limit": v["limit"], "passed": v["passed"]}
            for k, v in r["targets"].items()
        },
        "image_sizes": r["image_sizes"][:1],
        "device_name": r["device_name"],
    }


# report --------------------------------------------------------------------------------------


def _fmt(v, spec="{:.1f}", none="-"):
    return none if v is None else spec.format(v)


def format_markdown(report):
    env = report.get("environment", {})
    parts = report["parts"]
    lines = ["# SharedKD GPU check", ""]
    if env.get("gpu"):
        lines.append(
            f"Device: {env['gpu']} (sm {env.get('capability')}, "
            f"{env.get('gpu_memory_gib', 0):.0f} GiB); torch {env.get('torch')} (CUDA "
            f"{env.get('cuda')}, cuDNN {env.get('cudnn')}, TF32 conv {env.get('tf32_conv')}), "
            f"torchvision {env.get('torchvision')}, detectron2 {env.get('detectron2')}, Python "
            f"{env.get('python')}."
        )
    elif env.get("torch"):
        lines.append(
            f"Device: CPU ({report.get('device')}; smoke run); torch {env.get('torch')}, "
            f"detectron2 {env.get('detectron2')}, Python {env.get('python')}."
        )
    if env and not env.get("imports_ok"):
        why = env.get("import_error") or env.get("error") or ""
        lines.append(f"SharedKD does not import: {why.strip().splitlines()[-1:]}")
    lines += [
        f"Started {report['started']}; {report.get('elapsed_s', 0):.0f} s of a "
        f"{report['budget_s']:.0f} s budget. Overall: "
        f"**{'PASS' if report.get('ok') else 'FAIL'}**.",
        "",
        "| part | result | seconds | summary |",
        "|---|---|---:|---|",
    ]
    for name in PARTS:
        p = parts.get(name)
        if p is None:
            continue
        result = "skipped" if p.get("skipped") else ("ok" if p.get("ok") else "FAIL")
        lines.append(
            f"| {name} | {result} | {_fmt(p.get('seconds'), '{:.0f}')} | {_summary(name, p)} |"
        )
    if "tests" in parts and parts["tests"].get("cases"):
        lines += ["", "## (a) `gpu` tests", "", "| test | outcome | s |", "|---|---|---:|"]
        for c in parts["tests"]["cases"]:
            lines.append(f"| {c['name']} | {c['outcome']} | {c['seconds']:.1f} |")
        for c in parts["tests"]["cases"]:
            if c["outcome"] in ("failed", "error"):
                msg = c["message"].replace("\n", " ")[:400]
                lines.append(f"\n- **{c['name']}**: {msg}")
    if "train" in parts and "teacher" in parts["train"]:
        lines += _train_lines(parts["train"])
    if "bench" in parts and parts["bench"].get("runs"):
        lines += _bench_lines(parts["bench"])
    if "cost" in parts and parts["cost"].get("markdown"):
        lines += ["", "## (d) `tools/cost_report.py`, inference cost (random weights)", ""]
        lines += [parts["cost"]["markdown"].rstrip()]
    errors = _errors(parts)
    if errors:
        lines += ["", "## Errors (the ends of their output; all of it in gpu_check.log)", ""]
        for where, text in errors:
            lines += [f"{where}:", "```", text[-2000:], "```"]
    return "\n".join(lines) + "\n"


def _errors(parts):
    """(where, text) of every failure in the report, nested runs included."""
    out = []
    for name, p in parts.items():
        if p.get("error"):
            out.append((name, p["error"]))
        elif not p.get("ok") and p.get("tail"):
            out.append((name, p["tail"]))
        for role in ("teacher", "student", "lazy_student"):
            if (p.get(role) or {}).get("tail"):
                out.append((f"{name}: {role}", p[role]["tail"]))
        for r in p.get("runs", []):
            if r.get("tail"):
                out.append((f"{name}: {r['family']} x{r['batch']}", r["tail"]))
    return out


def _summary(name, p):
    if p.get("skipped"):
        return p["skipped"]
    if p.get("error"):
        return p["error"].splitlines()[0][:120]
    if name == "install":
        detail = (p.get("detail") or "").strip().splitlines()
        return p.get("action", "") + (f": {detail[-1][:80]}" if detail else "")
    if name == "tests":
        c = p.get("counts", {})
        return ", ".join(f"{v} {k}" for k, v in c.items() if v) or "no tests ran"
    if name == "train":
        s = p.get("student") or {}
        lazy = p.get("lazy_student") or {}
        ap = (s.get("ap") or {}).get("AP")
        return (
            f"student {s.get('iterations', 0)} it, {_fmt(s.get('iters_per_s'))} it/s, AP "
            f"{_fmt(ap)}, losses {'finite' if s.get('finite_losses') else 'NOT finite'}"
            + (" (AMP)" if p.get("amp") else "")
            + f"; .py student {lazy.get('iterations', 0)} it, losses "
            + ("finite" if lazy.get("finite_losses") else "NOT finite")
        )
    if name == "bench":
        runs = p.get("runs", [])
        done = sum(bool(r.get("ok")) for r in runs)
        return f"{done}/{len(runs)} configurations at {p.get('size')}" + (
            " with AMP" if p.get("amp") else ""
        )
    if name == "cost":
        rows = p.get("rows") or []
        return ", ".join(
            f"{r['model']} {r['gflops']['mean']:.0f} GFLOPs {r['latency_ms']['median']:.0f} ms"
            for r in rows
        )
    return ""


def _train_lines(p):
    lines = [
        "",
        "## (b) `train_net.py`, tiny Shared-KD (shapes)" + (" with AMP" if p.get("amp") else ""),
        "",
    ]
    lines += [
        "| run | iterations | it/s | median s/it | finite losses | last total loss | AP | AP50 |"
    ]
    lines += ["|---|---:|---:|---:|---|---:|---:|---:|"]
    for role in ("teacher", "student", "lazy_student"):
        s = p.get(role)
        if not s:
            continue
        ap = s.get("ap") or {}
        name = {"lazy_student": "student, .py configs"}.get(role, role)
        lines.append(
            f"| {name} | {s['iterations']} | {_fmt(s.get('iters_per_s'))} | "
            f"{_fmt(s.get('median_iter_s'), '{:.4f}')} | {s['finite_losses']} | "
            f"{_fmt(s['last_losses'].get('total_loss'), '{:.3f}')} | {_fmt(ap.get('AP'))} | "
            f"{_fmt(ap.get('AP50'))} |"
        )
    return lines


def _gb(b):
    return None if b is None else b / 1e9


def _bench_lines(p):
    lines = [
        "",
        f"## (c) `tools/benchmark.py`, {p['size']} inputs"
        + (", AMP" if p.get("amp") else "")
        + ", random weights",
        "",
        "Medians in ms. (b32): the guides' forward in fp32, as peers run a teacher; saving = "
        "1 - (b)/(b32). Targets: (c) <= 1.05 x ((a) + (b)) and (d) <= 3% of (c). Peak memory "
        "of a fresh process per model (CUDA: `torch.cuda.max_memory_allocated`; GB = 1e9 B). "
        "The targets are reported, not judged: the part passes when every configuration ran "
        "with finite losses.",
        "",
        "| family | batch | guides | (a) | (b) | (b32) | saving | (c) | (d) | (c)/((a)+(b)) | "
        "(d)/(c) | mem (a) GB | mem (c) GB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in p["runs"]:
        if not r.get("median_ms"):
            why = r.get("skipped") or f"rc {r.get('rc')}" + (
                " (timed out)" if r.get("timed_out") else ""
            )
            lines.append(f"| {r['family']} | {r['batch']} | FAILED: {why} |" + " |" * 10)
            continue
        ms, tg, mem = r["median_ms"], r["targets"], r["peak_bytes"]
        ov, ls = tg["overhead"], tg["loss_share"]
        lines.append(
            f"| {r['family']} | {r['batch']} | {r.get('guide_precision')} | "
            f"{ms['student_step']:.1f} | {ms['teacher_forward']:.1f} | "
            f"{_fmt(ms.get('teacher_forward_fp32'))} | {_fmt(r.get('guide_saving'), '{:.0%}')} | "
            f"{ms['distill_step']:.1f} | {ms['distill_losses']:.1f} | "
            f"{ov['value']:.3f} {'PASS' if ov['passed'] else 'FAIL'} | "
            f"{ls['value']:.1%} {'PASS' if ls['passed'] else 'FAIL'} | "
            f"{_fmt(_gb(mem.get('student_step')), '{:.2f}')} | "
            f"{_fmt(_gb(mem.get('distill_step')), '{:.2f}')} |"
        )
    table4 = next(
        (
            r
            for r in p["runs"]
            if r["family"] == "retinanet" and r["batch"] == 2 and r.get("peak_bytes")
        ),
        None,
    )
    if table4 and table4["peak_bytes"].get("distill_step") and p.get("coco_scale"):
        ours = _gb(table4["peak_bytes"]["distill_step"])
        setting = f"(c) at 2 images of {p['size']}" + (" with AMP" if p.get("amp") else "")
        if table4.get("memory_kind") == "cuda_max_memory_allocated":
            held = _gb((table4.get("reserved_bytes") or {}).get("distill_step"))
            what = (
                f"**{ours:.2f} GB** allocated at peak, {_fmt(held, '{:.2f}')} GB held by "
                "PyTorch's allocator (plus the CUDA context, which nvidia-smi would add)"
            )
        else:
            what = f"**{ours:.2f} GB** peak RSS (CPU)"
        lines += [
            "",
            "Paper's Table 4 (RetinaNet R101 -> R50, memory per GPU; 2 images per GPU assumed): "
            f"Shared-KD {PAPER_TABLE4_GB['Shared-KD']} GB, SemCKD {PAPER_TABLE4_GB['SemCKD']} GB. "
            f"Here, {setting}: {what}.",
        ]
    return lines


# main ----------------------------------------------------------------------------------------


def _csv(cast):
    return lambda text: [cast(x) for x in text.split(",") if x]


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="download what the GPU machine lacks")
    prep.add_argument("--dest", default=DEFAULT_DEST)
    prep.add_argument("--force", action="store_true", help="download again even if up to date")
    verify = sub.add_parser("verify", help="check a prepared folder offline")
    verify.add_argument("--dest", default=DEFAULT_DEST)

    chk = sub.add_parser("check", help="install offline, then run (a), (b), (c)")
    chk.add_argument(
        "--out", default=os.environ.get("OUT") or os.path.join(ROOT, "output", "gpu_check")
    )
    chk.add_argument("--work", default=os.path.join(ROOT, "output", "gpu_check_work"))
    chk.add_argument("--wheels", default=DEFAULT_DEST, help="the prepared folder")
    chk.add_argument(
        "--install-target",
        default="",
        help="install into this folder (on PYTHONPATH) instead of site-packages; the default "
        f"when site-packages is not writable: {TARGET}",
    )
    chk.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    chk.add_argument("--python", default="", help="interpreter for the parts (default: this one)")
    chk.add_argument(
        "--parts", type=_csv(str), default=list(PARTS), help="subset of " + ",".join(PARTS)
    )
    chk.add_argument(
        "--budget", type=float, default=None, help="seconds for everything (CUDA: 380)"
    )
    chk.add_argument("--tests-timeout", type=float, default=150)
    chk.add_argument("--train-iters", type=int, default=None, help="CUDA: 300; CPU: 2")
    chk.add_argument(
        "--bench-families", type=_csv(str), default=None, help="CUDA: faster_rcnn,retinanet"
    )
    chk.add_argument("--bench-batches", type=_csv(int), default=None, help="CUDA: 2,8; CPU: 2")
    chk.add_argument("--bench-size", default=None, help="HxW; CUDA: 800x1333; CPU: 128x128")
    chk.add_argument("--bench-iters", type=int, default=None, help="CUDA: 10; CPU: 1")
    chk.add_argument("--bench-warmup", type=int, default=None, help="CUDA: 3; CPU: 0")
    chk.add_argument("--bench-coco", type=int, default=None, help="1: COCO configs (CUDA default)")
    chk.add_argument("--bench-amp", type=int, default=None, help="1: --amp (CUDA default)")
    chk.add_argument("--bench-memory", type=int, default=None, help="1: peak memory (CUDA default)")
    return parser


def resolve_defaults(args, cuda):
    """Fill the options left unset: the full check on CUDA, a quick smoke run on the CPU."""
    defaults = {
        "budget": (380.0, 900.0),
        "train_iters": (300, 2),
        "bench_batches": ([2, 8], [2]),
        "bench_families": (list(BENCH_CONFIGS), ["retinanet"]),
        "bench_size": ("800x1333", "128x128"),
        "bench_iters": (10, 1),
        "bench_warmup": (3, 0),
        "bench_coco": (1, 0),
        "bench_amp": (1, 0),
        "bench_memory": (1, 0),
    }
    for key, (on_cuda, on_cpu) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, on_cuda if cuda else on_cpu)
    return args


CUDA_PROBE = "import torch; print('CUDA', torch.cuda.is_available())"


def run_check(args):
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    cuda = args.device == "cuda"
    if args.device == "auto":  # torch is there before the install (the GPU machine has it)
        res = subprocess.run(
            [args.python or sys.executable, "-c", CUDA_PROBE], capture_output=True, text=True
        )
        cuda = "CUDA True" in res.stdout
    resolve_defaults(args, cuda)
    check = Check(args, "cuda" if cuda else "cpu")
    check.part("install", lambda: part_install(check))
    if "environment" not in check.report:
        probe_environment(check)
        check.save()
    check.part("tests", lambda: part_tests(check))
    check.part("train", lambda: part_train(check))
    check.part("bench", lambda: part_bench(check))
    check.part("cost", lambda: part_cost(check))
    check.save()
    with open(os.path.join(check.out, "gpu_check.md")) as f:
        print(f.read())
    log(f"wrote gpu_check.json, gpu_check.md and gpu_check.log to {check.out}")
    return 0 if check.report["ok"] else 1


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "prepare":
        prepare(args.dest, args.force)
        return 0
    if args.command == "verify":
        check_prepared(args.dest)
        return 0
    return run_check(args)


if __name__ == "__main__":
    sys.exit(main())
