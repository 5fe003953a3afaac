"""Shared fixtures for the Python tests. Run from ctest (PYTHONPATH=build/python), or by hand:

    PYTHONPATH=$PWD/build/python OMP_NUM_THREADS=1 /usr/bin/python3 -m pytest tests/python -q

Tests that need ../shared (models, fixtures, GSM8K) skip with a message when it is absent.
"""

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("RANKTUNE_SHARED_DIR", ROOT.parent / "shared"))
HF_TINY = SHARED / "fixtures" / "hf-tiny"
STORIES = SHARED / "models" / "stories260k"
QUICKSTART_MODEL = ROOT / "examples" / "gsm8k" / "quickstart" / "model"
QUICKSTART_DATA = ROOT / "examples" / "gsm8k" / "quickstart" / "data"


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
