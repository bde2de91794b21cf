"""`cxr train`, `cxr study` and `cxr cv`: from a config to a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxr.cli.common import Bootstrap, app, console, in_file, out_folder, progress, say, warn
from cxr.cli.render import print_cv, print_external, print_scores

Config = Annotated[Path | None, in_file("YAML config, e.g. configs/quick.yaml.")]


@app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    config: Config = None,
) -> None:
    """Train a model; extra `key=value` arguments override the config (unknown keys are refused).

    Example: cxr train --config configs/quick.yaml optim.epochs=2 data.limit=200
    """
    from cxr.training.config import load_config

    cfg = load_config(config, list(ctx.args))  # a mistyped key is refused before torch loads
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from cxr.training.fit import fit

    run = fit(cfg)
    if rank_zero_only.rank != 0:  # the other DDP processes wrote nothing to show
        return
    say(f"run folder: {run}")
    say((run / "metrics.json").read_text())


@app.command("study", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def study(
    ctx: typer.Context,
    config: Config = None,
    bootstrap: Bootstrap = 1000,
) -> None:
    """The whole job: train, evaluate on internal-test patients that tuned nothing, report.html;
    extra `key=value` arguments override the config, as for cxr train.

    Example: cxr study --config configs/quick.yaml
    """
    from cxr.training.config import load_config

    load_config(config, list(ctx.args))  # a mistyped key is refused before torch loads
    from cxr.study import run_study

    with progress() as stages:
        result = run_study(config, list(ctx.args), bootstrap, stages)
    for warning in result.evaluation.warnings:
        warn(warning)
    print_scores(result.evaluation.predictions, result.evaluation.scores)
    if result.evaluation.external:
        print_external(result.evaluation.external.figures)
    say(f"run folder: {result.run}")
    say(f"report: {result.report.resolve()}")


@app.command("cv", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def cv_command(
    ctx: typer.Context,
    config: Config = None,
    folds: Annotated[
        int, typer.Option(help="Patient folds; each is the internal test once.", min=2)
    ] = 5,
    out: Annotated[
        Path | None, out_folder("New folder for the folds' runs (default RUNS_DIR/NAME-cvK)")
    ] = None,
) -> None:
    """Patient-grouped k-fold cross-validation: how much the figures move between folds; extra
    `key=value` arguments override the config, as for cxr train.

    Example: cxr cv --config configs/quick.yaml --folds 5
    """
    from cxr.training.config import load_config

    cfg = load_config(config, list(ctx.args))  # a mistyped key is refused before torch loads
    from cxr.evaluation.cv import run_cv

    def said(k: int, metrics: dict) -> None:
        key = "auroc" if "auroc" in metrics else "macro_auroc"
        say(f"fold {k + 1}/{folds}: internal-test {key} {metrics[key]:.4f}")

    folder = run_cv(cfg, folds, out, on_fold=said)
    print_cv(folder)
    say(f"cv folder: {folder}")


@app.command("levers", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def levers_command(
    ctx: typer.Context,
    lever: Annotated[
        list[str],
        typer.Option(
            help="'NAME: key=value [key=value ...]', once per lever, e.g. 'EMA: optim.ema=0.999'."
        ),
    ],
    config: Config = None,
    folds: Annotated[
        int | None,
        typer.Option(help="Also run patient-fold CV per lever (k trainings each).", min=2),
    ] = None,
    bootstrap: Bootstrap = 1000,
    out: Annotated[Path | None, out_folder("New folder for the runs and levers.md")] = None,
) -> None:
    """Which changes to the recipe help: the baseline (config + `key=value` arguments) and each
    lever trained on the same split, judged on the same internal-test images (paired DeLong test),
    with training wall time.

    Example: cxr levers --config configs/demo.yaml --lever "EMA: optim.ema=0.999" --lever
    "seed 1: seed=1"
    """
    from cxr.evaluation.levers import parse_lever, run_levers

    parsed = [parse_lever(text) for text in lever]

    def said(name: str, row: dict) -> None:
        key = "auroc" if "auroc" in row["metrics"] else "macro_auroc"
        figure, seconds, judged = row["metrics"][key], row["wall_s"], row.get("external")
        beside = f", {judged['judge']} auroc {judged['auroc']:.4f}" if judged else ""
        say(f"{name}: internal-test {key} {figure:.4f}{beside} ({seconds:.0f} s)")

    folder = run_levers(config, list(ctx.args), parsed, out, folds, bootstrap, on_run=said)
    console.print((folder / "levers.md").read_text(), markup=False, highlight=False)
    say(f"levers folder: {folder}")
