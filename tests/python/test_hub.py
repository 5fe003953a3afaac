"""Hub names in Python: `org/name` resolves in the local Hugging Face cache (a fake one, laid out as
huggingface_hub lays it out), and ranktune.download fetches from a local imitation of the hub."""

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

import ranktune
from conftest import QUICKSTART_MODEL, ROOT

COMMIT = "c0ffee" + "0" * 34


def make_cache(cache: pathlib.Path) -> None:
    repo = cache / "models--acme--quickstart"
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    for i, f in enumerate(sorted(QUICKSTART_MODEL.iterdir())):
        blob = str(i) * 40
        (repo / "blobs" / blob).write_bytes(f.read_bytes())
        os.symlink(f"../../blobs/{blob}", repo / "snapshots" / COMMIT / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


def test_models_and_tokenizers_load_by_hub_name(tmp_path, monkeypatch):
    make_cache(tmp_path / "hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = ranktune._core.resolve_pretrained("acme/quickstart")
    assert snapshot == str(tmp_path / "hub" / "models--acme--quickstart" / "snapshots" / COMMIT)
    model = ranktune.AutoModelForCausalLM.from_pretrained("acme/quickstart", init_seed=0)
    assert model.config.hidden_size == 128
    tok = ranktune.AutoTokenizer.from_pretrained("acme/quickstart@" + COMMIT)
    assert tok.encode("Ivan has 6 jars.") == ranktune.AutoTokenizer.from_pretrained(str(QUICKSTART_MODEL)).encode("Ivan has 6 jars.")
    with pytest.raises(ranktune.Error, match=r"acme/absent: not found: .*models--acme--absent/refs/main"):
        ranktune.AutoModelForCausalLM.from_pretrained("acme/absent")


def test_download_from_a_local_hub(tmp_path, monkeypatch):
    files = {f.name: {"text": f.read_text(), "lfs": f.name == "tokenizer.json"} for f in sorted(QUICKSTART_MODEL.iterdir())}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"repos": {"acme/quickstart": {"commit": COMMIT, "refs": ["main"], "files": files}}}))
    port = tmp_path / "port"
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "tools" / "fake_hub.py"), str(spec), str(port),
                               str(tmp_path / "requests.log")])
    try:
        for _ in range(200):
            if port.exists():
                break
            time.sleep(0.025)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port.read_text()}")
        snapshot = ranktune._core.download("acme/quickstart")
        assert pathlib.Path(snapshot, "tokenizer.json").is_symlink()
        assert ranktune._core.resolve_pretrained("acme/quickstart") == snapshot
        with pytest.raises(ranktune.Error, match=r"not found on the hub: model acme/quickstart at revision nope"):
            ranktune._core.download("acme/quickstart", revision="nope")
    finally:
        server.terminate()
        server.wait()
