"""`cxr predict | export | serve`: using a model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from cxr.cli.archive import (
    ArchiveRun,
    Devices,
    DicomWeb,
    Lists,
    NumNodes,
    Resume,
    Strategy,
    Studies,
    out_unless_resumed,
    run_archive,
)
from cxr.cli.common import (
    NEVER,
    ModelFile,
    ModelFormat,
    OptionalImages,
    OutputFormat,
    Workers,
    app,
    console,
    out_file,
    out_folder,
    progress,
    say,
    valid_database_url,
)
from cxr.cli.early import check_class
from cxr.cli.render import print_worklist
from cxr.errors import CxrError

if TYPE_CHECKING:
    from cxr.inference.predict import Worklist
    from cxr.inference.predictor import Predictor


WorklistOut = Annotated[
    Path | None,
    typer.Option(
        "--out",
        metavar="FILE|FOLDER",
        help="Worklist file to write, .csv or .json (default: the screen); with the archive "
        "options a folder (--resume finishes one); a new file or folder, " + NEVER,
        callback=out_unless_resumed,
    ),
]
CamFolder = Annotated[Path | None, out_folder("Grad-CAM heat maps, one PNG per image", "--cam")]
CamClass = Annotated[
    str | None, typer.Option(help="Class the heat maps explain (default: the positive class).")
]
WorklistFormat = Annotated[
    OutputFormat | None,
    typer.Option("--format", help="Worklist format; default: from --out's suffix, else a table."),
]
Batch = Annotated[int, typer.Option(help="Images per forward pass.", min=1)]
Show = Annotated[int, typer.Option(help="Rows of the worklist to print.", min=0)]
PseudonymizeNames = Annotated[
    bool,
    typer.Option(
        "--pseudonymize-names",
        help="Write a stable hash (file-<16 hex>) instead of each file name, everywhere.",
    ),
]
ScoreAnyway = Annotated[
    bool,
    typer.Option(
        "--score-anyway",
        help="Also print the scores (and heat maps) of images flagged as probably not frontal "
        "chest X-rays, each beside its flags; they stay unranked.",
    ),
]


@app.command("predict")
def predict_command(
    model: ModelFile,
    images: OptionalImages = None,
    out: WorklistOut = None,
    cam: CamFolder = None,
    cam_class: CamClass = None,
    output_format: WorklistFormat = None,
    batch: Batch = 32,
    workers: Workers = 2,
    show: Show = 20,
    pseudonymize_names: PseudonymizeNames = False,
    score_anyway: ScoreAnyway = False,
    devices: Devices = None,
    num_nodes: NumNodes = 1,
    strategy: Strategy = "auto",
    lists: Lists = None,
    dicomweb: DicomWeb = None,
    study: Studies = None,
    resume: Resume = False,
) -> None:
    """A triage worklist, most urgent first: probabilities and the decision at the model's
    threshold. Images that are probably not frontal chest X-rays are listed apart, not scored;
    X-rays unlike the training data carry a warning. Exit code 1 when some files could not be
    read (they are listed), 0 otherwise.

    Example: cxr predict runs/quick/model.pt ../shared/data/dicom_cxr --out worklist.csv --cam cams
    """
    archive = ArchiveRun(lists or [], dicomweb, study or [], devices, num_nodes, strategy, resume)
    if archive.wanted:
        if cam is not None:
            raise CxrError("--cam is not available when scoring an archive")
        fmt = "json" if output_format == OutputFormat.json else "csv"
        run_archive(
            archive, model, images or [], out, fmt, batch, workers, pseudonymize_names, score_anyway
        )
        return
    fmt = _worklist_format(model, images, out, output_format, cam, cam_class)
    predictor, worklist = _score(
        model, images or [], cam, cam_class, batch, workers, pseudonymize_names, score_anyway
    )
    _show_worklist(predictor, worklist, out, fmt, show, cam)


def _worklist_format(
    model: Path,
    images: list[Path] | None,
    out: Path | None,
    output_format: OutputFormat | None,
    cam: Path | None,
    cam_class: str | None,
) -> OutputFormat | None:
    """What a worklist run asked for, refused now if it cannot be done: the worklist format
    (None: a table on screen)."""
    if not images:
        raise CxrError("nothing to score: give IMAGES (files or folders)")
    suffix = out.suffix[1:] if out is not None else ""
    fmt = output_format or (OutputFormat(suffix) if suffix in {"csv", "json"} else None)
    if out is not None and fmt in {None, OutputFormat.table}:
        raise CxrError(f"--out {out}: a worklist file is .csv or .json (or give --format)")
    if cam is not None and model.suffix == ".onnx":
        raise CxrError("Grad-CAM needs the PyTorch model file (model.pt), not an ONNX export")
    if cam_class is not None:
        if cam is None:
            raise CxrError("--cam-class chooses what the heat maps explain: add --cam FOLDER")
        check_class(model, cam_class)  # a typo is refused before torch loads
    return fmt


def _score(
    model: Path,
    images: list[Path],
    cam: Path | None,
    cam_class: str | None,
    batch: int,
    workers: int,
    pseudonymize_names: bool,
    score_anyway: bool,
) -> tuple[Predictor, Worklist]:
    """The model loaded and every image scored (with heat maps, if asked)."""
    from cxr.inference.predict import known_class, predict_paths
    from cxr.inference.predictor import load_predictor

    predictor = load_predictor(model)
    if cam_class is not None:
        known_class(predictor, cam_class)  # a card the early check could not read
    with progress() as stages:
        if cam is None:
            worklist = predict_paths(
                predictor, images, batch, workers, stages, pseudonymize_names, score_anyway
            )
        else:
            from cxr.inference.cam import predict_with_heat_maps

            worklist = predict_with_heat_maps(predictor, images, cam, cam_class, batch, workers,
                                              stages, pseudonymize_names, score_anyway)  # fmt: skip
    return predictor, worklist


def _show_worklist(
    predictor: Predictor,
    worklist: Worklist,
    out: Path | None,
    fmt: OutputFormat | None,
    show: int,
    cam: Path | None,
) -> None:
    """The worklist written or printed, then its warnings and skipped files (exit 1 if any)."""
    if out is not None:
        worklist.write(out, fmt)
        say(f"worklist: {out}")
        if worklist.not_scored:
            say(
                f"not scored: {len(worklist.not_scored)} probably not frontal chest X-rays "
                "(group 'not scored', with the reason)"
            )
    elif fmt == OutputFormat.json:
        say(worklist.json_text())
    elif fmt == OutputFormat.csv:
        say(worklist.csv_text().rstrip())
    else:
        print_worklist(worklist, show)
    if cam is not None:
        say(f"Grad-CAM heat maps: {cam}")
    if worklist.rows:
        import numpy as np

        from cxr.evaluation.drift import shift_line

        line = shift_line(predictor.card, np.stack([r.probs for r in worklist.rows]))
        if line:
            say(f"warning: {line}", "yellow")
    for path, reason in worklist.failures:
        console.print(f"[red]skipped[/red] {escape(f'{path}: {reason}')}", highlight=False)
    if worklist.failures:
        say(f"{len(worklist.failures)} file(s) skipped")
        raise SystemExit(1)


@app.command("export")
def export_command(
    model: ModelFile,
    out: Annotated[Path, out_file("The .onnx file to write")],
    images: OptionalImages = None,
    to: Annotated[
        ModelFormat, typer.Option(help="onnx, or onnx-int8: quantized on real images.")
    ] = ModelFormat.onnx,
    max_images: Annotated[
        int, typer.Option(help="onnx-int8: at most this many IMAGES calibrate it.", min=1)
    ] = 200,
) -> None:
    """Export to ONNX: probabilities out, dynamic batch, classes/threshold/preprocessing inside.
    `--to onnx-int8` quantizes statically on IMAGES (default: the model's training split), then
    re-chooses the threshold on the model's tuning patients and prints and stores its agreement
    with fp32.

    Example: cxr export runs/quick/model.pt --out quick.onnx
    """
    if model.suffix == ".onnx":
        raise CxrError(f"{model}: already an ONNX file; export needs the model.pt")
    if images and to != ModelFormat.onnx_int8:
        raise CxrError("IMAGES calibrate an INT8 export: add --to onnx-int8, or leave them out")
    import random

    from cxr.inference.export import export_onnx, training_images
    from cxr.inference.predict import expand

    calibration = None
    if to == ModelFormat.onnx_int8:
        if images:
            found = expand(images)
            calibration = random.Random(0).sample(found, min(max_images, len(found)))
        else:
            calibration = training_images(model, max_images)
    with console.status(f"exporting {model} to {to.value}"):
        written = export_onnx(model, out, calibration)
    if calibration is not None:
        from cxr.inference.predictor import OnnxPredictor

        say(OnnxPredictor(written).card.recipe["quantized"])
    say(f"wrote {written}")


@app.command("serve")
def serve_command(
    model: ModelFile,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.", min=0, max=65535)] = 8000,
    max_upload_mb: Annotated[int, typer.Option(help="Largest upload accepted.", min=1)] = 25,
    concurrency: Annotated[int, typer.Option(help="Inferences run at once.", min=1)] = 2,
    db: Annotated[
        str | None,
        typer.Option(
            help="The worklist database `cxr listen` fills; adds the /worklist page.",
            callback=valid_database_url,
        ),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve the API without a token, explicitly.")
    ] = False,
    pseudonymize_names: Annotated[
        bool,
        typer.Option(
            "--pseudonymize-names", help="Answer with a stable hash instead of file names."
        ),
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="A Host name the server answers to (repeatable; default: the loopback names "
            "on 127.0.0.1, any name elsewhere).",
        ),
    ] = None,
    access_log: Annotated[
        bool,
        typer.Option("--access-log", help="Log every request (off: one line per request adds up)."),
    ] = False,
) -> None:
    """The web page and API: drop an X-ray, see the prediction and heat map; triage a batch.
    Set CXR_API_TOKEN to require `Authorization: Bearer <token>` on the API; without it the
    server only listens on this machine (127.0.0.1) unless you pass --no-auth. With --db, the
    reviewed worklist at /worklist, for reviewer tokens only (`cxr reviews add-reviewer`); a
    reviewer token also works on the prediction API, the API token never on the worklist.

    Example: cxr serve runs/quick/model.pt   (then open http://127.0.0.1:8000)
    """
    from cxr.serve.auth import TOKEN_ENV, api_token, describe

    token = api_token(no_auth)  # a token mistake is told before torch loads (seconds)
    if token is None and not no_auth and host not in {"127.0.0.1", "localhost", "::1"}:
        raise CxrError(f"serving on {host} without {TOKEN_ENV}: set a token, or pass --no-auth")
    import uvicorn

    from cxr.serve.app import ServeConfig, create_app

    cfg = ServeConfig(
        model,
        max_upload_mb * 2**20,
        concurrency,
        db=db,
        no_auth=no_auth,
        pseudonymize_names=pseudonymize_names,
    )
    from cxr.serve.connections import allowed_hosts, describe_hosts, hardened

    app_, limits = hardened(create_app(cfg), host, allowed_host)
    say(
        f"serving {model} on http://{host}:{port}  (API docs: /docs)\n"
        f"auth: {describe(token, worklist=db is not None)}; limits: {cfg.limits()}"
        + ("; file names pseudonymized" if pseudonymize_names else "")
        + f"; Host header: {describe_hosts(allowed_hosts(host, allowed_host))}"
    )
    if db is not None:
        say(f"worklist: http://{host}:{port}/worklist")
    uvicorn.run(app_, host=host, port=port, log_level="info", access_log=access_log, **limits)
