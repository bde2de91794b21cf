"""FastAPI app over one loaded model. Inference runs in worker threads, a few at a time, so the
event loop stays free; uploads stay in memory and are never written to disk or logs; bad input
always gets a 4xx with the reader's reason, never a 500."""

from __future__ import annotations

import base64
import copy
import io
import os
import secrets
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image as PILImage

from cxr.data.image import XrayImage
from cxr.data.reader import read_image
from cxr.errors import CxrError, ImageProblem, ImageReadError
from cxr.evaluation.explorer import WIDGET, card_explorer
from cxr.inference.predict import (
    Row,
    cam_caption,
    explained_class,
    known_class,
    notes,
    ranked,
    score,
)
from cxr.inference.predictor import TorchPredictor, load_predictor

TOKEN_ENV = "CXR_API_TOKEN"
PAGE = Path(__file__).with_name("static") / "index.html"
UNSUPPORTED = {ImageProblem.NOT_AN_IMAGE, ImageProblem.UNSUPPORTED}
THUMBNAIL = 96  # px, the longer side of a worklist thumbnail


@dataclass(frozen=True)
class ServeConfig:
    model: Path
    max_upload_bytes: int = 25 * 1024 * 1024
    concurrency: int = 2  # inferences at once; the rest wait their turn
    max_batch_files: int = 100


def create_app(cfg: ServeConfig) -> FastAPI:
    predictor = load_predictor(cfg.model)
    limiter = anyio.CapacityLimiter(cfg.concurrency)
    token = os.environ.get(TOKEN_ENV)
    app = FastAPI(
        title="cxr",
        description="Chest X-ray classification. A research tool, not a medical device.",
        version="0.1.0",
    )

    def authorised(request: Request) -> None:
        if not token:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "this server needs its API token: Authorization: Bearer …")

    async def read_upload(upload: UploadFile) -> XrayImage:
        data = await upload.read(cfg.max_upload_bytes + 1)
        name = upload.filename or "upload"
        if len(data) > cfg.max_upload_bytes:
            raise HTTPException(413, f"{name}: larger than {cfg.max_upload_bytes // 2**20} MB")
        try:
            return await anyio.to_thread.run_sync(read_image, data, name, limiter=limiter)
        except ImageReadError as exc:
            status = 415 if exc.problem in UNSUPPORTED else 422
            raise HTTPException(
                status, f"This file is not a chest X-ray image we can read: {exc}"
            ) from None

    def infer(images: list[XrayImage], names: list[str]) -> list[Row]:
        arrays = [predictor.card.preprocessing.to_array(im.pixels) for im in images]
        population = predictor.card.population
        return score(predictor, names, arrays, [notes(im, population) for im in images])

    cam_model = copy.deepcopy(predictor.model) if isinstance(predictor, TorchPredictor) else None
    cam_lock = threading.Lock()  # Grad-CAM hooks its model: one heat map at a time, on a copy

    def heat_map_urls(image: XrayImage, row: Row, chosen: str | None) -> dict:
        """The heat map for the explained class (the positive one unless chosen), as the overlay,
        the bare RGBA layer and its colour bar, with the plain image: PNG data URLs, since a
        browser cannot show DICOM."""
        from cxr.inference.cam import colour_bar, heat_layer, heat_map, overlay

        classes = predictor.card.classes
        explained = explained_class(predictor, row.probs, chosen)
        with cam_lock:
            cam = heat_map(cam_model, image, classes.index(explained))
        return {
            "cam": _png_url(overlay(image, cam)),
            "heat": _png_url(heat_layer(cam)),
            "image": _png_url(PILImage.fromarray(image.pixels)),
            "legend": _png_url(colour_bar()),
            "cam_class": explained,
            "cam_probability": float(row.probs[classes.index(explained)]),
            "cam_caption": cam_caption(classes, row.probs, explained),
        }

    def as_json(row: Row) -> dict:
        return {
            "filename": row.path,
            "probabilities": {
                c: float(p) for c, p in zip(predictor.card.classes, row.probs, strict=True)
            },
            "predicted": row.predicted,
            "urgency": row.urgency,
            "flags": row.flags,
            "warnings": row.warnings,
            "not_a_frontal_xray": bool(row.flags),
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return PAGE.read_text()

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "model_loaded": True, "model": predictor.source.name}

    @app.get("/api/model", dependencies=[Depends(authorised)])
    async def model_card() -> dict:
        card = predictor.card.to_dict()
        card.pop("tuning")  # hundreds of numbers; the page asks /api/model/tuning for them
        return {**card, "summary": predictor.card.summary()}

    @app.get("/api/model/tuning", dependencies=[Depends(authorised)])
    async def tuning_predictions() -> dict:
        """The tuning split's calibrated predictions: an operating-point explorer works on them."""
        return predictor.card.tuning

    explorer = card_explorer(predictor.card)

    @app.get("/api/operating-points", dependencies=[Depends(authorised)])
    async def operating_points() -> dict:
        """Confusion counts at every threshold over the tuning split's predictions, counted by
        the metrics kernel, for the page's threshold slider (no file names, no patients)."""
        if explorer is None:
            raise HTTPException(404, "this model file stores no tuning-split predictions")
        return explorer

    @app.get("/explorer.js", include_in_schema=False)
    async def explorer_widget() -> Response:
        return Response(WIDGET.read_text(), media_type="text/javascript")

    @app.post("/api/predict", dependencies=[Depends(authorised)])
    async def predict(
        file: Annotated[UploadFile, File(description="A JPEG, PNG or DICOM chest X-ray.")],
        cam: Annotated[
            bool, Query(description="Add the Grad-CAM heat map and the image as PNG data URLs.")
        ] = False,
        cam_class: Annotated[
            str | None,
            Query(description="The class the heat map explains (default: the positive class)."),
        ] = None,
    ) -> dict:
        if cam and not isinstance(predictor, TorchPredictor):
            raise HTTPException(400, "heat maps need the PyTorch model file, not ONNX")
        if cam_class is not None:
            try:
                known_class(predictor, cam_class)
            except CxrError as exc:
                raise HTTPException(422, str(exc)) from None
        image = await read_upload(file)
        name = file.filename or "upload"
        (row,) = await anyio.to_thread.run_sync(infer, [image], [name], limiter=limiter)
        threshold = predictor.card.threshold
        answer = {
            **as_json(row),
            "threshold": asdict(threshold) if threshold else None,
            "cam": None,
        }
        if cam:
            answer |= await anyio.to_thread.run_sync(
                heat_map_urls, image, row, cam_class, limiter=limiter
            )
        return answer

    @app.post("/api/triage", dependencies=[Depends(authorised)])
    async def triage(
        files: Annotated[list[UploadFile], File(description="Several X-rays.")],
        output: Annotated[str, Query(alias="format", pattern="^(json|csv)$")] = "json",
    ):
        if len(files) > cfg.max_batch_files:
            raise HTTPException(413, f"at most {cfg.max_batch_files} files per request")
        images, names, failures = [], [], []
        for upload in files:
            try:
                images.append(await read_upload(upload))
                names.append(upload.filename or "upload")
            except HTTPException as exc:
                if exc.status_code == 401:
                    raise
                failures.append((upload.filename or "upload", exc.detail))
        rows = (
            await anyio.to_thread.run_sync(infer, images, names, limiter=limiter) if images else []
        )
        thumbnails = {id(row): _thumbnail_url(im) for row, im in zip(rows, images, strict=True)}
        worklist = ranked(predictor, rows, failures)
        if output == "csv":
            return Response(
                worklist.csv_text(),
                media_type="text/csv",
                headers={"Content-Disposition": 'attachment; filename="worklist.csv"'},
            )
        return JSONResponse(
            {
                "urgency": worklist.urgency_of,
                "worklist": [
                    {"rank": r.rank, **as_json(r), "thumbnail": thumbnails[id(r)]}
                    for r in worklist.rows
                ],
                "not_scored": [
                    {**as_json(r), "thumbnail": thumbnails[id(r)]} for r in worklist.not_scored
                ],
                "skipped": [{"filename": n, "reason": why} for n, why in worklist.failures],
            }
        )

    return app


def _thumbnail_url(image: XrayImage) -> str:
    picture = PILImage.fromarray(image.pixels)
    picture.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _png_url(picture: PILImage.Image) -> str:
    picture.thumbnail((1024, 1024))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
