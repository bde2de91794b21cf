"""Numbers a user can trust, on tiny real runs: operating points with intervals, exact intervals
where the bootstrap degenerates, and the same figure printed the same way by evaluate,
metrics.json, the report and compare."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cxr.evaluation.evaluate import INTERNAL_TEST, evaluate
from cxr.evaluation.numbers import number
from cxr.training.config import load_config
from cxr.training.fit import fit


def _run(tmp: Path, data: Path, name: str, *overrides: str) -> Path:
    return fit(
        load_config(
            None,
            [
                f"name={name}",
                f"data.root={data / 'chest_xray'}",
                "data.limit=64",
                "data.workers=0",
                "data.batch_size=16",
                "optim.epochs=1",
                "model.size=48",
                f"runs_dir={tmp / 'runs'}",
                *overrides,
            ],
        )
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("trust")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXR_CACHE", str(tmp / "cache"))
        yield {
            "small": _run(tmp, data, "small", "model.args={width: 8, depth: 3}"),
            "wide": _run(tmp, data, "wide", "model.args={width: 12, depth: 3}"),
            "tmp": tmp,
        }


def _cxr(*args):
    env = {**os.environ, "COLUMNS": "240"}
    return subprocess.run(
        [sys.executable, "-m", "cxr", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_operating_points_and_exact_intervals_in_metrics_json(runs, data, tmp_path):
    model = runs["small"] / "model.pt"
    result = evaluate(model, data / "chest_xray", INTERNAL_TEST, tmp_path / "e", bootstrap=200)
    info = json.loads((tmp_path / "e" / "metrics.json").read_text())
    points = info["operating_points"]
    assert [o["target_sensitivity"] for o in points] == [0.9, 0.95, 0.98]
    for o in points:
        assert o["tuning_sensitivity"] >= o["target_sensitivity"]
        lo, hi = o["threshold_ci95"]
        assert lo <= o["threshold"] <= hi
    # 16 internal-test images: every proportion rests on fewer than 30 cases -> Wilson
    m, methods = info["metrics"], info["ci_method"]
    assert m["n"] < 30
    for key in ("sensitivity", "specificity", "accuracy"):
        assert methods[key] == "Wilson", key
        lo, hi = info["ci95"][key]
        assert lo < hi and lo <= m[key] <= hi
    assert methods["auroc"] == "patient bootstrap"
    assert result.scores["ci_method"] == methods


def _cli_table(text: str) -> dict[str, str]:
    return dict(re.findall(r"│ (\w+)\s+│ (n/a|\d\.\d{4})", text))


def test_evaluate_json_report_and_compare_print_the_same_digits(runs, data, tmp_path):
    folders = [tmp_path / "small", tmp_path / "wide"]
    done = _cxr(
        "evaluate", runs["small"] / "model.pt", "--data", data / "chest_xray",
        "--split", INTERNAL_TEST, "--out", folders[0], "--bootstrap", "100",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    printed = _cli_table(done.stdout)
    assert "operating points chosen on the tuning split" in done.stdout
    evaluate(runs["wide"] / "model.pt", data / "chest_xray", INTERNAL_TEST, folders[1], bootstrap=9)
    stored = json.loads((folders[0] / "metrics.json").read_text())["metrics"]
    report = tmp_path / "r.html"
    assert _cxr("report", folders[0], "--out", report, "--bootstrap", "100").returncode == 0
    html = report.read_text()
    row = html.split("<th>Brier</th><th>ECE</th></tr>", 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r'<td class="n">(n/a|\d\.\d{4})', row)
    keys = ["auroc", "average_precision", "accuracy", "balanced_accuracy", "sensitivity"]
    in_report = dict(zip([*keys, "specificity"], cells[:6], strict=True))
    compared = _cxr("compare", *folders, "--out", tmp_path / "cmp", "--bootstrap", "100")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    header = next(line for line in compared.stdout.splitlines() if "auroc" in line)
    columns = [c.strip() for c in header.strip("┃ ").split("┃")]
    line = next(line for line in compared.stdout.splitlines() if line.startswith("│ small"))
    in_compare = dict(zip(columns, [c.strip() for c in line.strip("│ ").split("│")], strict=True))
    for key in ("auroc", "sensitivity", "specificity", "accuracy"):
        expected = number(stored[key])
        assert printed[key] == expected, key
        assert in_report[key] == expected, key
        assert in_compare[key] == expected, key
    assert "Operating points chosen on the tuning split" in html
    assert "Wilson score intervals" in html
