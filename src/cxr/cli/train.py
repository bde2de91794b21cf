"""`cxr train` and `cxr study`: from a config to a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxr.cli.common import app, console
from cxr.cli.render import print_scores


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
    """The whole job: train, evaluate on the patient-grouped validation split, write report.html.

    Example: cxr study --config configs/quick.yaml
    """
    from cxr.study import run_study

    result = run_study(config, list(ctx.args), bootstrap)
    for warning in result.evaluation.warnings:
        console.print(f"[bold yellow]warning:[/bold yellow] {warning}", highlight=False)
    print_scores(result.evaluation.predictions, result.evaluation.scores)
    console.print(f"run folder: {result.run}")
    console.print(f"report: {result.report.resolve()}", highlight=False)
