"""`cxr predict | export | serve`: using a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cxr.cli.common import app, console, progress
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
        Path | None, typer.Option(help="New folder for Grad-CAM overlays, one PNG per image.")
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", help="table (screen only), csv or json.")
    ] = "table",
    batch: Annotated[int, typer.Option(help="Images per forward pass.")] = 32,
    workers: Annotated[int, typer.Option(help="Decoding processes.")] = 2,
    show: Annotated[int, typer.Option(help="Rows of the worklist to print.")] = 20,
    pseudonymize_names: Annotated[
        bool,
        typer.Option(
            "--pseudonymize-names",
            help="Write a stable hash (file-<16 hex>) instead of each file name, everywhere.",
        ),
    ] = False,
) -> None:
    """A triage worklist, most urgent first: probabilities, the decision at the model's threshold,
    and flags for images that are probably not frontal chest X-rays. Exit code 1 when some files
    could not be read (they are listed), 0 otherwise.

    Example: cxr predict runs/quick/model.pt ../shared/data/dicom_cxr --out worklist.csv --cam cams
    """
    from cxr.inference.predict import expand, predict_paths, pseudonym
    from cxr.inference.predictor import TorchPredictor, load_predictor

    if output_format not in {"table", "csv", "json"}:
        raise CxrError(f"--format {output_format!r}: choose table, csv or json")
    for target in (out, cam):
        if target is not None and target.exists():
            raise CxrError(f"{target} exists; cxr never overwrites (choose another name)")
    predictor = load_predictor(model)
    if cam is not None and not isinstance(predictor, TorchPredictor):
        raise CxrError("Grad-CAM needs the PyTorch model file (model.pt), not an ONNX export")
    paths = expand(inputs)
    with progress("predicting", len(paths)) as bar:
        worklist = predict_paths(
            predictor,
            inputs,
            batch,
            workers,
            lambda n: bar.advance(bar.task_ids[0], n),
            pseudonymize_names,
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
        from cxr.outputs import new_folder

        source = {pseudonym(str(p)) if pseudonymize_names else str(p): p for p in paths}
        with new_folder(cam) as partial:  # renamed to `cam` only once every overlay is written
            for row in worklist.rows:
                image = read_image(source[row.path], row.path)
                index = worklist.classes.index(row.predicted)
                name = f"{row.rank:04d}_{Path(row.path).stem}.png"
                save_overlay(image, heat_map(predictor.model, image, index), partial / name)
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
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve the API without a token, explicitly.")
    ] = False,
    pseudonymize_names: Annotated[
        bool,
        typer.Option(
            "--pseudonymize-names", help="Answer with a stable hash instead of file names."
        ),
    ] = False,
) -> None:
    """The web page and API: drop an X-ray, see the prediction and heat map; triage a batch.
    Set CXR_API_TOKEN to require `Authorization: Bearer <token>` on the API; without it the
    server only listens on this machine (127.0.0.1) unless you pass --no-auth.

    Example: cxr serve runs/quick/model.pt   (then open http://127.0.0.1:8000)
    """
    import uvicorn

    from cxr.serve.app import TOKEN_ENV, ServeConfig, api_token, create_app

    cfg = ServeConfig(
        model,
        max_upload_mb * 2**20,
        concurrency,
        no_auth=no_auth,
        pseudonymize_names=pseudonymize_names,
    )
    token = api_token(no_auth)
    if token is None and not no_auth and host not in {"127.0.0.1", "localhost", "::1"}:
        raise CxrError(f"serving on {host} without {TOKEN_ENV}: set a token, or pass --no-auth")
    app_ = create_app(cfg)
    auth = f"on ({TOKEN_ENV})" if token else "OFF (anyone who reaches the port can use the API)"
    console.print(
        f"serving {model} on http://{host}:{port}  (API docs: /docs)\n"
        f"auth: {auth}; limits: {cfg.limits()}"
        + ("; file names pseudonymized" if pseudonymize_names else ""),
        highlight=False,
    )
    uvicorn.run(app_, host=host, port=port, log_level="info")
