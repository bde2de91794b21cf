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
from cxr.metrics.stats import DeLongResult, McNemarResult, delong_test, mcnemar_test
from cxr.progress import Stages, silent

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

    def caveats(self) -> list[tuple[str, str]]:
        """(model, warning) for every warning its evaluation carried, to print beside its row."""
        return [(m.name, w) for m in self.models for w in m.warnings]

    def unfair(self) -> list[str]:
        """Why no winner may be called: models that trained or were tuned on these images."""
        return [
            f"{m.name} trained or was tuned on {m.learned_from} of these {len(m.paths)} images"
            for m in self.models
            if m.learned_from
        ]

    def best(self) -> int:
        key = "auroc" if self.models[0].binary else "macro_auroc"
        return int(np.nanargmax([s["metrics"][key] for s in self.scores]))


def _keys(p: Predictions) -> list[str]:
    """Images are identified by their bytes (SHA-256), so a relative and an absolute path to the
    same file, or a copy, are the same image (the path only where no hash was recorded); the
    n-th copy of byte-identical files under one label is told apart by its count, and copies
    filed under different labels never pair with each other."""
    seen: dict[str, int] = {}
    keys = []
    for digest, path, label in zip(p.digest, p.paths, p.labels, strict=True):
        key = f"{digest or path}|{label}"
        seen[key] = seen.get(key, -1) + 1
        keys.append(f"{key}#{seen[key]}")
    return keys


def aligned(models: list[Predictions]) -> list[Predictions]:
    """The same images in the same order, or a refusal naming what differs."""
    first = models[0]
    first_keys = _keys(first)
    out = [first]
    for other in models[1:]:
        if other.classes != first.classes:
            raise CxrError(
                f"{other.name} predicts {other.classes}, {first.name} {first.classes}: "
                "only models of the same classes compare"
            )
        keys = _keys(other)
        if set(keys) != set(first_keys):
            only = len(set(keys) ^ set(first_keys))
            example = next(p for k, p in zip(keys, other.paths, strict=True) if k not in first_keys)
            raise CxrError(
                f"{first.name} and {other.name} were evaluated on different images ({only} not "
                f"shared by content, e.g. {example}): evaluate both on the same folder"
            )
        position = {k: i for i, k in enumerate(keys)}
        idx = np.array([position[k] for k in first_keys])
        for column in ("paths", "digest", "patients", "labels", "seen"):
            values = getattr(other, column)
            if values is not None:
                setattr(other, column, [values[i] for i in idx])
        other.probs = other.probs[idx]
        out.append(other)
    return out


def compare(
    models: list[Predictions], bootstrap: int = 1000, seed: int = 0, progress: Stages = silent
) -> Comparison:
    if len(models) < 2:
        raise CxrError("compare needs at least two runs or evaluations")
    names = [m.name for m in models]
    if len(set(names)) < len(names):
        for i, m in enumerate(models):
            m.name = f"{m.name} ({i + 1})"
    models = aligned(models)
    pairs = []
    for a, b in combinations(models, 2):
        view_a, view_b = a.binary_view(), b.binary_view()
        delong = delong_test(view_a[0], view_a[1], view_b[1]) if view_a and view_b else None
        pairs.append(
            Pair(a.name, b.name, delong, mcnemar_test(a.targets, a.decisions(), b.decisions()))
        )
    return Comparison(models, [score(m, bootstrap, seed, progress) for m in models], pairs)


def load_and_compare(
    folders: list[Path], bootstrap: int = 1000, seed: int = 0, progress: Stages = silent
) -> Comparison:
    return compare([load_predictions(f) for f in folders], bootstrap, seed, progress)


def write(comparison: Comparison, out: Path) -> None:
    rows = []
    for m, s in zip(comparison.models, comparison.scores, strict=True):
        rows.append(
            {
                "model": m.name,
                "split": m.split,
                "warnings": m.warnings,
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
        json.dumps(
            {"models": rows, "pairs": pairs, "no_winner_because": comparison.unfair()},
            indent=2,
            default=float,
        )
    )
    plots.roc_figure(comparison.models).savefig(out / "roc_overlay.png", dpi=110)
    plots.pr_figure(comparison.models).savefig(out / "pr_overlay.png", dpi=110)
