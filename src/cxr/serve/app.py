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
from cxr.errors import ImageProblem, ImageReadError
from cxr.inference.plausibility import flags
from cxr.inference.predict import Row, ranked, score
from cxr.inference.predictor import TorchPredictor, load_predictor

TOKEN_ENV = "CXR_API_TOKEN"
PAGE = Path(__file__).with_name("static") / "index.html"
UNSUPPORTED = {ImageProblem.NOT_AN_IMAGE, ImageProblem.UNSUPPORTED}


@dataclass(frozen=True)
class ServeConfig:
    model: Path
    max_upload_bytes: int = 25 * 1024 * 1024
    concurrency: int = 2  # inferences at once; the rest wait their turn
    max_batch_files: int = 100
    db: str | None = None  # the worklist database `cxr listen` fills: adds /worklist


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
        return score(predictor, names, arrays, [flags(im) for im in images])

    cam_model = copy.deepcopy(predictor.model) if isinstance(predictor, TorchPredictor) else None
    cam_lock = threading.Lock()  # Grad-CAM hooks its model: one heat map at a time, on a copy

    def heat_map_urls(image: XrayImage, row: Row) -> tuple[str, str]:
        """The overlay and the plain image, both as PNG data URLs (a browser cannot show DICOM)."""
        from cxr.inference.cam import heat_map, overlay

        with cam_lock:
            cam = heat_map(cam_model, image, predictor.card.classes.index(row.predicted))
        return _png_url(overlay(image, cam)), _png_url(PILImage.fromarray(image.pixels))

    if cfg.db is not None:
        from cxr.serve.worklist import worklist_router
        from cxr.store.database import open_database

        app.include_router(worklist_router(open_database(cfg.db), predictor.card.population))

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

    @app.post("/api/predict", dependencies=[Depends(authorised)])
    async def predict(
        file: Annotated[UploadFile, File(description="A JPEG, PNG or DICOM chest X-ray.")],
        cam: Annotated[
            bool, Query(description="Add the Grad-CAM overlay as a PNG data URL.")
        ] = False,
    ) -> dict:
        image = await read_upload(file)
        name = file.filename or "upload"
        (row,) = await anyio.to_thread.run_sync(infer, [image], [name], limiter=limiter)
        threshold = predictor.card.threshold
        answer = row.to_json(list(predictor.card.classes))
        del answer["rank"]  # one image is not a worklist
        answer |= {"threshold": asdict(threshold) if threshold else None, "cam": None}
        if cam:
            if not isinstance(predictor, TorchPredictor):
                raise HTTPException(400, "heat maps need the PyTorch model file, not ONNX")
            answer["cam"], answer["image"] = await anyio.to_thread.run_sync(
                heat_map_urls, image, row, limiter=limiter
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
        worklist = ranked(predictor, rows, failures)
        if output == "csv":
            return Response(
                worklist.csv_text(),
                media_type="text/csv",
                headers={"Content-Disposition": 'attachment; filename="worklist.csv"'},
            )
        return JSONResponse(worklist.to_json())

    return app


def _png_url(picture: PILImage.Image) -> str:
    picture.thumbnail((1024, 1024))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
