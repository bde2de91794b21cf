"""`cxr predict | export | serve`: using a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cxr.cli.common import app, console, progress, say
from cxr.errors import CxrError


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
        Path | None,
        typer.Option(help="New folder for Grad-CAM heat maps, one PNG per image."),
    ] = None,
    cam_class: Annotated[
        str | None,
        typer.Option(help="Class the heat maps explain (default: the positive class)."),
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", help="table (screen only), csv or json.")
    ] = "table",
    batch: Annotated[int, typer.Option(help="Images per forward pass.")] = 32,
    workers: Annotated[int, typer.Option(help="Decoding processes.")] = 2,
    show: Annotated[int, typer.Option(help="Rows of the worklist to print.")] = 20,
) -> None:
    """A triage worklist, most urgent first: probabilities and the decision at the model's
    threshold. Images that are probably not frontal chest X-rays are listed apart, not scored;
    X-rays unlike the training data carry a warning. Exit code 1 when some files could not be
    read (they are listed), 0 otherwise.

    Example: cxr predict runs/quick/model.pt ../shared/data/dicom_cxr --out worklist.csv --cam cams
    """
    from cxr.inference.predict import (
        cam_caption,
        expand,
        explained_class,
        known_class,
        predict_paths,
    )
    from cxr.inference.predictor import TorchPredictor, load_predictor

    if output_format not in {"table", "csv", "json"}:
        raise CxrError(f"--format {output_format!r}: choose table, csv or json")
    for target in (out, cam):
        if target is not None and target.exists():
            raise CxrError(f"{target} exists; cxr never overwrites (choose another name)")
    predictor = load_predictor(model)
    if cam is not None and not isinstance(predictor, TorchPredictor):
        raise CxrError("Grad-CAM needs the PyTorch model file (model.pt), not an ONNX export")
    if cam_class is not None:
        known_class(predictor, cam_class)  # a typo is refused before any work
    total = len(expand(inputs))
    with progress("predicting", total) as bar:
        worklist = predict_paths(
            predictor, inputs, batch, workers, lambda n: bar.advance(bar.task_ids[0], n)
        )
    table = Table(
        title=f"worklist: {len(worklist.rows)} X-rays, most urgent first "
        f"(urgency = {worklist.urgency_of})"
    )
    for column in ("rank", "file", "urgency", "decision", "warnings"):
        table.add_column(column)
    for row in worklist.rows[:show]:
        table.add_row(
            str(row.rank),
            Path(row.path).name,
            f"{row.urgency:.3f}",
            row.predicted,
            "; ".join(row.warnings),
        )
    apart = Table(title=f"not scored: {len(worklist.not_scored)} probably not frontal chest X-rays")
    for column in ("file", "why"):
        apart.add_column(column)
    for row in worklist.not_scored[:show]:
        apart.add_row(Path(row.path).name, "; ".join(row.flags))
    if output_format == "table" or out is None:
        console.print(table)
        if len(worklist.rows) > show:
            console.print(f"... {len(worklist.rows) - show} more (--show, --out)")
        if worklist.not_scored:
            console.print(apart)
    if out is not None:
        worklist.write(out, "json" if output_format == "json" or out.suffix == ".json" else "csv")
        console.print(f"worklist: {out}")
    elif output_format in {"csv", "json"}:
        console.print(
            json.dumps(worklist.to_dicts(), indent=2)
            if output_format == "json"
            else worklist.csv_text().rstrip()
        )
    if cam is not None:
        from cxr.data.reader import read_image
        from cxr.inference.cam import heat_map, save_explained

        cam.mkdir(parents=True)
        for row in worklist.rows + worklist.not_scored:
            image = read_image(row.path)
            explained = explained_class(predictor, row.probs, cam_class)
            index = worklist.classes.index(explained)
            prefix = f"{row.rank:04d}" if row.rank else "not-scored"
            name = f"{prefix}_{Path(row.path).stem}.png"
            caption = cam_caption(worklist.classes, row.probs, explained)
            caption = f"{Path(row.path).name} · {caption}"
            save_explained(image, heat_map(predictor.model, image, index), caption, cam / name)
        console.print(f"Grad-CAM heat maps: {cam}")
    for path, reason in worklist.failures:
        say("skipped", reason if reason.startswith(path) else f"{path}: {reason}")
    if worklist.failures:
        console.print(f"{len(worklist.failures)} file(s) skipped")
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
