"""`cxr cv`: patient-grouped k-fold cross-validation. Each fold's patients are the internal test
once; training and tuning come from the others. The spread across folds says how much one split's
figures can be trusted to the digit."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from cxr.errors import CxrError
from cxr.evaluation.held_out import train_and_test
from cxr.outputs import new_output_dir
from cxr.training.config import TrainConfig

SUMMARISED = (
    "auroc",
    "accuracy",
    "sensitivity",
    "specificity",
    "ece",
    "macro_auroc",
    "balanced_accuracy",
)


def run_cv(
    cfg: TrainConfig,
    folds: int,
    out: Path | None = None,
    bootstrap: int = 200,
    on_fold: Callable[[int, dict], None] | None = None,
) -> Path:
    """Train and evaluate `folds` times; cv.json holds each fold's metrics and their spread."""
    if folds < 2:
        raise CxrError(f"--folds must be at least 2, got {folds}")
    out = out or new_output_dir(Path(cfg.runs_dir), f"{cfg.name}-cv{folds}")
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for k in range(folds):
        fold_cfg = replace(
            cfg,
            name=f"{cfg.name}-fold{k + 1}",
            runs_dir=str(out),
            data=replace(cfg.data, fold=k, folds=folds),
        )
        run, result = train_and_test(fold_cfg, bootstrap)
        metrics = {k: v for k, v in result.scores["metrics"].items() if isinstance(v, int | float)}
        results.append({"fold": k + 1, "run": run.name, "metrics": metrics})
        if on_fold:
            on_fold(k, metrics)
    summary = summarise([r["metrics"] for r in results])
    (out / "cv.json").write_text(
        json.dumps({"name": cfg.name, "folds": results, "summary": summary}, indent=2)
    )
    return out


def summarise(per_fold: list[dict]) -> dict[str, dict[str, float]]:
    out = {}
    for key in SUMMARISED:
        values = np.array([m[key] for m in per_fold if key in m], float)
        if len(values):
            out[key] = {
                "mean": float(np.nanmean(values)),
                "sd": float(np.nanstd(values, ddof=1)) if len(values) > 1 else float("nan"),
                "min": float(np.nanmin(values)),
                "max": float(np.nanmax(values)),
            }
    return out


def read_cv(folder: Path) -> dict:
    path = Path(folder) / "cv.json"
    if not path.is_file():
        raise CxrError(f"{folder}: not a cxr cv folder (no cv.json)")
    return json.loads(path.read_text())
