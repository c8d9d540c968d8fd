"""tools/gpu_check.sh: the prepared set for the GPU machine, and the check's smoke run on CPU."""

import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import types

import pytest

from .conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # runs the demo / study / GPU-check tools in processes

SCRIPT = os.path.join(REPO_ROOT, "tools", "gpu_check.sh")


@pytest.fixture(scope="module")
def gpu_check():
    """tools/gpu_check.py's modules: the entry point loads tools/gpu_check_parts/ by its path."""
    spec = importlib.util.spec_from_file_location(
        "gpu_check", os.path.join(REPO_ROOT, "tools", "gpu_check.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = ("common", "device", "requirements", "prepare", "parts", "report")
    return types.SimpleNamespace(
        main=module, **{n: importlib.import_module(f"gpu_check_parts.{n}") for n in names}
    )


@pytest.fixture(scope="module")
def prepared(gpu_check):
    """`tools/gpu_check.sh --prepare` into .gpu_wheels/ (downloads once; later runs check it)."""
    res = subprocess.run(
        ["bash", SCRIPT, "--prepare"],
        env=dict(os.environ, PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return gpu_check.common.DEFAULT_DEST


def test_prepared_set_is_complete_for_the_gpu_machine(gpu_check, prepared):
    summary = gpu_check.prepare.check_prepared(prepared)  # raises, naming what is missing
    # what the GPU machine lacks (KINDS.md lists none of these) travels; what it has does not
    assert {"fvcore", "iopath", "pycocotools", "omegaconf", "hydra-core", "yacs"} <= set(
        summary["wheels"]
    )
    assert "antlr4-python3-runtime" in summary["wheels"]  # omegaconf's, an sdist on the index
    assert not {"numpy", "torch", "matplotlib", "opencv-python-headless"} & set(summary["wheels"])
    assert summary["total_mb"] + summary["working_tree_mb"] < gpu_check.device.TRAVEL_LIMIT_MB
    with open(os.path.join(prepared, gpu_check.prepare.MANIFEST)) as f:
        manifest = json.load(f)
    assert sorted(e["file"] for e in manifest["files"]) == sorted(
        f for f in os.listdir(prepared) if f != gpu_check.prepare.MANIFEST
    )
    assert subprocess.run(["git", "check-ignore", "-q", prepared], cwd=REPO_ROOT).returncode == 0


def test_an_incomplete_set_is_named(gpu_check, prepared, tmp_path):
    dest = tmp_path / "wheels"
    shutil.copytree(prepared, dest)
    antlr = next(f for f in os.listdir(dest) if f.startswith("antlr4"))
    os.remove(dest / antlr)
    yacs = next(f for f in os.listdir(dest) if f.startswith("yacs-"))
    shutil.copy(dest / yacs, dest / yacs.replace("0.1.8", "0.1.7"))
    with pytest.raises(AssertionError) as e:
        gpu_check.prepare.check_prepared(str(dest))
    assert "antlr4-python3-runtime" in str(e.value) and "two versions of yacs" in str(e.value)


def test_what_prepare_carries_comes_from_the_requirement_files(gpu_check, tmp_path, monkeypatch):
    prep, reqs = gpu_check.prepare, gpu_check.requirements
    base = reqs.read_requirements(os.path.join(REPO_ROOT, "requirements", "base.txt"))
    dev = reqs.read_requirements(os.path.join(REPO_ROOT, "requirements", "dev.txt"))
    pytest_line = next(line for line in dev if re.match(r"pytest\b(?!-)", line))
    carried, present = prep.plan()
    assert sorted(carried + present) == sorted(base + [pytest_line])
    assert "setuptools<81" in carried and "fvcore>=0.1.5,<0.1.6" in carried  # always / lacking
    assert "numpy" in present and pytest_line in present  # preinstalled there
    assert not any(line.startswith(("ruff", "onnx")) for line in carried + present)
    digest = prep.inputs_digest()

    # A requirement added to the files shows up; one the GPU machine has stays behind.
    shutil.copytree(os.path.join(REPO_ROOT, "requirements"), tmp_path / "requirements")
    with open(tmp_path / "requirements" / "base.txt", "a") as f:
        f.write("sharedkd-made-up-project>=1.0  # new\npandas>=2\n")
    monkeypatch.setattr(reqs, "REQUIREMENTS_DIR", str(tmp_path / "requirements"))
    carried, present = prep.plan()
    assert "sharedkd-made-up-project>=1.0" in carried and "pandas>=2" in present
    assert prep.inputs_digest() != digest  # a prepared folder is redone

    # The check needs pytest from dev.txt: a dev.txt without it is refused, not ignored.
    (tmp_path / "requirements" / "dev.txt").write_text("ruff==0.17.5\n")
    with pytest.raises(ValueError, match="pytest"):
        reqs.check_requirements()
    (tmp_path / "requirements" / "dev.txt").write_text("--index-url x\npytest\n")
    with pytest.raises(ValueError, match="pip options"):
        reqs.check_requirements()
    (tmp_path / "requirements" / "dev.txt").write_text("pytest>=8\n")
    (tmp_path / "requirements" / "base.txt").write_text("-r more.txt\nyacs\n")
    (tmp_path / "requirements" / "more.txt").write_text("fvcore  # included\n")
    assert reqs.check_requirements() == ["fvcore", "yacs", "pytest>=8"]


def test_the_gpu_machines_packages_are_a_data_file(gpu_check, tmp_path, monkeypatch):
    dev, prep = gpu_check.device, gpu_check.prepare
    with open(dev.DEVICE_PACKAGES_FILE) as f:
        assert "KINDS.md" in f.readline() + f.readline() + f.readline()
    have = dev.device_packages()
    assert {"torch", "torchvision", "numpy", "pytest", "opencv-python-headless"} <= have
    assert not {"fvcore", "iopath", "yacs", "pycocotools", "detectron2"} & have
    digest = prep.inputs_digest()

    inventory = tmp_path / "device_packages.txt"
    inventory.write_text("# a machine with yacs\n" + "\n".join(sorted(have)) + "\nYACS\n")
    monkeypatch.setattr(dev, "DEVICE_PACKAGES_FILE", str(inventory))
    carried, present = prep.plan()
    assert "yacs>=0.1.8" in present and "yacs>=0.1.8" not in carried
    assert prep.inputs_digest() != digest
    inventory.write_text("numpy, torch\n")
    with pytest.raises(ValueError, match="not one project name"):
        dev.device_packages()


def test_the_command_line_runs_from_any_directory(tmp_path):
    script = os.path.join(REPO_ROOT, "tools", "gpu_check.py")
    res = subprocess.run(
        [sys.executable, script, "check", "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert res.returncode == 0 and "--bench-memory" in res.stdout, res.stderr


def test_smoke_run_on_cpu(tmp_path):
    """`make gpu-check` on a CPU machine: every part runs, on tiny settings, and passes."""
    out = tmp_path / "out"
    res = subprocess.run(
        ["bash", SCRIPT, "--device", "cpu", "--out", str(out), "--work", str(tmp_path / "work")],
        env=dict(os.environ, PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["gpu_check.json", "gpu_check.log", "gpu_check.md"]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["ok"] and report["device"] == "cpu"
    parts = report["parts"]
    assert list(parts) == ["install", "tests", "train", "bench", "cost"]
    cost = {r["model"]: r for r in parts["cost"]["rows"]}
    assert cost["student R50"]["ratios"]["params"] < 1  # the tiny twins in the smoke run
    assert parts["tests"]["counts"]["skipped"] > 0 and parts["tests"]["counts"]["passed"] == 0
    student = parts["train"]["student"]
    assert student["finite_losses"] and student["ap"] is not None and student["iterations"] == 2
    lazy = parts["train"]["lazy_student"]  # the LazyConfig pair, from the same teacher weights
    assert lazy["ok"] and lazy["finite_losses"] and lazy["iterations"] == 2
    run = parts["bench"]["runs"][0]
    assert run["ok"] and run["median_ms"]["distill_step"] > 0
    assert "# SharedKD GPU check" in res.stdout and "| bench | ok |" in res.stdout


def test_training_speed_is_read_from_detectron2s_log(gpu_check):
    line = "[11/30 00:20:05 d2.utils.events]: Overall training speed: 295 iterations in 0:00:15 "
    assert gpu_check.parts._speed(line + "(0.0508 s / it)") == (295, 0.0508)
    assert gpu_check.parts._speed("Total training time: 0:00:02") == (None, None)


def _cuda_report():
    """A report as the GPU machine would write it (numbers made up)."""
    mem = {"student_step": 2.9e9, "distill_step": 3.4e9}
    run = {
        "family": "retinanet",
        "batch": 2,
        "ok": True,
        "median_ms": {
            "student_step": 100.0,
            "teacher_forward": 20.0,
            "teacher_forward_fp32": 50.0,
            "distill_step": 125.0,
            "distill_losses": 3.0,
        },
        "guide_precision": "bfloat16",
        "guide_saving": 0.6,
        "peak_bytes": mem,
        "reserved_bytes": {"student_step": 3.1e9, "distill_step": 3.6e9},
        "memory_kind": "cuda_max_memory_allocated",
        "targets": {
            "overhead": {"value": 1.04, "limit": 1.05, "passed": True},
            "loss_share": {"value": 0.024, "limit": 0.03, "passed": True},
        },
    }
    failed = {"family": "faster_rcnn", "batch": 8, "ok": False, "rc": 1, "tail": "CUDA OOM"}
    return {
        "started": "now",
        "budget_s": 450,
        "elapsed_s": 300,
        "ok": False,
        "device": "cuda",
        "environment": {"gpu": "NVIDIA H200", "capability": "9.0", "imports_ok": True},
        "parts": {
            "install": {"ok": True, "action": "already installed", "seconds": 3},
            "tests": {"ok": True, "counts": {"passed": 7}, "cases": [], "seconds": 30},
            "bench": {
                "ok": False,
                "size": "800x1333",
                "amp": 1,
                "coco_scale": 1,
                "runs": [run, failed],
                "seconds": 200,
            },
        },
    }


def test_report_of_a_gpu_run(gpu_check):
    md = gpu_check.report.format_markdown(_cuda_report())
    assert "Device: NVIDIA H200" in md and "**FAIL**" in md
    assert "| retinanet | 2 | bfloat16 | 100.0 | 20.0 | 50.0 | 60% | 125.0 |" in md
    assert "1.040 PASS" in md and "2.4% PASS" in md and "| 2.90 | 3.40 |" in md
    assert "Shared-KD 3.8 GB, SemCKD 4.5 GB" in md and "**3.40 GB** allocated" in md
    assert "3.60 GB held" in md
    assert "| faster_rcnn | 8 | FAILED: rc 1 |" in md and "CUDA OOM" in md


def _pythons312():
    yield os.environ.get("PYTHON312", "")
    yield shutil.which("python3.12") or ""
    pyenv = os.path.expanduser("~/.pyenv/versions")
    if os.path.isdir(pyenv):
        for v in sorted(os.listdir(pyenv), reverse=True):
            if v.startswith("3.12"):
                yield os.path.join(pyenv, v, "bin", "python3.12")


def _is_python312(path):
    if not path or not os.path.exists(path):
        return False
    code = "import sys; assert sys.version_info[:2] == (3, 12)"
    return subprocess.run([path, "-c", code], capture_output=True).returncode == 0


@pytest.mark.skipif(
    os.environ.get("SHAREDKD_TEST_OFFLINE_INSTALL") != "1",
    reason="slow (about 2 min, downloads stand-ins): set SHAREDKD_TEST_OFFLINE_INSTALL=1",
)
def test_prepared_set_installs_offline_into_clean_python312(gpu_check, prepared, tmp_path):
    """
    A clean Python 3.12 venv with stand-ins for the GPU machine's packages that SharedKD's
    requirements name (from the index, online), then, offline, requirements/base.txt from the
    prepared folder and detectron2's fallback through bootstrap's own function. torch is left
    out (several GB), so detectron2 itself is not imported.
    """
    python312 = next((p for p in _pythons312() if _is_python312(p)), None)
    if python312 is None:
        pytest.skip("no Python 3.12 here (set PYTHON312)")
    venv = tmp_path / "venv"
    subprocess.run([python312, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    stand_ins = ["numpy", "pillow", "matplotlib", "tabulate", "cloudpickle", "tqdm"]
    stand_ins += ["tensorboard", "opencv-python-headless", "pyyaml", "typing-extensions"]
    stand_ins += ["portalocker", "packaging"]
    subprocess.run([py, "-m", "pip", "install", "-q", *stand_ins], check=True)
    offline = dict(
        os.environ,
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=prepared,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    base = os.path.join(REPO_ROOT, "requirements", "base.txt")
    subprocess.run([py, "-m", "pip", "install", "-q", "-r", base], check=True, env=offline)
    cache = tmp_path / "cache"
    bootstrap = os.path.join(REPO_ROOT, "tools", "bootstrap.py")
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('b', {bootstrap!r})\n"
        "b = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(b)\n"
        f"b.CACHE = {str(cache)!r}\n"
        "b.install_detectron2_fallback()\n"
    )
    cache.mkdir()
    shutil.copy(os.path.join(prepared, gpu_check.common.load_bootstrap().D2_SDIST_FILE), cache)
    subprocess.run([py, "-c", code], check=True, env=offline)
    check = (
        "import fvcore.common.config, iopath, pycocotools.coco, omegaconf, hydra, yacs, termcolor\n"
        "import pkg_resources, importlib.metadata as m\n"
        "print(m.version('detectron2'), m.version('setuptools'))\n"
    )
    res = subprocess.run([py, "-c", check], capture_output=True, text=True, env=offline)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == "0.6+noops"
