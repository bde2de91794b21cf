"""Warnings travel with the numbers: `predictions.csv` says which images are the model's own
(training, tuning, internal test), `--unseen-only` leaves the learned-from ones out, the check
says when it cannot run, and `cxr compare` calls no winner on images a model trained on."""

import csv
import dataclasses
import json
import subprocess
import sys

import pytest
from PIL import Image
from tests.conftest import train_tiny

from cxr.models.io import read_card, read_model_file, write_model_file


def _cxr(*args):
    return subprocess.run(
        [sys.executable, "-m", "cxr", *map(str, args)], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory, data):
    """A tiny run, and a labelled folder mixing its own training, tuning and internal-test
    radiographs (two of them re-encoded as PNG) with COVID-DB images it never saw."""
    tmp = tmp_path_factory.mktemp("seen")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXR_CACHE", str(tmp / "cache"))
        run = train_tiny(tmp, data, "seen")
        protocol = read_card(run / "model.pt").protocol()
        expected = {}
        for part, records in (("training", protocol.train[:3]), ("tuning", protocol.tune[:2]),
                              ("internal-test", protocol.test[:2])):  # fmt: skip
            for k, r in enumerate(records):
                folder = tmp / "site" / r.label
                folder.mkdir(parents=True, exist_ok=True)
                name = f"{part}{k}.png" if k == 0 else f"{part}{k}{r.path.suffix}"
                Image.open(r.path).save(folder / name)  # re-encoded: the same radiograph
                expected[name] = part
        covid = data / "COVID-19_Radiography_Dataset"
        for label, source in (("NORMAL", "Normal"), ("PNEUMONIA", "Viral Pneumonia")):
            for k, path in enumerate(sorted((covid / source).rglob("*.png"))[:2]):
                folder = tmp / "site" / label
                folder.mkdir(parents=True, exist_ok=True)
                Image.open(path).save(folder / f"new{label}{k}.png")
                expected[f"new{label}{k}.png"] = "no"
        yield {"model": run / "model.pt", "root": tmp / "site", "expected": expected, "tmp": tmp}


def _seen(folder):
    with (folder / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return {r["path"].rsplit("/", 1)[1]: r for r in rows}


@pytest.fixture(scope="module")
def evaluated(site):
    """`cxr evaluate` on the mixed folder: the output folder and what it printed."""
    out = site["tmp"] / "all"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXR_CACHE", str(site["tmp"] / "cache"))
        result = _cxr("evaluate", site["model"], site["root"], "--out", out, "--bootstrap", 20,
                      "--workers", 0)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result


def test_predictions_mark_each_seen_image_and_unseen_only_leaves_them_out(
    site, evaluated, monkeypatch
):
    monkeypatch.setenv("CXR_CACHE", str(site["tmp"] / "cache"))
    out, result = evaluated
    rows = _seen(out)
    assert {name: r["seen"] for name, r in rows.items()} == site["expected"]
    threshold = read_card(site["model"]).threshold.value
    assert all(float(r["threshold"]) == pytest.approx(threshold, rel=1e-5) for r in rows.values())
    assert "5 of 11 images are the model's own training or tuning" in " ".join(
        result.stdout.split()
    )
    info = json.loads((out / "metrics.json").read_text())
    assert info["seen"] == {"training": 3, "tuning": 2, "internal-test": 2, "no": 4}

    unseen = site["tmp"] / "unseen"
    result = _cxr("evaluate", site["model"], site["root"], "--out", unseen, "--bootstrap", 20,
                  "--workers", 0, "--unseen-only")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    kept = _seen(unseen)
    assert set(kept) == {
        n for n, part in site["expected"].items() if part in {"no", "internal-test"}
    }
    assert json.loads((unseen / "metrics.json").read_text())["metrics"]["n"] == 6


def test_the_overlap_check_says_when_it_cannot_run_and_compare_calls_no_winner(
    site, evaluated, tmp_path, monkeypatch
):
    """The model file moved to a machine without its training data: the check says it did not
    run and --unseen-only refuses; compare against the evaluation that found training images
    names no winner."""
    monkeypatch.setenv("CXR_CACHE", str(site["tmp"] / "cache"))
    payload = read_model_file(site["model"])
    card = read_card(site["model"], payload)
    moved = dataclasses.replace(  # a file written before the cards stored content keys
        card, data={**card.data, "root": str(tmp_path / "elsewhere")}, overlap={}
    )
    away = write_model_file(tmp_path / "away.pt", {**payload, "card": moved.to_dict()})
    out = tmp_path / "away"
    result = _cxr("evaluate", away, site["root"], "--out", out, "--bootstrap", 20, "--workers", 0)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "overlap check not run" in result.stdout
    assert {r["seen"] for r in _seen(out).values()} == {"unknown"}
    refused = _cxr("evaluate", away, site["root"], "--out", tmp_path / "u", "--unseen-only",
                   "--bootstrap", 20, "--workers", 0)  # fmt: skip
    assert refused.returncode == 2
    assert refused.stdout.startswith("error: --unseen-only: overlap check not run")

    both = tmp_path / "both"
    result = _cxr("compare", evaluated[0], out, "--out", both, "--bootstrap", 20)
    assert result.returncode == 0, result.stdout + result.stderr
    text = " ".join(result.stdout.split())
    assert "no winner: seen trained or was tuned on 5 of these 11 images" in text
    assert "warning, away: overlap check not run" in text
    saved = json.loads((both / "comparison.json").read_text())
    assert saved["no_winner_because"] == ["seen trained or was tuned on 5 of these 11 images"]


def test_the_card_keys_find_the_models_own_images_without_the_data(site, tmp_path, monkeypatch):
    """The training data moved away and CXR_DATA an empty folder: the keys the card stored at
    training time still find each training, tuning and internal-test radiograph, re-encoded or
    not, and nothing else; the keys stay small (16 hex characters an image)."""
    monkeypatch.setenv("CXR_CACHE", str(site["tmp"] / "cache"))
    monkeypatch.setenv("CXR_DATA", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    payload = read_model_file(site["model"])
    card = read_card(site["model"], payload)
    protocol = card.protocol()
    stored = card.overlap
    parts = [protocol.train, protocol.tune, protocol.test]
    names = ("training", "tuning", "internal-test")
    assert [len(stored[p]) for p in names] == list(map(len, parts))
    assert len(json.dumps(stored)) < 20 * sum(map(len, parts)) + 1500
    moved = dataclasses.replace(card, data={**card.data, "root": str(tmp_path / "elsewhere")})
    away = write_model_file(tmp_path / "away.pt", {**payload, "card": moved.to_dict()})
    out = tmp_path / "away"
    result = _cxr("evaluate", away, site["root"], "--out", out, "--bootstrap", 20, "--workers", 0)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "overlap check not run" not in result.stdout
    assert {name: r["seen"] for name, r in _seen(out).items()} == site["expected"]
    assert "5 of 11 images are the model's own training or tuning" in " ".join(
        result.stdout.split()
    )
