"""Train a config and test it on its internal-test patients: the one step the study,
cross-validation and the lever table repeat."""

from __future__ import annotations

from pathlib import Path

from cxr.evaluation.evaluate import INTERNAL_TEST, Evaluation, evaluate
from cxr.progress import Stages, silent
from cxr.settings import resolve_data
from cxr.training.config import TrainConfig
from cxr.training.fit import fit


def train_and_test(
    cfg: TrainConfig, bootstrap: int = 1000, progress: Stages = silent
) -> tuple[Path, Evaluation]:
    """The run folder, and its model's evaluation on the internal test in `run`/evaluation."""
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
