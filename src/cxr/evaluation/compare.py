"""`cxr compare`: models judged on the very same images, side by side, with paired tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from cxr.errors import CxrError
from cxr.evaluation import plots
from cxr.evaluation.predictions import Predictions, load_predictions, score
from cxr.evaluation.stats import DeLongResult, McNemarResult, delong_test, mcnemar_test

TABLE = ("auroc", "average_precision", "accuracy", "sensitivity", "specificity", "brier", "ece")
TABLE_MULTICLASS = ("macro_auroc", "macro_average_precision", "accuracy", "balanced_accuracy")


@dataclass
class Pair:
    a: str
    b: str
    delong: DeLongResult | None  # AUROC of the binary (or normal-vs-abnormal) view
    mcnemar: McNemarResult


@dataclass
class Comparison:
    models: list[Predictions]
    scores: list[dict]
    pairs: list[Pair]

    @property
    def columns(self) -> tuple[str, ...]:
        return TABLE if self.models[0].binary else TABLE_MULTICLASS

    def best(self) -> int:
        key = "auroc" if self.models[0].binary else "macro_auroc"
        return int(np.nanargmax([s["metrics"][key] for s in self.scores]))


def aligned(models: list[Predictions]) -> list[Predictions]:
    """The same images in the same order, or a refusal naming what differs."""
    first = models[0]
    for other in models[1:]:
        if other.classes != first.classes:
            raise CxrError(
                f"{other.name} predicts {other.classes}, {first.name} {first.classes}: "
                "only models of the same classes compare"
            )
        if set(other.paths) != set(first.paths):
            only = sorted(set(other.paths) ^ set(first.paths))
            raise CxrError(
                f"{first.name} and {other.name} were evaluated on different images "
                f"({len(only)} not shared, e.g. {only[0]}): evaluate both on the same folder"
            )
    order = {p: i for i, p in enumerate(first.paths)}
    out = [first]
    for other in models[1:]:
        idx = np.argsort([order[p] for p in other.paths])
        other.paths = [other.paths[i] for i in idx]
        other.patients = [other.patients[i] for i in idx]
        other.labels = [other.labels[i] for i in idx]
        other.probs = other.probs[idx]
        out.append(other)
    return out


def _binary_view(p: Predictions) -> tuple[np.ndarray, np.ndarray] | None:
    if p.binary:
        return (p.targets == p.positive).astype(int), p.probs[:, p.positive]
    return p.abnormal_view()


def compare(models: list[Predictions], bootstrap: int = 1000, seed: int = 0) -> Comparison:
    if len(models) < 2:
        raise CxrError("compare needs at least two runs or evaluations")
    names = [m.name for m in models]
    if len(set(names)) < len(names):
        for i, m in enumerate(models):
            m.name = f"{m.name} ({i + 1})"
    models = aligned(models)
    pairs = []
    for a, b in combinations(models, 2):
        view_a, view_b = _binary_view(a), _binary_view(b)
        delong = delong_test(view_a[0], view_a[1], view_b[1]) if view_a and view_b else None
        pairs.append(
            Pair(a.name, b.name, delong, mcnemar_test(a.targets, a.decisions(), b.decisions()))
        )
    return Comparison(models, [score(m, bootstrap, seed) for m in models], pairs)


def load_and_compare(folders: list[Path], bootstrap: int = 1000, seed: int = 0) -> Comparison:
    return compare([load_predictions(f) for f in folders], bootstrap, seed)


def write(comparison: Comparison, out: Path) -> None:
    rows = []
    for m, s in zip(comparison.models, comparison.scores, strict=True):
        rows.append(
            {
                "model": m.name,
                "split": m.split,
                **{k: s["metrics"].get(k) for k in comparison.columns},
                **{f"{k}_ci95": s["ci95"].get(k) for k in comparison.columns},
            }
        )
    pairs = [
        {
            "a": p.a,
            "b": p.b,
            "delong": p.delong.__dict__ if p.delong else None,
            "mcnemar": p.mcnemar.__dict__,
        }
        for p in comparison.pairs
    ]
    (out / "comparison.json").write_text(
        json.dumps({"models": rows, "pairs": pairs}, indent=2, default=float)
    )
    plots.roc_figure(comparison.models).savefig(out / "roc_overlay.png", dpi=110)
    plots.pr_figure(comparison.models).savefig(out / "pr_overlay.png", dpi=110)
