"""`cxr evaluate` says in one line when a batch's scores differ from the tuning split's (naming
the test) with how many labelled images recalibration needs, and says nothing on the model's own
internal-test patients: a real run, real images, the command line as a user types it."""

import re
import subprocess
import sys

import pytest
from PIL import Image, ImageOps
from tests.conftest import train_tiny

from cxr.evaluation.drift import SIZES
from cxr.models.io import read_card


def _cxr(*args):
    return subprocess.run(
        [sys.executable, "-m", "cxr", *map(str, args)], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory, data):
    """A tiny run with 80 tuning images (enough for a label-budget curve), and a folder of its
    internal-test films inverted (white lungs: a scanner exporting MONOCHROME1 unconverted)."""
    tmp = tmp_path_factory.mktemp("shift-cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXR_CACHE", str(tmp / "cache"))
        run = train_tiny(tmp, data, "shift", "data.limit=320")
    for k, r in enumerate(read_card(run / "model.pt").protocol().test):
        folder = tmp / "inverted" / r.label
        folder.mkdir(parents=True, exist_ok=True)
        ImageOps.invert(Image.open(r.path).convert("L")).save(folder / f"{k}.png")
    return {"model": run / "model.pt", "tmp": tmp}


def _shift_lines(result) -> list[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    text = " ".join(result.stdout.split())  # the console wraps long lines
    return re.findall(r"shift: these .*?`cxr calibrate[^`]*`\.", text)


def test_shifted_scores_print_one_shift_line_with_a_label_count(run, monkeypatch):
    monkeypatch.setenv("CXR_CACHE", str(run["tmp"] / "cache"))
    out = run["tmp"] / "inverted-eval"
    result = _cxr("evaluate", run["model"], run["tmp"] / "inverted", "--out", out,
                  "--bootstrap", 20, "--workers", 0)  # fmt: skip
    lines = _shift_lines(result)
    assert len(lines) == 1, result.stdout
    assert "two-sample Kolmogorov–Smirnov D = " in lines[0]
    needed = re.search(r"recalibrating needs about (\d+) labelled images", lines[0])
    assert needed and int(needed.group(1)) in SIZES, lines[0]
    assert result.stdout.count("shift:") == 1


def test_the_models_own_internal_test_prints_no_shift_line(run, data, monkeypatch):
    monkeypatch.setenv("CXR_CACHE", str(run["tmp"] / "cache"))
    out = run["tmp"] / "internal-eval"
    result = _cxr("evaluate", run["model"], data / "chest_xray", "--split", "internal-test",
                  "--out", out, "--bootstrap", 20, "--workers", 0)  # fmt: skip
    assert _shift_lines(result) == []
    assert "shift:" not in result.stdout
    assert "evaluation folder:" in result.stdout
