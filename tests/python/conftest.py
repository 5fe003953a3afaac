"""Shared fixtures for the Python tests. Run from ctest (PYTHONPATH=build/python), or by hand:

    PYTHONPATH=$PWD/build/python OMP_NUM_THREADS=1 /usr/bin/python3 -m pytest tests/python -q

Tests that need ../shared (models, fixtures, GSM8K) skip with a message when it is absent.
"""

import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("RANKTUNE_SHARED_DIR", ROOT.parent / "shared"))
HF_TINY = SHARED / "fixtures" / "hf-tiny"
STORIES = SHARED / "models" / "stories260k"
QUICKSTART_MODEL = ROOT / "examples" / "gsm8k" / "quickstart" / "model"
QUICKSTART_DATA = ROOT / "examples" / "gsm8k" / "quickstart" / "data"
# The Hugging Face reference environment (../shared/tools/hfref builds it); CI has none.
HFREF = pathlib.Path(os.environ.get("RANKTUNE_HFREF", pathlib.Path.home() / "hfref"))


def need(path: pathlib.Path) -> pathlib.Path:
    """`path`, or skip the test naming what is missing."""
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is read in place, never copied into the repository)")
    return path


@pytest.fixture
def hf_tiny():
    return need(HF_TINY)


@pytest.fixture
def stories():
    return need(STORIES)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(int(os.environ.get("RANKTUNE_NUM_THREADS", "1")))


def hfref_python() -> pathlib.Path:
    """The reference environment's interpreter, or skip the test naming what is missing."""
    python = HFREF / "bin" / "python"
    if not python.exists():
        pytest.skip(f"{python} is absent: this test needs the Hugging Face reference environment "
                    "(../shared/tools/hfref; set RANKTUNE_HFREF to where it is built)")
    return python


def run_hfref_jobs(script: pathlib.Path, jobs, tmp: pathlib.Path) -> str:
    """Runs `script jobs.json` (the jobs written to tmp) in the reference environment, offline and
    without ranktune on the path; returns its stdout (a failure shows its stderr)."""
    jobs_file = tmp / "jobs.json"
    jobs_file.write_text(json.dumps(jobs))
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("PYTHONPATH", None)
    out = subprocess.run([str(hfref_python()), str(script), str(jobs_file)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout
