"""The prediction API: one X-ray with its heat map (`/api/predict`), or a batch as a worklist
(`/api/triage`). Uploads stay in memory, read in bounded pieces after the token check, and are
never written to disk or logs; bad input always gets a 4xx with the reader's reason, never a 500;
a batch keeps only each image's model-size array once it has been read."""

from __future__ import annotations

import io
from dataclasses import asdict
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image as PILImage

from cxr.data.image import XrayImage
from cxr.data.reader import read_image
from cxr.errors import CxrError, ImageReadError
from cxr.inference.cam import colour_bar, display_image, heat_layer, overlay
from cxr.inference.predict import (
    Notes,
    Row,
    cam_caption,
    explained_class,
    known_class,
    notes,
    ranked,
    score,
)
from cxr.inference.predictor import TorchPredictor
from cxr.inline import data_uri
from cxr.serve.service import FORM_OVERHEAD, Served, Service
from cxr.serve.uploads import multipart_schema, uploads

DISPLAY_SIDE = 1024  # the page's pictures: overlay and plain image
THUMBNAIL = 96  # px, the longer side of a worklist thumbnail

router = APIRouter()

CamQuery = Annotated[
    bool, Query(description="Add the Grad-CAM heat map and the image as PNG data URLs.")
]
CamClassQuery = Annotated[
    str | None, Query(description="The class the heat map explains (default: the positive class).")
]
ScoreAnywayQuery = Annotated[
    bool,
    Query(
        description="Give the probabilities and heat map of an image flagged as probably "
        "not a frontal chest X-ray too (the flags stay beside them)."
    ),
]


@router.post("/api/predict", openapi_extra=multipart_schema("file", many=False))
async def predict(
    request: Request,
    service: Service,
    cam: CamQuery = False,
    cam_class: CamClassQuery = None,
    score_anyway: ScoreAnywayQuery = False,
) -> dict:
    """One JPEG, PNG or DICOM chest X-ray (multipart field `file`)."""
    predictor, cfg = service.predictor, service.cfg
    if cam and not isinstance(predictor, TorchPredictor):
        raise HTTPException(400, "heat maps need the PyTorch model file, not ONNX")
    if cam_class is not None:
        try:
            known_class(predictor, cam_class)
        except CxrError as exc:
            raise HTTPException(422, str(exc)) from None
    upload = None
    async for part in uploads(
        request, "file", cfg.max_upload_bytes, cfg.max_upload_bytes + FORM_OVERHEAD
    ):
        upload = upload or part
    if upload is None:
        raise HTTPException(422, "no file: send one image in the multipart field 'file'")
    name = service.shown(upload.filename)
    image = await service.read_one(upload.data, name)
    array, row = await service.in_thread(_scored, service, image, name)
    if row.error:
        raise HTTPException(422, f"{name}: {row.error}")
    row.score_anyway = score_anyway
    threshold = predictor.card.threshold
    answer = row.to_json(list(predictor.card.classes))
    del answer["rank"]  # one image is not a worklist
    answer |= {"threshold": asdict(threshold) if threshold else None, "cam": None}
    if cam and row.shows_score:
        answer |= await service.in_thread(_heat_map_urls, service, image, array, row, cam_class)
    elif cam:
        answer |= await service.in_thread(_plain_url, image)
    return answer


@router.post("/api/triage", openapi_extra=multipart_schema("files", many=True))
async def triage(
    request: Request,
    service: Service,
    output: Annotated[str, Query(alias="format", pattern="^(json|csv)$")] = "json",
):
    """Several X-rays (multipart field `files`, repeated): a worklist, most urgent first.
    Each file is read and reduced to the model's input as soon as it has arrived."""
    cfg, predictor = service.cfg, service.predictor
    arrays, noted, thumbnails, names, failures = [], [], [], [], []
    async for upload in uploads(
        request, "files", cfg.max_upload_bytes, cfg.max_batch_bytes + FORM_OVERHEAD
    ):
        if len(names) + len(failures) >= cfg.max_batch_files:
            raise HTTPException(413, f"at most {cfg.max_batch_files} files per request")
        name = service.shown(upload.filename)
        if upload.data is None:
            failures.append((name, f"larger than {cfg.max_upload_bytes // 2**20} MB"))
            continue
        try:
            array, note, thumbnail = await service.in_thread(_reduced, service, upload.data, name)
        except ImageReadError as exc:
            failures.append((name, f"{exc.problem.value}: {exc.detail}"))
            continue
        arrays.append(array)
        noted.append(note)
        thumbnails.append(thumbnail)
        names.append(name)
    if not names and not failures:
        raise HTTPException(422, "no files: send images in the multipart field 'files'")
    rows = await service.in_thread(score, predictor, names, arrays, noted) if arrays else []
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


def _scored(service: Served, image: XrayImage, name: str) -> tuple[np.ndarray, Row]:
    """The model-size array of one image and its row: the array is what its heat map explains."""
    card = service.predictor.card
    array = card.preprocessing.to_array(image.pixels)
    (row,) = score(service.predictor, [name], [array], [notes(image, card.population)])
    return array, row


def _reduced(service: Served, data: bytes, name: str) -> tuple[np.ndarray, Notes, str]:
    """Read one batch file and keep only what scoring and the worklist need: the model-size
    array, its flags and warnings, a thumbnail."""
    image = read_image(data, name)
    card = service.predictor.card
    return (
        card.preprocessing.to_array(image.pixels),
        notes(image, card.population),
        _thumbnail(image),
    )


def _heat_map_urls(
    service: Served, image: XrayImage, array: np.ndarray, row: Row, chosen: str | None
) -> dict:
    """The heat map for the explained class (the positive one unless chosen), of the array the
    prediction scored, as the overlay, the bare RGBA layer and its colour bar, with the plain
    image: PNG data URLs at display size, since a browser cannot show DICOM."""
    predictor = service.predictor
    classes = predictor.card.classes
    explained = explained_class(predictor, row.probs, chosen)
    (cam,) = predictor.explain(array[None], [classes.index(explained)])
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


def _plain_url(image: XrayImage) -> dict:
    """An image not scored: the picture alone, no heat map (its colours would read as a
    finding)."""
    return {"image": _png_url(display_image(image, DISPLAY_SIDE))}


def _thumbnail(image: XrayImage) -> str:
    picture = PILImage.fromarray(image.pixels)
    picture.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=80)
    return data_uri(buffer.getvalue(), "image/jpeg")


def _png_url(picture: PILImage.Image) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return data_uri(buffer.getvalue())
