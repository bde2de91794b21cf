"""The whole job in one call, for the README's main command and for notebooks: train a config,
evaluate the model on its internal-test patients (which tuned nothing), write the HTML report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxr.evaluation.evaluate import Evaluation
from cxr.evaluation.held_out import train_and_test
from cxr.evaluation.report import build_report
from cxr.progress import Stages, silent
from cxr.training.config import load_config


@dataclass(frozen=True)
class Study:
    run: Path
    evaluation: Evaluation
    report: Path


def run_study(
    config: Path | None,
    overrides: list[str] = (),
    bootstrap: int = 1000,
    progress: Stages = silent,
) -> Study:
    """Everything lands in the new run folder: model.pt, evaluation/, report.html. The report
    reuses the evaluation's scores, so its intervals are the very ones printed."""
    run, evaluation = train_and_test(load_config(config, list(overrides)), bootstrap, progress)
    report = build_report(
        [(evaluation.predictions, evaluation.scores)],
        run / "report.html",
        bootstrap,
        progress=progress,
        external=[evaluation.external.figures] if evaluation.external else [],
    )
    return Study(run, evaluation, report)
