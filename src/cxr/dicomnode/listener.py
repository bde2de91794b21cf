"""`cxr listen`: a storage SCP that never loses an acknowledged instance.

Reception and scoring are decoupled. The C-STORE handler only writes the instance to the spool
(atomically, fsynced) and answers Success after that; a single worker thread scores spooled
files into the database and sends results. At start, and whenever the database comes back,
the worker catches up on every spooled file the database does not know, so neither a kill -9
nor a database outage loses a study, and the SOP Instance UID key makes repeats harmless."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
from PIL import Image
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from cxr.dicomnode import results
from cxr.dicomnode.scoring import SCORED, Assessment, Scorer
from cxr.dicomnode.sender import Destination, SendError, send
from cxr.dicomnode.spool import Spool, key
from cxr.errors import CxrError
from cxr.inference.predictor import load_predictor
from cxr.store import worklist
from cxr.store.database import DatabaseError, create, migrate
from cxr.store.worklist import Received

log = logging.getLogger("cxr.listen")
SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000


@dataclass(frozen=True)
class ListenConfig:
    model: Path
    db_url: str
    spool: Path
    ae_title: str = "CXR"
    host: str = "127.0.0.1"
    port: int = 11112
    send_to: Destination | None = None
    retry_seconds: float = 5.0  # database down: how often to look again
    resend_seconds: float = 60.0  # PACS unreachable: how often to retry unsent results


class Node:
    def __init__(self, cfg: ListenConfig) -> None:
        self.cfg = cfg
        self.scorer = Scorer(load_predictor(cfg.model))
        self.spool = Spool(cfg.spool)
        self.engine = create(cfg.db_url)  # connects lazily: reception starts even if it is down
        self.pending: queue.Queue[Path] = queue.Queue()
        self.done: set[str] = set()  # recorded and, when a PACS is configured, results sent
        self.unsent_since: float | None = None  # a result failed to reach the PACS
        self.stopping = threading.Event()
        self.ae = AE(ae_title=cfg.ae_title)
        for context in AllStoragePresentationContexts:
            self.ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self.ae.add_supported_context(Verification)
        self.server = None
        self.worker = threading.Thread(target=self._work, name="cxr-worker", daemon=True)

    def start(self) -> None:
        handlers = [(evt.EVT_C_STORE, self._on_store)]
        try:
            self.server = self.ae.start_server(
                (self.cfg.host, self.cfg.port), block=False, evt_handlers=handlers
            )
        except OSError as exc:
            raise CxrError(f"cannot listen on {self.cfg.host}:{self.cfg.port}: {exc}") from exc
        self.worker.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()  # no new instances; the spool keeps what the worker has not done
        self.stopping.set()
        self.worker.join(timeout=60)

    def _on_store(self, event) -> int:
        try:
            dataset = event.dataset
            path = self.spool.store(dataset, event.file_meta)
        except ValueError as exc:
            log.warning("refused an instance: %s", exc)
            return CANNOT_UNDERSTAND
        except OSError as exc:
            log.error("spool write failed, instance not acknowledged: %s", exc)
            return OUT_OF_RESOURCES
        log.info("stored %s", path.stem)
        if path.stem not in self.done:
            self.pending.put(path)
        return SUCCESS

    def _work(self) -> None:
        ready = False
        while not self.stopping.is_set():
            if not ready:
                ready = self._catch_up()
                if not ready:
                    self.stopping.wait(self.cfg.retry_seconds)
                continue
            try:
                path = self.pending.get(timeout=0.5)
            except queue.Empty:
                waited = time.monotonic() - (self.unsent_since or time.monotonic())
                if self.unsent_since is not None and waited > self.cfg.resend_seconds:
                    self.unsent_since, ready = None, False
                continue
            try:
                self._process(path)
            except SQLAlchemyError as exc:
                problem = str(exc).splitlines()[0]
                log.warning("database error (%s); %s stays spooled", problem, path.stem)
                ready = False  # the catch-up finds it again once the database is back
            except Exception:  # the worker must outlive any one file; the catch-up retries it
                log.exception("%s: unexpected failure; it stays spooled", path.stem)

    def _catch_up(self) -> bool:
        """Queue every spooled file the database lacks, and scored ones whose results are unsent.
        The queue is emptied before the spool is listed: a file stored meanwhile is either in
        the listing or queued by its handler afterwards, never dropped."""
        while not self.pending.empty():
            self.pending.get_nowait()
        try:
            migrate(self.engine)
            with Session(self.engine, expire_on_commit=False) as session:
                files = {key(p): p for p in self.spool.files()}
                known = worklist.known_keys(session, files)
                unsent = {(r.sop_instance_uid, r.content_digest) for r in worklist.unsent(session)}
        except (DatabaseError, SQLAlchemyError) as exc:
            log.warning("database unavailable, receiving into the spool only: %s",
                        str(exc).splitlines()[0])  # fmt: skip
            return False
        if self.cfg.send_to is None:
            unsent = set()
        self.done = {files[k].stem for k in known - unsent}
        todo = sorted((p for p in files.values() if p.stem not in self.done), key=_arrival)
        for path in todo:
            self.pending.put(path)
        log.info("worklist database ready; %d spooled instance(s) to catch up", len(todo))
        return True

    def _process(self, path: Path) -> None:
        if path.stem in self.done:
            return
        sop, digest = key(path)
        with Session(self.engine, expire_on_commit=False) as session:
            taken = worklist.uid_taken(session, sop, digest)
        refusal = "SOP Instance UID already used by a different instance" if taken else None
        try:
            assessment = self.scorer.assess(path, refusal)
        except Exception as exc:  # one bad file never stops the node; it is listed with why
            log.error("%s: could not be assessed: %s", path.stem, exc)
            assessment = Assessment(_failed(path, exc))
        self._save_previews(path, assessment)
        with Session(self.engine, expire_on_commit=False) as session:
            new = worklist.record(session, assessment.received)
            row = worklist.entry(session, sop, digest)
            log.info("%s %s: %s", "recorded" if new else "already known", path.stem,
                     row.predicted if row.status == SCORED else row.reason)  # fmt: skip
            if self.cfg.send_to and row.status == SCORED and row.results_sent_at is None:
                if not self._send_results(path, assessment):
                    self.unsent_since = self.unsent_since or time.monotonic()
                    return  # not done: a later catch-up retries the results
                worklist.mark_sent(session, row)
        self.done.add(path.stem)

    def _save_previews(self, path: Path, assessment: Assessment) -> None:
        if assessment.image is not None:
            self.spool.save_preview(path, "image", Image.fromarray(assessment.image.pixels))
        if assessment.overlay is not None:
            self.spool.save_preview(path, "cam", assessment.overlay)

    def _send_results(self, path: Path, assessment: Assessment) -> bool:
        """The SR always; the Secondary Capture when there is a heat map (not for ONNX)."""
        entry, destination = assessment.received, self.cfg.send_to
        if entry.status != SCORED:  # scored before a restart, unreadable now
            return False
        header = pydicom.dcmread(path, stop_before_pixels=True)
        objects = [results.structured_report(header, entry)]
        if assessment.overlay is not None:
            objects.append(results.secondary_capture(header, entry, assessment.overlay))
        try:
            send(objects, destination, self.cfg.ae_title)
        except SendError as exc:
            log.error("results for %s not sent: %s", entry.sop_instance_uid, exc)
            return False
        log.info("results for %s sent to %s", entry.sop_instance_uid, destination)
        return True


def _arrival(path: Path) -> float:
    """Catch up in the order instances arrived, so a reused UID flags the later one."""
    return path.stat().st_mtime


def _failed(path: Path, exc: Exception) -> Received:
    header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    sop, digest = key(path)
    return Received(
        sop_instance_uid=sop,
        content_digest=digest,
        study_instance_uid=str(header.get("StudyInstanceUID", "")),
        series_instance_uid=str(header.get("SeriesInstanceUID", "")),
        patient_pseudonym=None,
        spool_path=str(path.resolve()),
        status="not_scored",
        reason=f"processing failed: {type(exc).__name__}",
    )
