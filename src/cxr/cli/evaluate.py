"""`cxr evaluate | calibrate | compare | report`: numbers that hold."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cxr.cli.common import (
    Bootstrap,
    CalibrationMethod,
    Dataset,
    Evaluations,
    ModelFile,
    RunsOrModelFiles,
    Split,
    Workers,
    app,
    existing,
    in_file,
    out_file,
    out_folder,
    parse_label_map,
    progress,
    say,
    valid_label_map,
    valid_threshold_rule,
    warn,
)
from cxr.cli.early import check_calibration, check_evaluation
from cxr.cli.render import print_comparison, print_scores
from cxr.errors import CxrError
from cxr.outputs import default_output_dir, must_be_new
from cxr.settings import data_root

if TYPE_CHECKING:
    from cxr.evaluation.evaluate import Evaluation


SplitOption = Annotated[
    Split | None,
    typer.Option(
        "--split",
        help="A split folder (test, val, train), or the model's own patients rebuilt from "
        "its card: 'internal-test' (touched by evaluation only) or 'tuning'.",
    ),
]
Threshold = Annotated[
    float | None,
    typer.Option(help="Override the tuning-chosen threshold (flagged).", min=0, max=1),
]
LabelMap = Annotated[
    str | None,
    typer.Option(
        help="Folder labels to model classes, e.g. 'Normal=NORMAL,COVID=PNEUMONIA'.",
        callback=valid_label_map,
    ),
]
Shift = Annotated[
    bool,
    typer.Option(
        "--shift",
        help="Also re-score the images under acquisition changes (contrast, blur, noise, "
        "JPEG, resolution, rotation, crop) at several strengths: shift.json and shift.png.",
    ),
]
UnseenOnly = Annotated[
    bool,
    typer.Option(
        "--unseen-only",
        help="Score only the images that are not the model's own training or tuning "
        "radiographs (its internal-test ones stay: the model never learned from them).",
    ),
]


@app.command("evaluate")
def evaluate_command(
    model: ModelFile,
    images: Dataset = None,
    split: SplitOption = None,
    out: Annotated[
        Path | None, out_folder("New folder for the evaluation (default outputs/evaluate/…)")
    ] = None,
    threshold: Threshold = None,
    label_map: LabelMap = None,
    bootstrap: Bootstrap = 1000,
    workers: Workers = 2,
    shift: Shift = False,
    unseen_only: UnseenOnly = False,
) -> None:
    """Measure a frozen model on labelled images: predictions.csv, metrics.json (95 % CIs) and
    figures. The threshold and calibration are the ones stored in the model file.

    Example: cxr evaluate runs/quick/model.pt ../shared/data/chest_xray --split internal-test
    """
    root, labels = images or data_root() / "chest_xray", parse_label_map(label_map)
    part = split and split.value
    check_evaluation(model, root, part, labels, threshold)  # before torch loads
    from cxr.evaluation.evaluate import evaluate

    with progress() as stages:
        result = evaluate(
            model,
            root,
            part,
            out,
            threshold,
            bootstrap,
            workers=workers,
            progress=stages,
            label_map=labels,
            shift=shift,
            unseen_only=unseen_only,
        )
    _print_evaluation(result)


def _print_evaluation(result: Evaluation) -> None:
    """What an evaluation found: its warnings, unreadable files, scores and drift."""
    for warning in result.warnings:
        warn(warning)
    for path, reason in result.failures:
        say(f"unreadable {path}: {reason}", "red")
    print_scores(result.predictions, result.scores)
    from cxr.evaluation.drift import shift_line

    line = shift_line(result.predictions.card, result.predictions.probs)
    if line:
        warn(line)
    if result.shift:
        from cxr.evaluation.shift import shift_conclusion

        say(shift_conclusion(result.shift))
    say(f"evaluation folder: {result.out}")


@app.command("calibrate")
def calibrate_command(
    model: ModelFile,
    predictions: Annotated[
        Path | None,
        in_file(
            "Labelled predictions it made (a cxr evaluate predictions.csv, e.g. on a new "
            "site's images); default: its run's tuning_predictions.csv."
        ),
    ] = None,
    method: Annotated[
        CalibrationMethod,
        typer.Option(
            help="auto (the lowest held-out ECE, if any beats none); platt for binary models, "
            "vector for multi-class ones."
        ),
    ] = CalibrationMethod.auto,
    out: Annotated[
        Path | None, out_file("New model file (default: beside MODEL, named MODEL-calibrated.pt)")
    ] = None,
) -> None:
    """Re-fit the calibration on labelled predictions and write a new model file, the threshold
    moved so decisions stay identical. Training already calibrates on its tuning split.

    Example: cxr calibrate runs/quick/model.pt --predictions outputs/evaluate/site2/predictions.csv
    """
    predictions = predictions or model.parent / "tuning_predictions.csv"
    if not predictions.is_file():
        raise CxrError(f"{predictions}: no such predictions file (give --predictions)")
    out = out or must_be_new(model.with_name(f"{model.stem}-calibrated.pt"))
    check_calibration(model, method)

    from cxr.evaluation.calibration import calibrate_file

    result = calibrate_file(model, predictions, out, method.value)
    say(
        f"{result.calibration.method}: expected calibration error on the images it was fitted "
        f"on {result.ece_before:.4f} -> {result.ece_after:.4f} (in-sample, so optimistic; "
        f"held out, next line)\n{result.calibration.verdict}\n"
        f"wrote {result.out}"
    )
    from cxr.evaluation.drift import label_budget
    from cxr.models.io import read_card

    card = read_card(model)
    budget = label_budget(card)
    if budget is None:
        kept = len(card.tuning.get("targets", ()))
        say(f"labels a site needs: not estimated ({kept} tuning predictions in the model file)")
    else:
        needed, curve = budget
        say(
            f"labels a site needs: about {needed} (held-out ECE on the tuning split after "
            f"calibrating on n images: {', '.join(f'n={n} {ece:.3f}' for n, ece in curve)})"
        )


@app.command("ensemble")
def ensemble_command(
    models: RunsOrModelFiles,
    out: Annotated[Path, out_folder("New folder for the ensemble's model.pt")],
    threshold_rule: Annotated[
        str | None,
        typer.Option(
            help="e.g. sensitivity>=0.95 or youden; default: the first member's rule.",
            callback=valid_threshold_rule,
        ),
    ] = None,
) -> None:
    """Combine models trained on the same patient split into one model file (mean of their
    calibrated log-probabilities); its calibration and threshold are chosen again on the tuning
    split. Evaluate, predict, export and serve take it like any model.

    Example: cxr ensemble runs/quick runs/quick-seed2 --out runs/quick-ensemble
    """
    from cxr.evaluation.ensemble import build_ensemble

    path = build_ensemble(models, out, threshold_rule)
    from cxr.models.io import read_card

    card = read_card(path)
    for label, value in card.summary().items():
        say(f"{label}: {value}")
    say(f"model file: {path}")


@app.command("compare")
def compare_command(
    evaluations: Evaluations,
    out: Annotated[
        Path | None, out_folder("New folder for the comparison (default outputs/compare/…)")
    ] = None,
    bootstrap: Bootstrap = 1000,
) -> None:
    """Models side by side on the same images (matched by content, whatever their paths), with
    DeLong (AUROC) and McNemar (accuracy) tests.

    Example: cxr compare runs/quick runs/kermany_effnet_lite1
    """
    from cxr.evaluation.compare import load_and_compare, write

    with progress() as stages:
        comparison = load_and_compare(evaluations, bootstrap, progress=stages)
        if out is None:
            out = default_output_dir("compare", "-vs-".join(e.name for e in evaluations))
        else:
            out.mkdir(parents=True)
        write(comparison, out)
    print_comparison(comparison)
    say(f"comparison folder: {out}")


@app.command("report")
def report_command(
    evaluations: Evaluations,
    out: Annotated[
        Path | None, out_file("The HTML file to write (default outputs/report/…/report.html)")
    ] = None,
    bootstrap: Bootstrap = 1000,
    cv: Annotated[
        list[Path] | None,
        typer.Option(help="A `cxr cv` folder: its fold spread goes in.", callback=existing),
    ] = None,
) -> None:
    """One self-contained HTML report: protocol, data, model cards, curves, metrics with CIs,
    comparison and conclusions drawn from the numbers.

    Example: cxr report runs/quick/evaluation --cv runs/quick-cv5 --out report.html
    """
    from cxr.evaluation.report import build_report

    out = out or default_output_dir("report", "report") / "report.html"
    with progress() as stages:
        path = build_report(evaluations, out, bootstrap, cv=cv or [], progress=stages)
    say(f"report: {path.resolve()}")
