"""examples/quickstart.ipynb runs top to bottom through the API (at tiny size here)."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[1] / "examples" / "quickstart.ipynb"


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(
        "CXR_QUICKSTART_OVERRIDES",
        "data.limit=48 data.workers=0 optim.epochs=1 model.size=48 name=nb",
    )
    monkeypatch.setenv("CXR_QUICKSTART_RUNS", str(tmp_path / "runs"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    stored = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.get("outputs") for c in stored), "the notebook is stored executed"
    NotebookClient(
        notebook, timeout=600, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    images = [
        o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
        if "image/png" in o.get("data", {})
    ]  # fmt: skip
    assert len(images) >= 4  # learning curves, ROC, confusion matrix, reliability inline
    assert (tmp_path / "runs" / "nb" / "report.html").is_file()
