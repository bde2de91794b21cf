"""Not scored means no score: an MR and a CT get no probability, decision or heat map in any
output of `cxr predict` unless asked (`--score-anyway`, then beside their flags); every decision
prints with the threshold it used."""

import csv
import json
import re
import shutil
import subprocess
import sys

import pytest
from tests.conftest import save_tiny_model

from cxr.numbers import percent, versus

DECISION = re.compile(r"^(NORMAL|PNEUMONIA): P\(PNEUMONIA\) (\d\.\d+) (>=|<) threshold (\d\.\d+)$")


def _cxr(*args):
    return subprocess.run(
        [sys.executable, "-m", "cxr", *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("mixed")
    for path in sorted((data / "chest_xray" / "train" / "PNEUMONIA").glob("*.jpeg"))[:2]:
        shutil.copy(path, tmp / path.name)
    for name in ("MR_small_16bit_window.dcm", "CT_small_16bit_signed_rescale.dcm"):
        shutil.copy(data / "dicom_samples" / name, tmp / name)
    return tmp


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "model.pt")


def _legible(decision: str) -> None:
    """The printed comparison agrees with the decision it explains."""
    called, p, sign, t = DECISION.match(decision).groups()
    assert (float(p) >= float(t)) == (sign == ">=") == (called == "PNEUMONIA"), decision


def test_an_mr_and_a_ct_get_no_score_and_no_heat_map(model_file, folder, tmp_path):
    out, cams = tmp_path / "w.json", tmp_path / "cams"
    result = _cxr("predict", model_file, folder, "--out", out, "--cam", cams, "--workers", 0)
    assert result.returncode == 0, result.stdout + result.stderr
    answer = json.loads(out.read_text())
    assert len(answer["worklist"]) == 2 and len(answer["not_scored"]) == 2
    for row in answer["not_scored"]:
        assert row["probabilities"] is row["predicted"] is row["decision"] is row["urgency"] is None
        assert row["not_scored_reason"].startswith("not scored, probably not a frontal chest")
        assert "Modality" in row["not_scored_reason"]
    for row in answer["worklist"]:
        _legible(row["decision"])
        assert row["threshold"] == 0.5
    assert sorted(p.name[:5] for p in cams.iterdir()) == ["0001_", "0002_"]  # no MR, no CT

    table = _cxr("predict", model_file, folder, "--workers", 0)
    assert "threshold 0.500" in table.stdout and "100.0 %" not in table.stdout


def test_score_anyway_keeps_the_number_beside_the_flag(model_file, folder, tmp_path):
    out, cams = tmp_path / "w.csv", tmp_path / "cams"
    result = _cxr("predict", model_file, folder, "--out", out, "--cam", cams, "--workers", 0,
                  "--score-anyway")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = list(csv.DictReader(out.open()))
    flagged = [r for r in rows if r["group"] == "not scored"]
    assert len(flagged) == 2 and all(r["p_PNEUMONIA"] and r["flags"] for r in flagged)
    assert all(r["rank"] == "" for r in flagged)  # still never ranked among the X-rays
    for r in rows:
        _legible(r["decision"])
        assert float(r["threshold"]) == 0.5
    assert len([p for p in cams.iterdir() if p.name.startswith("not-scored_")]) == 2


def test_probabilities_never_claim_certainty_and_comparisons_never_tie():
    assert percent(0.99996) == "> 99.9 %" and percent(0.00004) == "< 0.1 %"
    assert percent(0.5) == "50.0 %"
    assert versus(0.93281, 0.93261) == ("0.9328", "0.9326")  # not "0.933 < 0.933"
    assert versus(0.789, 0.933) == ("0.789", "0.933")


def test_a_near_certain_probability_is_never_printed_as_certain():
    assert versus(0.99996, 0.93261) == ("0.99996", "0.93261")  # not "1.000 >= 0.933"
    assert versus(0.00004, 0.5) == ("0.00004", "0.50000")
    assert versus(0.5, 0.5) == ("0.500", "0.500")  # equal: 3 decimals say so
