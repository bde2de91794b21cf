"""`cxr train` and `cxr study`: from a config to a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxr.cli.common import app, console, say
from cxr.cli.render import print_cv, print_scores
from cxr.errors import CxrError


@app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option(help="YAML config, e.g. configs/quick.yaml.")
    ] = None,
) -> None:
    """Train a model; extra `key=value` arguments override the config (unknown keys are refused).

    Example: cxr train --config configs/quick.yaml optim.epochs=2 data.limit=200
    """
    from cxr.training.config import load_config
    from cxr.training.fit import fit

    cfg = load_config(config, list(ctx.args))
    run = fit(cfg)
    console.print(f"run folder: {run}")
    console.print((run / "metrics.json").read_text())


@app.command("study", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def study(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option(help="YAML config, e.g. configs/quick.yaml.")
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95 % CIs.")] = 1000,
) -> None:
    """The whole job: train, evaluate on internal-test patients that tuned nothing, report.html.

    Example: cxr study --config configs/quick.yaml
    """
    from cxr.study import run_study

    result = run_study(config, list(ctx.args), bootstrap)
    for warning in result.evaluation.warnings:
        say("warning:", warning)
    print_scores(result.evaluation.predictions, result.evaluation.scores)
    console.print(f"run folder: {result.run}")
    console.print(f"report: {result.report.resolve()}")


@app.command("cv", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def cv_command(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option(help="YAML config, e.g. configs/quick.yaml.")
    ] = None,
    folds: Annotated[int, typer.Option(help="Patient folds; each is the internal test once.")] = 5,
    out: Annotated[Path | None, typer.Option(help="Output folder (new).")] = None,
) -> None:
    """Patient-grouped k-fold cross-validation: how much the figures move between folds.

    Example: cxr cv --config configs/quick.yaml --folds 5
    """
    from cxr.evaluation.cv import run_cv
    from cxr.training.config import load_config

    if out is not None and out.exists():
        raise CxrError(f"{out} exists; cxr never overwrites (choose another --out)")
    cfg = load_config(config, list(ctx.args))

    def said(k: int, metrics: dict) -> None:
        key = "auroc" if "auroc" in metrics else "macro_auroc"
        console.print(f"fold {k + 1}/{folds}: internal-test {key} {metrics[key]:.4f}")

    folder = run_cv(cfg, folds, out, on_fold=said)
    print_cv(folder)
    console.print(f"cv folder: {folder}")
