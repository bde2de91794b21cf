"""FastAPI app over one loaded model. Inference runs in worker threads, a few at a time, so the
event loop stays free; uploads stay in memory, read in bounded pieces after the token check, and
are never written to disk or logs; bad input always gets a 4xx with the reader's reason, never a
500; a batch keeps only each image's model-size array once it has been read."""

from __future__ import annotations

import base64
import copy
import io
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import anyio
import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image as PILImage

from cxr import __version__
from cxr.data.image import XrayImage
from cxr.data.reader import read_image
from cxr.errors import CxrError, ImageProblem, ImageReadError
from cxr.evaluation.explorer import WIDGET, card_explorer
from cxr.inference.predict import (
    Notes,
    Row,
    cam_caption,
    explained_class,
    known_class,
    notes,
    pseudonym,
    ranked,
    score,
)
from cxr.inference.predictor import TorchPredictor, load_predictor
from cxr.serve.auth import TokenGate, api_token
from cxr.serve.uploads import UploadGuard, multipart_schema, uploads

PAGE = Path(__file__).with_name("static") / "index.html"
UNSUPPORTED = {ImageProblem.NOT_AN_IMAGE, ImageProblem.UNSUPPORTED}
DISPLAY_SIDE = 1024  # the page's pictures: overlay and plain image
FORM_OVERHEAD = 2**20  # multipart headers and boundaries around the files
THUMBNAIL = 96  # px, the longer side of a worklist thumbnail


@dataclass(frozen=True)
class ServeConfig:
    model: Path
    max_upload_bytes: int = 25 * 1024 * 1024
    concurrency: int = 2  # inferences at once; the rest wait their turn
    max_batch_files: int = 100
    db: str | None = None  # the worklist database `cxr listen` fills: adds /worklist
    max_batch_bytes: int = 512 * 1024 * 1024  # one triage request, all files together
    no_auth: bool = False  # explicit: serve the API without a token
    pseudonymize_names: bool = False  # a stable hash instead of each file name in every answer

    def limits(self) -> str:
        return (
            f"uploads up to {self.max_upload_bytes // 2**20} MB, "
            f"{self.max_batch_files} files / {self.max_batch_bytes // 2**20} MB per triage, "
            f"{self.concurrency} inferences at once"
        )


def create_app(cfg: ServeConfig) -> FastAPI:
    predictor = load_predictor(cfg.model)
    limiter = anyio.CapacityLimiter(cfg.concurrency)
    token = api_token(cfg.no_auth)
    app = FastAPI(
        title="cxr",
        description="Chest X-ray classification. A research tool, not a medical device.",
        version=__version__,
    )
    reviewers = None
    if cfg.db is not None:
        from cxr.store.database import open_database

        reviewers = open_database(cfg.db)
    app.add_middleware(
        UploadGuard,
        limits={
            "/api/predict": cfg.max_upload_bytes + FORM_OVERHEAD,
            "/api/triage": cfg.max_batch_bytes + FORM_OVERHEAD,
        },
    )
    app.add_middleware(TokenGate, token=token, reviewers=reviewers)  # outermost: answers first

    def shown(name: str) -> str:
        return pseudonym(name) if cfg.pseudonymize_names else name

    async def read_one(data: bytes | None, name: str) -> XrayImage:
        if data is None:
            raise HTTPException(413, f"{name}: larger than {cfg.max_upload_bytes // 2**20} MB")
        try:
            return await anyio.to_thread.run_sync(read_image, data, name, limiter=limiter)
        except ImageReadError as exc:
            status = 415 if exc.problem in UNSUPPORTED else 422
            raise HTTPException(
                status, f"This file is not a chest X-ray image we can read: {exc}"
            ) from None

    def reduce(data: bytes, name: str) -> tuple[np.ndarray, Notes, str]:
        """Read one batch file and keep only what scoring and the worklist need: the model-size
        array, its flags and warnings, a thumbnail."""
        image = read_image(data, name)
        array = predictor.card.preprocessing.to_array(image.pixels)
        return array, notes(image, predictor.card.population), _thumbnail_url(image)

    def infer(images: list[XrayImage], names: list[str]) -> list[Row]:
        arrays = [predictor.card.preprocessing.to_array(im.pixels) for im in images]
        population = predictor.card.population
        return score(predictor, names, arrays, [notes(im, population) for im in images])

    cam_model = copy.deepcopy(predictor.model) if isinstance(predictor, TorchPredictor) else None
    cam_lock = threading.Lock()  # Grad-CAM hooks its model: one heat map at a time, on a copy

    def heat_map_urls(image: XrayImage, row: Row, chosen: str | None) -> dict:
        """The heat map for the explained class (the positive one unless chosen), as the overlay,
        the bare RGBA layer and its colour bar, with the plain image: PNG data URLs at display
        size, since a browser cannot show DICOM."""
        from cxr.inference.cam import colour_bar, display_image, heat_layer, heat_map, overlay

        classes = predictor.card.classes
        explained = explained_class(predictor, row.probs, chosen)
        with cam_lock:
            cam = heat_map(cam_model, image, classes.index(explained))
        plain = display_image(image, DISPLAY_SIDE)
        return {
            "cam": _png_url(overlay(image, cam, DISPLAY_SIDE)),
            "heat": _png_url(heat_layer(cam, plain.size)),
            "image": _png_url(plain),
            "legend": _png_url(colour_bar()),
            "cam_class": explained,
            "cam_probability": float(row.probs[classes.index(explained)]),
            "cam_caption": cam_caption(row, classes, explained),
        }

    def plain_url(image: XrayImage) -> dict:
        """An image not scored: the picture alone, no heat map (its colours would read as a
        finding)."""
        from cxr.inference.cam import display_image

        return {"image": _png_url(display_image(image, DISPLAY_SIDE))}

    if reviewers is not None:
        from cxr.serve.worklist import worklist_router

        app.include_router(worklist_router(reviewers, predictor.card.population, token))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return PAGE.read_text()

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "model_loaded": True, "model": predictor.source.name}

    @app.get("/api/model")
    async def model_card() -> dict:
        card = predictor.card.to_dict()
        card.pop("tuning")  # hundreds of numbers; the page asks /api/model/tuning for them
        card.pop("overlap", None)  # thousands of image keys: for the overlap check only
        return {**card, "summary": predictor.card.summary()}

    @app.get("/api/model/tuning")
    async def tuning_predictions() -> dict:
        """The tuning split's calibrated predictions: an operating-point explorer works on them."""
        return predictor.card.tuning

    explorer = card_explorer(predictor.card)

    @app.get("/api/operating-points")
    async def operating_points() -> dict:
        """Confusion counts at every threshold over the tuning split's predictions, counted by
        the metrics kernel, for the page's threshold slider (no file names, no patients)."""
        if explorer is None:
            raise HTTPException(404, "this model file stores no tuning-split predictions")
        return explorer

    @app.get("/explorer.js", include_in_schema=False)
    async def explorer_widget() -> Response:
        return Response(WIDGET.read_text(), media_type="text/javascript")

    @app.post("/api/predict", openapi_extra=multipart_schema("file", many=False))
    async def predict(
        request: Request,
        cam: Annotated[
            bool, Query(description="Add the Grad-CAM heat map and the image as PNG data URLs.")
        ] = False,
        cam_class: Annotated[
            str | None,
            Query(description="The class the heat map explains (default: the positive class)."),
        ] = None,
        score_anyway: Annotated[
            bool,
            Query(
                description="Give the probabilities and heat map of an image flagged as probably "
                "not a frontal chest X-ray too (the flags stay beside them)."
            ),
        ] = False,
    ) -> dict:
        """One JPEG, PNG or DICOM chest X-ray (multipart field `file`)."""
        if cam and not isinstance(predictor, TorchPredictor):
            raise HTTPException(400, "heat maps need the PyTorch model file, not ONNX")
        if cam_class is not None:
            try:
                known_class(predictor, cam_class)
            except CxrError as exc:
                raise HTTPException(422, str(exc)) from None
        upload = None
        limit = cfg.max_upload_bytes + FORM_OVERHEAD
        async for part in uploads(request, "file", cfg.max_upload_bytes, limit):
            upload = upload or part
        if upload is None:
            raise HTTPException(422, "no file: send one image in the multipart field 'file'")
        name = shown(upload.filename)
        image = await read_one(upload.data, name)
        (row,) = await anyio.to_thread.run_sync(infer, [image], [name], limiter=limiter)
        if row.error:
            raise HTTPException(422, f"{name}: {row.error}")
        row.score_anyway = score_anyway
        threshold = predictor.card.threshold
        answer = row.to_json(list(predictor.card.classes))
        del answer["rank"]  # one image is not a worklist
        answer |= {"threshold": asdict(threshold) if threshold else None, "cam": None}
        if cam and row.shows_score:
            answer |= await anyio.to_thread.run_sync(
                heat_map_urls, image, row, cam_class, limiter=limiter
            )
        elif cam:
            answer |= await anyio.to_thread.run_sync(plain_url, image, limiter=limiter)
        return answer

    @app.post("/api/triage", openapi_extra=multipart_schema("files", many=True))
    async def triage(
        request: Request,
        output: Annotated[str, Query(alias="format", pattern="^(json|csv)$")] = "json",
    ):
        """Several X-rays (multipart field `files`, repeated): a worklist, most urgent first.
        Each file is read and reduced to the model's input as soon as it has arrived."""
        arrays, noted, thumbnails, names, failures = [], [], [], [], []
        async for upload in uploads(
            request, "files", cfg.max_upload_bytes, cfg.max_batch_bytes + FORM_OVERHEAD
        ):
            if len(names) + len(failures) >= cfg.max_batch_files:
                raise HTTPException(413, f"at most {cfg.max_batch_files} files per request")
            name = shown(upload.filename)
            if upload.data is None:
                failures.append((name, f"larger than {cfg.max_upload_bytes // 2**20} MB"))
                continue
            try:
                array, note, thumbnail = await anyio.to_thread.run_sync(
                    reduce, upload.data, name, limiter=limiter
                )
            except ImageReadError as exc:
                failures.append((name, f"{exc.problem.value}: {exc.detail}"))
                continue
            arrays.append(array)
            noted.append(note)
            thumbnails.append(thumbnail)
            names.append(name)
        if not names and not failures:
            raise HTTPException(422, "no files: send images in the multipart field 'files'")
        rows = (
            await anyio.to_thread.run_sync(score, predictor, names, arrays, noted, limiter=limiter)
            if arrays
            else []
        )
        thumbnail_of = {id(row): t for row, t in zip(rows, thumbnails, strict=True)}
        worklist = ranked(predictor, rows, failures)
        if output == "csv":
            return Response(
                worklist.csv_text(),
                media_type="text/csv",
                headers={"Content-Disposition": 'attachment; filename="worklist.csv"'},
            )
        answer = worklist.to_json()
        for group, members in (("worklist", worklist.rows), ("not_scored", worklist.not_scored)):
            for entry, row in zip(answer[group], members, strict=True):
                entry["thumbnail"] = thumbnail_of[id(row)]
        return JSONResponse({**answer, "csv": worklist.csv_text()})  # the page downloads the CSV

    return app


def _thumbnail_url(image: XrayImage) -> str:
    picture = PILImage.fromarray(image.pixels)
    picture.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _png_url(picture: PILImage.Image) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
