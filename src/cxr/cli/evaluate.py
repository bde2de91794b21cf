"""`cxr evaluate | calibrate | compare | report`: numbers that hold."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cxr.cli.common import app, console, progress, say
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
            help="A split folder (test, val, train), or the model's own patients rebuilt from "
            "its card: 'internal-test' (touched by evaluation only) or 'tuning'."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (new; default evaluations/).")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Override the tuning-chosen threshold (flagged).")
    ] = None,
    label_map: Annotated[
        str | None,
        typer.Option(help="Folder labels to model classes, e.g. 'Normal=NORMAL,COVID=PNEUMONIA'."),
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95 % CIs.")] = 1000,
    workers: Annotated[int, typer.Option(help="Decoding processes.")] = 2,
) -> None:
    """Measure a frozen model on labelled images: predictions.csv, metrics.json (95 % CIs) and
    figures. The threshold and calibration are the ones stored in the model file.

    Example: cxr evaluate runs/quick/model.pt --data ../shared/data/chest_xray --split internal-test
    """
    from cxr.evaluation.evaluate import evaluate, parse_label_map

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
            label_map=parse_label_map(label_map),
        )
    for warning in result.warnings:
        say("warning:", warning)
    for path, reason in result.failures:
        say("unreadable", f"{path}: {reason}")
    print_scores(result.predictions, result.scores)
    console.print(f"evaluation folder: {result.out}")


@app.command("calibrate")
def calibrate_command(
    checkpoint: Annotated[Path, typer.Argument(help="A model file (a run's model.pt).")],
    predictions: Annotated[
        Path | None,
        typer.Option(
            help="Labelled predictions it made (a cxr evaluate predictions.csv, e.g. on a new "
            "site's images); default: its run's tuning_predictions.csv."
        ),
    ] = None,
    method: Annotated[
        str, typer.Option(help="auto (lowest held-out ECE, if any beats none), temperature, platt.")
    ] = "auto",
    out: Annotated[Path | None, typer.Option(help="New model file (never overwritten).")] = None,
) -> None:
    """Re-fit the calibration on labelled predictions and write a new model file, the threshold
    moved so decisions stay identical. Training already calibrates on its tuning split.

    Example: cxr calibrate runs/quick/model.pt --predictions evaluations/quick-site2/predictions.csv
    """
    from cxr.evaluation.calibration import calibrate_file

    predictions = predictions or checkpoint.parent / "tuning_predictions.csv"
    out = out or checkpoint.with_name(f"{checkpoint.stem}-calibrated.pt")
    result = calibrate_file(checkpoint, predictions, out, method)
    console.print(
        f"{result.calibration.method}: expected calibration error "
        f"{result.ece_before:.4f} -> {result.ece_after:.4f}\n{result.calibration.verdict}\n"
        f"wrote {result.out}",
        highlight=False,
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
        console.print(text)
    console.print(f"comparison folder: {target}")


@app.command("report")
def report_command(
    folders: Annotated[list[Path], typer.Argument(help="Run folders or cxr evaluate folders.")],
    out: Annotated[Path, typer.Option(help="The HTML file to write (never overwritten).")] = Path(
        "report.html"
    ),
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95 % CIs.")] = 1000,
    cv: Annotated[
        list[Path] | None, typer.Option(help="A `cxr cv` folder: its fold spread goes in.")
    ] = None,
) -> None:
    """One self-contained HTML report: protocol, data, model cards, curves, metrics with CIs,
    comparison and conclusions drawn from the numbers.

    Example: cxr report runs/quick/evaluation runs/quick-cv5 --out report.html
    """
    from cxr.evaluation.report import build_report

    path = build_report(folders, out, bootstrap, cv=cv or [])
    console.print(f"report: {path.resolve()}")
