"""The whole job in one call, for the README's main command and for notebooks: train a config,
evaluate the model on its own patient-grouped validation split, write the HTML report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxr.evaluation.evaluate import VALIDATION, Evaluation, evaluate
from cxr.evaluation.report import build_report
from cxr.settings import resolve_data
from cxr.training.config import load_config
from cxr.training.fit import fit


@dataclass(frozen=True)
class Study:
    run: Path
    evaluation: Evaluation
    report: Path


def run_study(config: Path | None, overrides: list[str] = (), bootstrap: int = 1000) -> Study:
    """Everything lands in the new run folder: model.pt, evaluation/, report.html."""
    cfg = load_config(config, list(overrides))
    run = fit(cfg)
    evaluation = evaluate(
        run / "model.pt",
        resolve_data(cfg.data.root),
        VALIDATION,
        run / "evaluation",
        bootstrap=bootstrap,
        workers=cfg.data.workers,
    )
    report = build_report([run / "evaluation"], run / "report.html", bootstrap)
    return Study(run, evaluation, report)
