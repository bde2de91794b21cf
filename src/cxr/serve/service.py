"""What every request of one server shares: its configuration, the loaded model (which owns its
Grad-CAM explainer) and the limit on inferences at once. `create_app` keeps one `Served` in the
app's state; routes ask for it as a dependency."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import Depends, HTTPException, Request

from cxr.data.image import XrayImage
from cxr.data.reader import read_image
from cxr.errors import ImageProblem, ImageReadError
from cxr.inference.predict import pseudonym
from cxr.inference.predictor import Predictor

UNSUPPORTED = {ImageProblem.NOT_AN_IMAGE, ImageProblem.UNSUPPORTED}
FORM_OVERHEAD = 2**20  # multipart headers and boundaries around the files


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


@dataclass(frozen=True)
class Served:
    cfg: ServeConfig
    predictor: Predictor
    limiter: anyio.CapacityLimiter
    explorer: dict | None  # the card's operating points, counted once (`card_explorer`)

    def shown(self, name: str) -> str:
        """A file's name as every answer gives it."""
        return pseudonym(name) if self.cfg.pseudonymize_names else name

    async def in_thread(self, work, *args):
        """`work(*args)` in a worker thread, at most `concurrency` at once: the loop stays free."""
        return await anyio.to_thread.run_sync(work, *args, limiter=self.limiter)

    async def read_one(self, data: bytes | None, name: str) -> XrayImage:
        """One uploaded image, or the 4xx that says why not."""
        if data is None:
            raise HTTPException(413, f"{name}: larger than {self.cfg.max_upload_bytes // 2**20} MB")
        try:
            return await self.in_thread(read_image, data, name)
        except ImageReadError as exc:
            status = 415 if exc.problem in UNSUPPORTED else 422
            raise HTTPException(
                status, f"This file is not a chest X-ray image we can read: {exc}"
            ) from None


def served(request: Request) -> Served:
    return request.app.state.served


Service = Annotated[Served, Depends(served)]
