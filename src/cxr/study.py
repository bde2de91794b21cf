"""The whole job in one call, for the README's main command and for notebooks: train a config,
evaluate the model on its internal-test patients (which tuned nothing), write the HTML report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxr.evaluation.evaluate import INTERNAL_TEST, Evaluation, evaluate
from cxr.evaluation.report import build_report
from cxr.progress import Stages, silent
from cxr.settings import resolve_data
from cxr.training.config import TrainConfig, load_config
from cxr.training.fit import fit


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
    )
    return Study(run, evaluation, report)


def train_and_test(
    cfg: TrainConfig, bootstrap: int = 1000, progress: Stages = silent
) -> tuple[Path, Evaluation]:
    """Train `cfg` and evaluate its model on the internal-test patients into `run`/evaluation:
    the one step the study, cross-validation and the lever table repeat."""
    run = fit(cfg)
    evaluation = evaluate(
        run / "model.pt",
        resolve_data(cfg.data.root),
        INTERNAL_TEST,
        run / "evaluation",
        bootstrap=bootstrap,
        workers=cfg.data.workers,
        progress=progress,
    )
    return run, evaluation
