"""tools/bootstrap.py: what it installs, what it keeps, and the fallback detectron2 it makes."""

import importlib.util
import os

import pytest

from .conftest import REPO_ROOT


@pytest.fixture
def bootstrap(monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "bootstrap", os.path.join(REPO_ROOT, "tools", "bootstrap.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    calls = []
    monkeypatch.setattr(mod, "pip", lambda *args: calls.append(args))
    monkeypatch.setattr(mod, "probe", lambda code: (True, "ok"))
    monkeypatch.setattr(mod, "install_detectron2_fallback", lambda: calls.append(("FALLBACK",)))
    monkeypatch.setattr("sys.argv", ["bootstrap.py"])
    mod.calls = calls
    return mod


def _installed(calls):
    return [" ".join(os.path.basename(a) for a in c) for c in calls]


def test_existing_detectron2_and_its_torch_are_kept(bootstrap, monkeypatch):
    monkeypatch.setattr(bootstrap, "detectron2_version", lambda: "0.7+cu121")
    bootstrap.main()
    done = _installed(bootstrap.calls)
    assert not any("torch.txt" in c or "FALLBACK" in c for c in done), done
    assert any("base.txt" in c for c in done) and any("-e" in c for c in done)


def test_fresh_machine_gets_pinned_torch_then_fallback(bootstrap, monkeypatch):
    versions = iter([None, "0.6+noops"])
    monkeypatch.setattr(bootstrap, "detectron2_version", lambda: next(versions))
    monkeypatch.setattr(bootstrap, "torch_pair_works", iter([(False, ""), (True, "x")]).__next__)
    bootstrap.main()
    done = _installed(bootstrap.calls)
    assert done.index("-r torch.txt setuptools<81") < done.index("FALLBACK"), done


def test_working_torch_pair_is_kept(bootstrap, monkeypatch):
    versions = iter([None, "0.6+noops"])
    monkeypatch.setattr(bootstrap, "detectron2_version", lambda: next(versions))
    monkeypatch.setattr(bootstrap, "torch_pair_works", lambda: (True, "2.5.1 0.20.1"))
    bootstrap.main()
    done = _installed(bootstrap.calls)
    assert "FALLBACK" in done and not any("torch.txt" in c for c in done)


def test_patches_apply_to_the_pinned_sdist(bootstrap):
    """Every patch names text present in the pinned release (checked when it is cached)."""
    sdist = os.path.join(REPO_ROOT, ".cache", bootstrap.D2_SDIST_FILE)
    if not os.path.exists(sdist):
        pytest.skip("the detectron2 sdist was not downloaded (an existing detectron2 was kept)")
    import tarfile

    with tarfile.open(sdist) as tar:
        for rel, old, _new, _why in bootstrap.D2_PATCHES:
            text = tar.extractfile(f"pb1-detectron2-0.6/{rel}").read().decode()
            assert old in text, rel


def test_templates_render_to_python(bootstrap):
    """The files written into the release sources: valid Python, placeholders filled."""
    stub = bootstrap.render_template("detectron2_C.py.in", revision=bootstrap.D2_FALLBACK_REVISION)
    setup = bootstrap.render_template("detectron2_setup.py.in", version="0.6+noops")
    compile(setup, "setup.py", "exec")
    namespace = {}
    exec(compile(stub, "_C.py", "exec"), namespace)
    assert namespace["FALLBACK_REVISION"] == bootstrap.D2_FALLBACK_REVISION
    assert 'version="0.6+noops"' in setup


def _fallback_installed():
    from detectron2 import _C

    return getattr(_C, "FALLBACK", False)


@pytest.mark.skipif(not _fallback_installed(), reason="a real detectron2 build is installed")
def test_fallback_is_labelled_and_missing_ops_fail_clearly():
    import detectron2
    import torch
    from detectron2 import _C
    from detectron2.layers import nms_rotated
    from detectron2.utils.collect_env import collect_env_info

    assert detectron2.__version__ == "0.6+noops"
    with pytest.raises(_C.MissingCompiledOpError, match=r"0\.6\+noops.*nms_rotated"):
        nms_rotated(torch.rand(2, 5), torch.rand(2), 0.5)
    assert "compiled ops not built" in collect_env_info()  # default_setup logs this


@pytest.mark.skipif(not _fallback_installed(), reason="a real detectron2 build is installed")
def test_fallback_pillow_patch():
    from detectron2.data.transforms import ExtentTransform
    from PIL import Image

    t = ExtentTransform((0, 0, 4, 4), (2, 2))
    assert t.interp == Image.BILINEAR


def test_model_zoo_imports():
    """setuptools<81 survived the torch install: detectron2.model_zoo needs pkg_resources."""
    from detectron2 import model_zoo

    path = model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml")
    assert path.endswith(".yaml")
