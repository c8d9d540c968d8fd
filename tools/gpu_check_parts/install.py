"""The install part (offline, from the prepared folder) and the environment probe."""

import json
import os
import shutil
import subprocess

from .common import ROOT, load_bootstrap

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
