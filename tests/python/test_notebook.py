"""examples/notebooks/gsm8k_lora.ipynb runs headless (nbclient) in a kernel on this Python, and
every cell succeeds. The notebook is stored without outputs."""

import json
import os
import sys
import time

import pytest

from conftest import ROOT

NOTEBOOK = ROOT / "examples" / "notebooks" / "gsm8k_lora.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None


def test_notebook_runs_headless(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="python3-nbformat is not installed")
    nbclient = pytest.importorskip("nbclient", reason="python3-nbclient is not installed")
    pytest.importorskip("ipykernel", reason="python3-ipykernel is not installed")
    pytest.importorskip("matplotlib", reason="python3-matplotlib is not installed")

    # A kernel spec for exactly this interpreter (the one with torch), whatever else is installed.
    spec_dir = tmp_path / "jupyter" / "kernels" / "ranktune-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "ranktune test", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("RANKTUNE_NOTEBOOK_OUTPUT", str(tmp_path / "run"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # The kernel imports ranktune from the same place as this test.
    import ranktune
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(ranktune.__file__)))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([package_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))

    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="ranktune-test", timeout=300,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the failing cell
    seconds = time.perf_counter() - start
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert (tmp_path / "run" / "notebook-adapter" / "adapter_model.safetensors").exists()
    assert (tmp_path / "run" / "notebook-curve.png").stat().st_size > 1000
    print(f"notebook executed in {seconds:.1f} s")
