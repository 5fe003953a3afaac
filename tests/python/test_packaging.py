"""The package is importable as documented: from the build tree with PYTHONPATH alone (the module
finds libranktune.so through its RPATH), and — with RANKTUNE_TEST_PIP=1, as it takes minutes —
installed by `pip install --no-build-isolation .` into a venv that sees Debian's torch."""

import glob
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import ranktune
from conftest import ROOT, need


def test_every_public_name_has_a_docstring():
    missing = []
    modules = [ranktune, ranktune.answers, ranktune.grpo, ranktune.gsm8k, ranktune.modeling, ranktune.peft,
               ranktune.retrieval, ranktune.rl, ranktune.safetensors, ranktune.templates, ranktune.tokenization,
               ranktune.tools, ranktune.torch, ranktune.training]
    for module in modules:
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if not (getattr(obj, "__doc__", None) or "").strip():
                missing.append(f"{module.__name__}.{name}")
            if isinstance(obj, type):
                for attr, value in vars(obj).items():
                    if attr.startswith("_") or not (callable(value) or isinstance(value, property)):
                        continue
                    if not (getattr(value, "__doc__", None) or "").strip():
                        missing.append(f"{module.__name__}.{name}.{attr}")
    assert not missing, missing


def test_core_links_libranktune_through_a_relative_rpath():
    module = pathlib.Path(ranktune._core.__file__)
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf (binutils) is not installed")
    dynamic = subprocess.run([readelf, "-d", str(module)], capture_output=True, text=True, check=True).stdout
    assert "$ORIGIN" in dynamic and "libranktune.so.0" in dynamic
    assert str(ROOT) not in dynamic  # no absolute build paths


def test_import_with_only_pythonpath_in_a_fresh_process(tmp_path):
    package_parent = pathlib.Path(ranktune.__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_LIBRARY_PATH")}
    env["PYTHONPATH"] = str(package_parent)
    out = subprocess.run([sys.executable, "-c", "import ranktune; print(ranktune.__version__, ranktune._core.__file__)"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(ranktune.__version__)


@pytest.mark.skipif(os.environ.get("RANKTUNE_TEST_PIP") != "1", reason="set RANKTUNE_TEST_PIP=1 (builds for minutes)")
def test_pip_install_into_a_venv_offline(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["RANKTUNE_CMAKE_BUILD_DIR"] = str(tmp_path / "cmake")
    env["PIP_NO_INDEX"] = "1"  # offline: nothing may be downloaded
    subprocess.run([str(venv / "bin" / "pip"), "install", "--no-build-isolation", str(ROOT)], check=True, env=env,
                   cwd=tmp_path, timeout=1800)
    installed = glob.glob(str(venv / "lib" / "python3*" / "site-packages" / "ranktune"))
    assert installed and os.path.exists(os.path.join(installed[0], "libranktune.so.0"))
    check = ("import torch, ranktune; "
             "m = ranktune.AutoModelForCausalLM.from_config(" + repr(str(need(ROOT / "examples/gsm8k/quickstart/model")))
             + ", seed=0); print(m(torch.tensor([[1, 2]])).logits.shape, ranktune.templates.load('gsm8k-cot').name)")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", check], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "gsm8k-cot" in out.stdout


def _threads_after_import(tmp_path, **env_changes):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "RANKTUNE_NUM_THREADS")}
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-c", "import ranktune, torch; print(torch.get_num_threads())"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def test_import_uses_every_core_unless_the_environment_pins_the_thread_count(tmp_path):
    assert _threads_after_import(tmp_path) == os.cpu_count()
    assert _threads_after_import(tmp_path, RANKTUNE_NUM_THREADS="3") == 3
    assert _threads_after_import(tmp_path, OMP_NUM_THREADS="1", RANKTUNE_NUM_THREADS="3") == 1
