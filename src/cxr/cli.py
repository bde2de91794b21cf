"""The `cxr` command: a thin shell over the package, one verb per step of the user's job."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cxr.errors import CxrError
from cxr.settings import data_root

console = Console(soft_wrap=True)  # never break a file path across lines
app = typer.Typer(
    help="cxr: chest X-ray classification you can trust.\n\n"
    "Example: cxr data inspect ../shared/data/chest_xray",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Look at, cache and fetch datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
benchmark_app = typer.Typer(help="Measure speed on this machine.", no_args_is_help=True)
app.add_typer(benchmark_app, name="benchmark")

SchemeOpt = Annotated[
    str,
    typer.Option(
        help="Label scheme: folder (folder names) or kermany3 "
        "(normal / bacterial / viral from Kermany file names)."
    ),
]
NegativeOpt = Annotated[
    str | None,
    typer.Option(help="Make it binary: this class against all others, e.g. --negative normal."),
]


def _progress(description: str, total: int | None) -> Progress:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    bar.add_task(description, total=total)
    return bar


def _dataset(root: Path | None, scheme: str, negative: str | None):
    from cxr.data.discovery import discover
    from cxr.data.labels import LabelScheme

    return discover(root or data_root() / "chest_xray", LabelScheme(scheme, negative))


@data_app.command("inspect")
def data_inspect(
    root: Annotated[
        Path | None, typer.Argument(help="Dataset folder; default $CXR_DATA/chest_xray.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where summary.json and the PNGs go; default outputs/inspect/<folder name>."
        ),
    ] = None,
    scheme: SchemeOpt = "folder",
    negative: NegativeOpt = None,
) -> None:
    """Count images, patients, sizes, duplicates and bad files; chart the classes; draw a montage.

    Example: cxr data inspect ../shared/data/COVID-19_Radiography_Dataset --out outputs/covid
    """
    from cxr.data.inspect import plot_class_distribution, plot_montage, summarise

    dataset = _dataset(root, scheme, negative)
    with _progress(f"Reading {dataset.root.name}", len(dataset.records)) as bar:
        summary = summarise(dataset, progress=lambda n: bar.advance(bar.task_ids[0], n))
    out = out or Path("outputs") / "inspect" / dataset.root.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(summary.to_json())
    chart = plot_class_distribution(summary, out)
    montage = plot_montage(dataset, out)

    table = Table(title=f"{summary.root} ({summary.layout}, scheme {summary.scheme})")
    for column in ("split", "class", "images", "patients/studies"):
        table.add_column(
            column, justify="right" if column in {"images", "patients/studies"} else "left"
        )
    for split, per_class in summary.counts.items():
        for label, n in per_class.items():
            table.add_row(split, label, f"{n:,}", f"{summary.patients[split][label]:,}")
    console.print(table)
    console.print(
        f"images {summary.images:,} | imbalance {summary.imbalance_ratio:.2f} : 1 | "
        f"width {summary.width_range[0]}-{summary.width_range[1]} px, "
        f"height {summary.height_range[0]}-{summary.height_range[1]} px | "
        f"modes {summary.modes} | formats {summary.formats} | colour images {summary.colour_images}"
    )
    console.print(
        f"duplicates: {summary.duplicate_groups} groups, "
        f"{summary.redundant_copies} redundant copies "
        f"({summary.duplicates_across_splits} across splits, "
        f"{summary.duplicates_across_labels} with conflicting labels)"
    )
    console.print(f"unreadable files: {len(summary.unreadable)}")
    for bad in summary.unreadable:
        console.print(f"  [red]{bad['path']}[/red]: {bad['reason']}")
    console.print(f"wrote {out / 'summary.json'}, {chart}, {montage}")


@data_app.command("cache")
def data_cache(
    root: Annotated[
        Path | None, typer.Argument(help="Dataset folder; default $CXR_DATA/chest_xray.")
    ] = None,
    size: Annotated[int, typer.Option(help="Square side in pixels.")] = 224,
    workers: Annotated[int, typer.Option(help="Decoding processes.")] = 2,
) -> None:
    """Decode and resize every image once into the memory-mapped cache; time a cached pass.

    Example: cxr data cache ../shared/data/chest_xray --size 224
    """
    from cxr.data.cache import PixelCache

    dataset = _dataset(root, "folder", None)
    paths = [r.path for r in dataset.records]
    cache = PixelCache(size)
    with _progress("Caching", len(paths)) as bar:
        start = time.perf_counter()
        first = cache.load(
            paths, workers=workers, progress=lambda n: bar.advance(bar.task_ids[0], n)
        )
        first_s = time.perf_counter() - start
    start = time.perf_counter()
    second = PixelCache(size).load(paths)
    checksum = sum(int(second[i].sum()) for i in range(len(second)))
    second_s = time.perf_counter() - start
    console.print(
        f"{len(first):,} images cached at {size}x{size} in {cache.folder} "
        f"({len(first.failures)} unreadable)"
    )
    console.print(
        f"first pass {first_s:.2f} s, cached pass over every pixel {second_s:.2f} s "
        f"({first_s / max(second_s, 1e-9):.1f}x faster); checksum {checksum}"
    )
    for bad in first.failures:
        console.print(f"  [red]{bad.path}[/red]: {bad.reason}")


@data_app.command("download")
def data_download(
    name: Annotated[str, typer.Argument(help="Dataset: kermany.")],
    to: Annotated[Path, typer.Option(help="Folder to create the train/test layout in.")],
    from_archive: Annotated[
        Path | None,
        typer.Option(help="Unpack this local ChestXRay2017.zip instead of downloading."),
    ] = None,
    sha256: Annotated[str | None, typer.Option(help="Expected SHA-256 of the archive.")] = None,
) -> None:
    """Download the Kermany set from Mendeley Data (resumable, checksummed) and unpack it.

    Example: cxr data download kermany --to data/kermany
    Example: cxr data download kermany --from-archive ChestXRay2017.zip --to data/kermany
    """
    from dataclasses import replace

    from cxr.data.download import ARCHIVES, fetch, unpack

    if name not in ARCHIVES:
        raise CxrError(f"unknown dataset {name!r}; available: {', '.join(ARCHIVES)}")
    archive = ARCHIVES[name] if sha256 is None else replace(ARCHIVES[name], sha256=sha256)
    if from_archive is None:
        console.print(f"Downloading {archive.name} from {archive.source}")
        from_archive = fetch(archive, to / "downloads")
    counts = unpack(from_archive, to)
    for (split, label), n in sorted(counts.items()):
        console.print(f"{split}/{label}: {n:,}")
    console.print(f"unpacked into {to}")


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
    _print_scores(result.evaluation.predictions, result.evaluation.scores)
    console.print(f"run folder: {result.run}")
    console.print(f"report: {result.report.resolve()}", highlight=False)


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
    with _progress("reading images", None) as bar:
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
    _print_scores(result.predictions, result.scores)
    console.print(f"evaluation folder: {result.out}")


def _print_scores(p, scores: dict) -> None:
    m, ci = scores["metrics"], scores["ci95"]
    keys = (
        (
            "auroc",
            "average_precision",
            "accuracy",
            "sensitivity",
            "specificity",
            "precision",
            "npv",
            "f1",
            "brier",
            "ece",
        )
        if p.binary
        else ("macro_auroc", "weighted_auroc", "accuracy", "balanced_accuracy")
    )
    table = Table(title=f"{p.name} on {m['n']} {p.split} images")
    for column in ("metric", "value", "95 % CI"):
        table.add_column(column)
    for key in keys:
        lo_hi = ci.get(key)
        table.add_row(key, f"{m[key]:.4f}", f"{lo_hi[0]:.4f}–{lo_hi[1]:.4f}" if lo_hi else "")
    for name, value in (m.get("pairwise_auroc") or {}).items():
        table.add_row(f"AUROC {name}", f"{value:.4f}", "")
    console.print(table)


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


@app.command("predict")
def predict_command(
    model: Annotated[
        Path, typer.Argument(help="A model file: a run's model.pt or an .onnx export.")
    ],
    inputs: Annotated[
        list[Path], typer.Argument(help="Images and folders (searched recursively).")
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="Write the worklist here (.csv or .json; never overwritten)."),
    ] = None,
    cam: Annotated[
        Path | None, typer.Option(help="New folder for Grad-CAM overlays, one PNG per image.")
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", help="table (screen only), csv or json.")
    ] = "table",
    batch: Annotated[int, typer.Option(help="Images per forward pass.")] = 32,
    workers: Annotated[int, typer.Option(help="Decoding processes.")] = 2,
    show: Annotated[int, typer.Option(help="Rows of the worklist to print.")] = 20,
) -> None:
    """A triage worklist, most urgent first: probabilities, the decision at the model's threshold,
    and flags for images that are probably not frontal chest X-rays. Exit code 1 when some files
    could not be read (they are listed), 0 otherwise.

    Example: cxr predict runs/quick/model.pt ../shared/data/dicom_cxr --out worklist.csv --cam cams
    """
    from cxr.inference.predict import expand, predict_paths
    from cxr.inference.predictor import TorchPredictor, load_predictor

    if output_format not in {"table", "csv", "json"}:
        raise CxrError(f"--format {output_format!r}: choose table, csv or json")
    for target in (out, cam):
        if target is not None and target.exists():
            raise CxrError(f"{target} exists; cxr never overwrites (choose another name)")
    predictor = load_predictor(model)
    if cam is not None and not isinstance(predictor, TorchPredictor):
        raise CxrError("Grad-CAM needs the PyTorch model file (model.pt), not an ONNX export")
    total = len(expand(inputs))
    with _progress("predicting", total) as bar:
        worklist = predict_paths(
            predictor, inputs, batch, workers, lambda n: bar.advance(bar.task_ids[0], n)
        )
    table = Table(
        title=f"worklist: {len(worklist.rows)} images, most urgent first "
        f"(urgency = {worklist.urgency_of})"
    )
    for column in ("rank", "file", "urgency", "predicted", "flags"):
        table.add_column(column)
    for row in worklist.rows[:show]:
        table.add_row(
            str(row.rank),
            Path(row.path).name,
            f"{row.urgency:.3f}",
            row.predicted,
            "; ".join(row.flags),
        )
    if output_format == "table" or out is None:
        console.print(table)
        if len(worklist.rows) > show:
            console.print(f"... {len(worklist.rows) - show} more (--show, --out)")
    if out is not None:
        worklist.write(out, "json" if output_format == "json" or out.suffix == ".json" else "csv")
        console.print(f"worklist: {out}")
    elif output_format in {"csv", "json"}:
        console.print(
            json.dumps(worklist.to_dicts(), indent=2)
            if output_format == "json"
            else worklist.csv_text().rstrip(),
            highlight=False,
        )
    if cam is not None:
        from cxr.data.reader import read_image
        from cxr.inference.cam import heat_map, save_overlay

        cam.mkdir(parents=True)
        for row in worklist.rows:
            image = read_image(row.path)
            index = worklist.classes.index(row.predicted)
            name = f"{row.rank:04d}_{Path(row.path).stem}.png"
            save_overlay(image, heat_map(predictor.model, image, index), cam / name)
        console.print(f"Grad-CAM overlays: {cam}")
    for path, reason in worklist.failures:
        console.print(f"[red]skipped[/red] {path}: {reason}", highlight=False)
    if worklist.failures:
        console.print(f"{len(worklist.failures)} file(s) skipped", highlight=False)
        raise SystemExit(1)


@app.command("export")
def export_command(
    checkpoint: Annotated[Path, typer.Argument(help="A model file (a run's model.pt).")],
    out: Annotated[Path, typer.Option(help="The .onnx file to write (never overwritten).")],
    export_format: Annotated[str, typer.Option("--format", help="onnx or onnx-int8")] = "onnx",
    calibration: Annotated[
        Path | None,
        typer.Option(help="onnx-int8: images to calibrate on (default: the model's train split)."),
    ] = None,
    calibration_images: Annotated[int, typer.Option(help="onnx-int8: how many.")] = 200,
) -> None:
    """Export to ONNX: probabilities out, dynamic batch, classes/threshold/preprocessing inside.
    `onnx-int8` quantizes statically on real images; check it with `cxr evaluate` before use.

    Example: cxr export runs/quick/model.pt --out quick.onnx
    """
    import random

    from cxr.inference.export import export_onnx, training_images
    from cxr.inference.predict import expand

    if export_format not in {"onnx", "onnx-int8"}:
        raise CxrError(f"--format {export_format!r}: onnx or onnx-int8")
    images = None
    if export_format == "onnx-int8":
        if calibration is None:
            images = training_images(checkpoint, calibration_images)
        else:
            found = expand([calibration])
            images = random.Random(0).sample(found, min(calibration_images, len(found)))
    console.print(f"wrote {export_onnx(checkpoint, out, images)}")


@app.command("serve")
def serve_command(
    model: Annotated[Path, typer.Argument(help="A run's model.pt or an .onnx export.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    max_upload_mb: Annotated[int, typer.Option(help="Largest upload accepted.")] = 25,
    concurrency: Annotated[int, typer.Option(help="Inferences run at once.")] = 2,
) -> None:
    """The web page and API: drop an X-ray, see the prediction and heat map; triage a batch.
    Set CXR_API_TOKEN to require `Authorization: Bearer <token>` on the API.

    Example: cxr serve runs/quick/model.pt   (then open http://127.0.0.1:8000)
    """
    import uvicorn

    from cxr.serve.app import ServeConfig, create_app

    app_ = create_app(ServeConfig(model, max_upload_mb * 2**20, concurrency))
    console.print(f"serving {model} on http://{host}:{port}  (API docs: /docs)")
    uvicorn.run(app_, host=host, port=port, log_level="info")


@benchmark_app.command("train")
def benchmark_train(
    models: Annotated[list[str], typer.Argument(help="Registered model names.")],
    batch: Annotated[int, typer.Option(help="Batch size.")] = 32,
    steps: Annotated[int, typer.Option(help="Optimiser steps timed per variant and round.")] = 5,
    out: Annotated[Path | None, typer.Option(help="Write the figures as JSON here.")] = None,
) -> None:
    """Training images/s: fp32 vs bf16 autocast, NCHW vs channels-last, one process, interleaved.

    Example: cxr benchmark train cxr_cnn classic_cnn efficientnet_lite0 --out train-bench.json
    """
    import json

    import torch

    from cxr.speed import matmul_gflops
    from cxr.training.benchmark import train_throughput

    peak = matmul_gflops()
    table = Table(
        title=f"training throughput, {torch.get_num_threads()} threads; "
        f"torch.mm 2048²: {peak['fp32']} GFLOP/s fp32, {peak['bf16']} bf16"
    )
    for column in (
        "model",
        "px",
        "precision",
        "memory format",
        "images/s",
        "GFLOP/image",
        "GFLOP/s",
        "% of mm peak",
    ):
        table.add_column(column)
    rows = []
    for name in models:
        for r in train_throughput(name, batch=batch, steps=steps):
            rows.append(r.to_dict())
            share = 100 * r.achieved_gflops / peak[r.precision]
            table.add_row(
                r.model,
                str(r.size),
                r.precision,
                r.memory_format,
                f"{r.images_per_s:.1f}",
                f"{r.gflop_per_image:.2f}",
                f"{r.achieved_gflops:.0f}",
                f"{share:.0f} %",
            )
    console.print(table)
    if out:
        out.write_text(json.dumps({"matmul_gflops": peak, "results": rows}, indent=2))
        console.print(f"wrote {out}")


@benchmark_app.command("predict")
def benchmark_predict(
    model: Annotated[str, typer.Argument(help="A model file or a registered model name.")],
    backend: Annotated[
        str, typer.Option(help="torch-eager, torch-fast, torch-bf16, onnx, onnx-int8, or all.")
    ] = "all",
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1,8,32",
    images: Annotated[
        Path | None, typer.Option(help="Folder of real images for the decode timing.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the figures as JSON here.")] = None,
) -> None:
    """Inference images/s per backend and batch size, in one process, with decode+preprocess
    timed apart, achieved GFLOP/s against this machine's matrix multiply, and peak memory.

    Example: cxr benchmark predict efficientnet_lite0 --out predict-bench.json
    """
    from cxr.inference.benchmark import BACKENDS, decode_throughput, model_throughput
    from cxr.inference.predict import expand
    from cxr.speed import matmul_gflops

    chosen = BACKENDS if backend == "all" else tuple(backend.split(","))
    unknown = set(chosen) - set(BACKENDS)
    if unknown:
        raise CxrError(f"unknown backend {sorted(unknown)}; choose from {', '.join(BACKENDS)}")
    peak = matmul_gflops()
    rows = model_throughput(model, chosen, tuple(int(b) for b in batch.split(",")))
    folder = images or data_root() / "chest_xray_originals"
    paths = expand([folder])[:64]
    decode = decode_throughput(paths, 224) if paths else None
    table = Table(
        title=f"{model}: inference, {rows[0].gflop_per_image:.2f} GFLOP/image; torch.mm 2048²: "
        f"{peak['fp32']} GFLOP/s fp32, {peak['bf16']} bf16"
    )
    for column in ("backend", "batch", "images/s", "GFLOP/s", "% of fp32 mm", "peak RSS MiB"):
        table.add_column(column)
    for r in rows:
        share = 100 * r.achieved_gflops / peak["fp32"]
        table.add_row(
            r.backend, str(r.batch), f"{r.images_per_s:.1f}", f"{r.achieved_gflops:.0f}",
            f"{share:.0f} %", f"{r.peak_rss_mib:.0f}",
        )  # fmt: skip
    console.print(table)
    if decode:
        console.print(
            f"decode + preprocess ({len(paths)} images from {folder}): {decode:.1f} img/s"
        )
    if out:
        payload = {
            "model": model,
            "matmul_gflops": peak,
            "decode_images_per_s": decode,
            "decode_images": str(folder),
            "results": [r.to_dict() for r in rows],
        }
        out.write_text(json.dumps(payload, indent=2))
        console.print(f"wrote {out}")


def main() -> None:
    """Entry point: our own errors print as one clear line and exit 2, never as a traceback."""
    try:
        app()
    except CxrError as exc:
        console.print(f"[bold red]error:[/bold red] {exc}", highlight=False)
        raise SystemExit(2) from None
