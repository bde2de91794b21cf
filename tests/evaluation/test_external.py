"""A real tiny model on the external judge: its figures with intervals, the specificity and
sensitivity at its stored threshold with Wilson intervals, a refusal where the judge holds
the model's own radiographs, and a study whose config declares the judge reporting it."""

import json
import os
import subprocess
import sys

import pytest
from tests.conftest import train_tiny

from cxr.data.external import ExternalJudge, external_judge
from cxr.errors import CxrError
from cxr.evaluation.external import judge_model
from cxr.metrics.stats import wilson_interval
from cxr.models.io import read_card
from cxr.numbers import interval, number
from cxr.study import run_study


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, data):
    return train_tiny(tmp_path_factory.mktemp("external"), data, "external") / "model.pt"


def test_a_tiny_model_gets_figures_with_intervals_on_the_judge(tiny, data):
    result = judge_model(tiny, external_judge("covid-db", data), bootstrap=200)
    assert (result["images"], result["normal"], result["pneumonia"]) == (280, 62, 218)
    assert result["threshold"] == read_card(tiny).threshold.value
    for key in ("auroc", "sensitivity", "specificity", "ece"):
        low, high = result[f"{key}_ci95"]
        assert low <= result[key] <= high and high > low, key
    for key, n in (("specificity", 62), ("sensitivity", 218)):
        k = round(result[key] * n)
        assert result[f"{key}_ci95"] == pytest.approx(wilson_interval(k, n))
    assert result["warnings"] == []  # the card's keys: none of these is its own radiograph


def test_a_judge_holding_the_models_own_radiographs_is_refused(tiny):
    own = read_card(tiny).protocol()
    judge = ExternalJudge("own", own.train[0].path.parent, own.train[:3] + own.test[:2])
    with pytest.raises(CxrError, match="5 of the own judge's images are this model's own"):
        judge_model(tiny, judge, bootstrap=20)


def _tiny_study(data, tmp_path) -> list[str]:
    return [
        f"data.root={data / 'chest_xray'}",
        "data.limit=64",
        "data.workers=0",
        "optim.epochs=1",
        "model.size=48",
        f"runs_dir={tmp_path / 'runs'}",
        "evaluation.external=covid-db",
    ]


def test_a_study_declaring_the_judge_reports_it_beside_the_internal_test(data, tmp_path):
    study = run_study(None, _tiny_study(data, tmp_path), bootstrap=50)
    written = json.loads((study.run / "evaluation" / "external.json").read_text())
    again = judge_model(study.run / "model.pt", external_judge("covid-db", data), bootstrap=50)
    assert written == json.loads(json.dumps(again))  # the in-memory model = the saved one
    assert (written["normal"], written["pneumonia"]) == (62, 218)
    html = study.report.read_text()
    assert "Internal test and external judge" in html
    assert "62 normal / 218 pneumonia" in html
    for key in ("auroc", "sensitivity", "specificity", "ece"):
        shown = f"{number(written[key])} (95 % CI {interval(written[f'{key}_ci95'])})"
        assert shown in html, key
    low, high = written["specificity_ci95"]
    assert f"With 62 normal images the judge&#39;s specificity interval is {high - low:.2f}" in html


def test_cxr_study_prints_the_judge_after_the_internal_test(data, tmp_path):
    """make demo's terminal said nothing of the judge its report showed."""
    result = subprocess.run(
        [sys.executable, "-m", "cxr", "study", *_tiny_study(data, tmp_path), "--bootstrap", "50"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    written = json.loads((tmp_path / "runs" / "run" / "evaluation" / "external.json").read_text())
    out = " ".join(result.stdout.split())
    title = "external judge covid-db: 280 images of another source (62 normal, 218 pneumonia)"
    assert out.index("internal-test") < out.index(title)
    for key in ("auroc", "specificity"):
        assert f"{key} │ {number(written[key])} │ {interval(written[f'{key}_ci95'])}" in out
