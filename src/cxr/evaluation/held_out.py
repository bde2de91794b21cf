"""Train a config and test it on its internal-test patients: the one step the study,
cross-validation and the lever table repeat."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.utilities.rank_zero import rank_zero_only

from cxr.errors import CxrError
from cxr.evaluation.evaluate import Evaluation, evaluate_trained
from cxr.evaluation.external import judge_trained
from cxr.models.io import MODEL_FILE
from cxr.progress import Stages, silent
from cxr.training.config import TrainConfig
from cxr.training.fit import train


def train_and_test(
    cfg: TrainConfig, bootstrap: int = 1000, progress: Stages = silent
) -> tuple[Path, Evaluation]:
    """The run folder, and its model's evaluation on the internal test in `run`/evaluation,
    scored from what training holds: the model, the data and its split, in memory; and on the
    external judge the config declares, if any (`run`/evaluation/external.json)."""
    trained = train(cfg)
    if rank_zero_only.rank != 0:  # the other ranks' models are not finished: rank 0 tests
        raise CxrError(
            "cxr study, cv and levers test on one process: train on several with cxr train, "
            "then cxr evaluate the model it writes"
        )
    evaluation = evaluate_trained(
        trained.model,
        trained.run / MODEL_FILE,
        trained.dataset.root,
        trained.protocol.test,
        trained.run / "evaluation",
        bootstrap=bootstrap,
        workers=cfg.data.workers,
        progress=progress,
    )
    if cfg.evaluation.external:
        evaluation.external = judge_trained(
            cfg.evaluation.external,
            trained.model,
            trained.run / MODEL_FILE,
            evaluation.out,
            bootstrap,
            cfg.data.workers,
        )
    return trained.run, evaluation
