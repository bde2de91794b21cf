"""examples/quickstart.ipynb: stored executed, clean (no warnings, no machine paths), and it runs
top to bottom through the API (at tiny size here)."""

import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[1] / "examples" / "quickstart.ipynb"
NOISE = re.compile(r"Warning|warnings\.warn|Traceback|/home/|/work/|/tmp/|/root/|litlogger")


def _texts(notebook) -> list[str]:
    out = []
    for cell in notebook.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")))
    return out


def test_stored_outputs_are_clean():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.get("outputs") for c in code), "the notebook is stored executed"
    assert not [t for t in _texts(notebook) if NOISE.search(t)]
    words = " ".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    for topic in ("patient", "over-fitting", "Calibration", "threshold", "Grad-CAM",
                  "Conclusions", "in our run", "Run-to-run variation"):  # fmt: skip
        assert topic in words, topic


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(
        "CXR_QUICKSTART_OVERRIDES", "data.limit=48 data.workers=0 optim.epochs=1 model.size=48"
    )
    monkeypatch.setenv("CXR_QUICKSTART_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CXR_QUICKSTART_BOOTSTRAP", "100")  # the CIs' resamples; 1000 stored
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=600, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    images = [
        o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
        if "image/png" in o.get("data", {})
    ]  # fmt: skip
    assert len(images) >= 10  # data, curves, ROC, confusion, reliability, threshold, heat maps
    assert (tmp_path / "runs" / "nb-report.html").is_file()
    assert not [t for t in _texts(notebook) if re.search(r"Warning|Traceback", t)]
