"""FastAPI app over one loaded model: the page and the model's card here, the prediction API in
`cxr.serve.scoring`, the reviewed worklist in `cxr.serve.worklist`. Inference runs in worker
threads, a few at a time, so the event loop stays free; heat maps come from the model's own
explainer, which concurrent requests share without a lock or a copy."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response

from cxr import __version__
from cxr.evaluation.explorer import WIDGET, card_explorer
from cxr.inference.predictor import load_predictor
from cxr.serve import pages, scoring
from cxr.serve.auth import TokenGate, api_token
from cxr.serve.service import FORM_OVERHEAD, ServeConfig, Served, Service
from cxr.serve.uploads import UploadGuard

model_router = APIRouter()


@model_router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> str:
    return pages.page("index.html")


@model_router.get("/healthz")
async def healthz(service: Service) -> dict:
    return {"status": "ok", "model_loaded": True, "model": service.predictor.source.name}


@model_router.get("/api/model")
async def model_card(service: Service) -> dict:
    card = service.predictor.card
    shown = card.to_dict()
    shown.pop("tuning")  # hundreds of numbers; the page asks /api/model/tuning for them
    shown.pop("overlap", None)  # thousands of image keys: for the overlap check only
    return {**shown, "summary": card.summary()}


@model_router.get("/api/model/tuning")
async def tuning_predictions(service: Service) -> dict:
    """The tuning split's calibrated predictions: an operating-point explorer works on them."""
    return service.predictor.card.tuning


@model_router.get("/api/operating-points")
async def operating_points(service: Service) -> dict:
    """Confusion counts at every threshold over the tuning split's predictions, counted by the
    metrics kernel, for the page's threshold slider (no file names, no patients)."""
    explorer = service.explorer
    if explorer is None:
        raise HTTPException(404, "this model file stores no tuning-split predictions")
    return explorer


@model_router.get("/explorer.js", include_in_schema=False)
async def explorer_widget() -> Response:
    return Response(WIDGET.read_text(), media_type="text/javascript")


def create_app(cfg: ServeConfig) -> FastAPI:
    predictor = load_predictor(cfg.model)
    token = api_token(cfg.no_auth)
    app = FastAPI(
        title="cxr",
        description="Chest X-ray classification. A research tool, not a medical device.",
        version=__version__,
    )
    app.state.served = Served(
        cfg, predictor, anyio.CapacityLimiter(cfg.concurrency), card_explorer(predictor.card)
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
    if reviewers is not None:
        from cxr.serve.worklist import worklist_router

        app.include_router(worklist_router(reviewers, predictor.card.population, token))
    app.include_router(model_router)
    app.include_router(scoring.router)
    return app
