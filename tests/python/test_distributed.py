"""The Python Trainer under torchrun (docs/distributed.md): 2 workers × batch 4 train the adapter
one process × batch 8 trains (examples/distributed/train.py, Gloo on loopback, torchrun's agent
store). torchrun is Debian's `python3 -m torch.distributed.run`."""
import importlib.util
import os
import socket
import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPT = ROOT / "examples" / "distributed" / "train.py"
RUN = ["data.limit=85", "data.validation_size=5", "train.max_steps=10", "train.log_every=1", "train.eval_every=0",
       "train.save_every=0", "eval.max_new_tokens=0", "train.threads=1", "train.distributed_timeout=120"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_workers_train_what_one_process_trains(tmp_path):
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch (for torchrun) is not importable by this Python")
    recipe = str(ROOT / "examples" / "gsm8k" / "quickstart.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    one = subprocess.run([sys.executable, str(SCRIPT), recipe, *RUN, "train.batch_size=8",
                          f"train.output_dir={tmp_path / 'one'}"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    # -r 1 -t 1: torch 1.13's torchrun cannot parse its default "0" under Python 3.11 (IntFlag).
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(free_port()), "-r", "1", "-t", "1", "--log_dir", str(tmp_path / "logs"),
                          str(SCRIPT), recipe, *RUN, "train.batch_size=4", f"train.output_dir={tmp_path / 'two'}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    compare = subprocess.run([sys.executable, str(ROOT / "tests" / "cli" / "compare_runs.py"), str(tmp_path / "one"),
                              str(tmp_path / "two"), "1e-5"], capture_output=True, text=True)
    assert compare.returncode == 0, compare.stdout
    assert "status: completed, steps: 10" in two.stdout
