"""`cxr evaluate | calibrate | compare | report`: numbers that hold."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cxr.cli.common import app, console, progress
from cxr.cli.render import print_scores
from cxr.errors import CxrError
from cxr.settings import data_root


@app.command("evaluate")
def evaluate_command(
    checkpoint: Annotated[Path, typer.Argument(help="A model file (a run's model.pt).")],
    data: Annotated[
        Path | None, typer.Option(help="Labelled folder (Kaggle layout, class folders or CSV).")
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="A split folder (test, val, train) or 'validation': the model's own "
            "patient-grouped validation split, rebuilt from its file."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (new; default evaluations/).")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Override the validation-chosen threshold (flagged).")
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95 % CIs.")] = 1000,
    workers: Annotated[int, typer.Option(help="Decoding processes.")] = 2,
) -> None:
    """Measure a frozen model on labelled images: predictions.csv, metrics.json (95 % CIs) and
    figures. The threshold and temperature are the ones stored in the model file.

    Example: cxr evaluate runs/quick/model.pt --data ../shared/data/chest_xray --split validation
    """
    from cxr.evaluation.evaluate import evaluate

    root = data or data_root() / "chest_xray"
    if out is not None and out.exists():
        raise CxrError(f"{out} exists; cxr never overwrites an evaluation (choose another --out)")
    with progress("reading images", None) as bar:
        result = evaluate(
            checkpoint,
            root,
            split,
            out,
            threshold,
            bootstrap,
            workers=workers,
            progress=lambda n: bar.advance(bar.task_ids[0], n),
        )
    for warning in result.warnings:
        console.print(f"[bold yellow]warning:[/bold yellow] {warning}", highlight=False)
    for path, reason in result.failures:
        console.print(f"[red]unreadable[/red] {path}: {reason}", highlight=False)
    print_scores(result.predictions, result.scores)
    console.print(f"evaluation folder: {result.out}")


@app.command("calibrate")
def calibrate_command(
    checkpoint: Annotated[Path, typer.Argument(help="A model file (a run's model.pt).")],
    predictions: Annotated[
        Path | None, typer.Option(help="Validation predictions; default: the run's own.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="New model file (never overwritten).")] = None,
) -> None:
    """Temperature scaling on validation predictions, written to a new model file with the
    threshold moved so decisions stay identical. New runs are calibrated during training.

    Example: cxr calibrate runs/quick/model.pt
    """
    from cxr.evaluation.calibration import calibrate_file

    predictions = predictions or checkpoint.parent / "val_predictions.csv"
    out = out or checkpoint.with_name(f"{checkpoint.stem}-calibrated.pt")
    result = calibrate_file(checkpoint, predictions, out)
    console.print(
        f"temperature {result.temperature:.3f}; expected calibration error "
        f"{result.ece_before:.4f} -> {result.ece_after:.4f}\nwrote {result.out}"
    )


@app.command("compare")
def compare_command(
    folders: Annotated[list[Path], typer.Argument(help="Run folders or cxr evaluate folders.")],
    out: Annotated[Path | None, typer.Option(help="Output folder (new).")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95 % CIs.")] = 1000,
) -> None:
    """Models side by side on the same images, with DeLong (AUROC) and McNemar (accuracy) tests.

    Example: cxr compare runs/quick runs/kermany_effnet_lite0
    """
    from cxr.evaluation.compare import load_and_compare, write
    from cxr.outputs import new_output_dir

    comparison = load_and_compare(folders, bootstrap)
    if out is not None and out.exists():
        raise CxrError(f"{out} exists; cxr never overwrites a comparison (choose another --out)")
    target = (
        new_output_dir(out.parent, out.name)
        if out
        else new_output_dir(Path("comparisons"), "compare")
    )
    write(comparison, target)
    table = Table(title=f"{comparison.scores[0]['metrics']['n']} images, same for every model")
    table.add_column("model")
    for key in comparison.columns:
        table.add_column(key)
    for m, s in zip(comparison.models, comparison.scores, strict=True):
        table.add_row(m.name, *[f"{s['metrics'][k]:.4f}" for k in comparison.columns])
    console.print(table)
    for pair in comparison.pairs:
        text = f"{pair.a} vs {pair.b}: "
        if pair.delong:
            d = pair.delong
            text += f"AUROC difference {d.difference:+.4f}, DeLong p={d.p_value:.3g}; "
        text += (
            f"McNemar {pair.mcnemar.only_a_right}/{pair.mcnemar.only_b_right} "
            f"p={pair.mcnemar.p_value:.3g}"
        )
        console.print(text, highlight=False)
    console.print(f"comparison folder: {target}")


@app.command("report")
def report_command(
    folders: Annotated[list[Path], typer.Argument(help="Run folders or cxr evaluate folders.")],
    out: Annotated[Path, typer.Option(help="The HTML file to write (never overwritten).")] = Path(
        "report.html"
    ),
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95 % CIs.")] = 1000,
) -> None:
    """One self-contained HTML report: data, model cards, curves, metrics with CIs, comparison
    and conclusions drawn from the numbers.

    Example: cxr report runs/quick evaluations/quick-validation --out report.html
    """
    from cxr.evaluation.report import build_report

    path = build_report(folders, out, bootstrap)
    console.print(f"report: {path.resolve()}")
