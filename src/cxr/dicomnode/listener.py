"""`cxr listen`: a storage SCP that never loses an acknowledged instance.

Reception and scoring are decoupled. The C-STORE handler checks the contract (AE titles, SOP
class, dataset size, spool quota), writes the instance to the spool (atomically, fsynced) and
answers Success after that; a single worker thread scores spooled files into the database, once,
and sends the results it kept. At start, and whenever the database comes back (looked for at
growing intervals), the worker catches up on every spooled file the database does not know, so
neither a kill -9 nor a database outage loses a study, and the (SOP Instance UID, image digest)
key makes repeats harmless in any transfer syntax. A file that fails for any other reason than a
lost database connection is quarantined with its reason, never retried in a loop."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from pydicom import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from cxr.dicomnode import contract, results
from cxr.dicomnode.pseudonym import pseudonym, site_key
from cxr.dicomnode.schema import clean_text, fitted
from cxr.dicomnode.scoring import Assessment, Scorer, not_scored
from cxr.dicomnode.sender import Destination, SendError, send
from cxr.dicomnode.spool import Spool, key
from cxr.errors import CxrError
from cxr.inference.predictor import load_predictor
from cxr.store import worklist
from cxr.store.database import DatabaseError, create, migrate, unit_of_work
from cxr.store.models import Status
from cxr.store.worklist import Received

log = logging.getLogger("cxr.listen")
SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUTAGE = (OperationalError, InterfaceError, PoolTimeout, DatabaseError)  # the database, not data
MiB = 2**20


@dataclass(frozen=True)
class ListenConfig:
    model: Path
    db_url: str
    spool: Path
    ae_title: str = "CXR"
    host: str = "127.0.0.1"
    port: int = 11112
    send_to: Destination | None = None
    retry_seconds: float = 5.0  # database down: first wait before looking again, then doubled
    retry_max_seconds: float = 60.0
    resend_seconds: float = 60.0  # PACS unreachable: how often to retry unsent results
    calling_ae_titles: tuple[str, ...] = ()  # empty: any calling AE title
    max_dataset_bytes: int = 256 * MiB
    spool_quota_bytes: int = 50 * 1024 * MiB

    def contract(self) -> str:
        """The start-up statement of what this node accepts and keeps."""
        callers = ", ".join(self.calling_ae_titles) or "any"
        return (
            f"called AE title must be {self.ae_title}; calling AE titles accepted: {callers}; "
            f"{contract.describe()}; at most {self.max_dataset_bytes // MiB} MiB a dataset and "
            f"{self.spool_quota_bytes // MiB} MiB of spool (status 0xA700 beyond). The spool "
            "keeps each instance with names and birth date emptied (PatientID, UIDs and "
            "accession stay to file results)"
            + ("; the emptied patient fields and the results only until they reach the PACS"
               if self.send_to else "")
        )  # fmt: skip


class Node:
    def __init__(self, cfg: ListenConfig) -> None:
        self.cfg = cfg
        self.scorer = Scorer(load_predictor(cfg.model))
        self.spool = Spool(cfg.spool, keep_routing=cfg.send_to is not None)
        self.key, self.key_source = site_key(self.spool.root)
        self.spool_used = self.spool.bytes_used()
        self.engine = create(cfg.db_url)  # connects lazily: reception starts even if it is down
        self.pending: queue.Queue[Path] = queue.Queue()
        self.done: set[str] = set()  # recorded and, when a PACS is configured, results sent
        self.unsent_since: float | None = None  # a result failed to reach the PACS
        self.stopping = threading.Event()
        self.ae = AE(ae_title=cfg.ae_title)
        self.ae.require_called_aet = True
        self.ae.require_calling_aet = list(cfg.calling_ae_titles)
        for context in AllStoragePresentationContexts:  # refused by status, with a reason
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
        log.info("contract: %s", self.cfg.contract())
        log.info("patient pseudonyms: HMAC-SHA256 keyed by %s", self.key_source)
        self.worker.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()  # no new instances; the spool keeps what the worker has not done
        self.stopping.set()
        self.worker.join(timeout=60)

    def _on_store(self, event) -> int | Dataset:
        size = len(event.request.DataSet.getbuffer())  # checked before decoding anything
        if size > self.cfg.max_dataset_bytes:
            return _refusal(OUT_OF_RESOURCES, f"dataset {size // MiB} MiB > limit "
                            f"{self.cfg.max_dataset_bytes // MiB} MiB")  # fmt: skip
        if self.spool_used + size > self.cfg.spool_quota_bytes:
            log.error("spool quota of %d MiB reached: instance refused",
                      self.cfg.spool_quota_bytes // MiB)  # fmt: skip
            return _refusal(OUT_OF_RESOURCES, "cxr spool quota reached")
        try:
            dataset = event.dataset
            if results.is_ours(dataset):
                log.info("ignored cxr's own result %s", dataset.get("SOPInstanceUID", "?"))
                return SUCCESS
            sop_class = str(event.request.AffectedSOPClassUID)
            if not contract.accepted(sop_class):
                log.warning("refused an instance of SOP class %s (not in the contract)",
                            clean_text(sop_class)[:64])  # fmt: skip
                return _refusal(SOP_CLASS_NOT_SUPPORTED, "SOP class not accepted by cxr")
            path = self.spool.store(dataset, event.file_meta)
        except ValueError as exc:
            log.warning("refused an instance: %s", exc)
            return _refusal(CANNOT_UNDERSTAND, str(exc)[:64])
        except OSError as exc:
            log.error("spool write failed, instance not acknowledged: %s", exc)
            return OUT_OF_RESOURCES
        self.spool_used += size
        log.info("stored %s", path.stem)
        if path.stem in self.done:
            self.spool.sent(path)  # a repeat: its patient fields are not needed again
        else:
            self.pending.put(path)
        return SUCCESS

    def _work(self) -> None:
        ready, wait = False, self.cfg.retry_seconds
        while not self.stopping.is_set():
            if not ready:
                ready = self._catch_up()
                if not ready:  # an outage: look again later, less and less often
                    self.stopping.wait(wait)
                    wait = min(wait * 2, self.cfg.retry_max_seconds)
                else:
                    wait = self.cfg.retry_seconds
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
            except OUTAGE as exc:
                problem = str(exc).splitlines()[0]
                log.warning("database error (%s); %s stays spooled", problem, path.stem)
                ready = False  # the catch-up finds it again once the database is back
            except Exception as exc:  # anything else would fail again: never retried in a loop
                self._quarantine(path, exc)

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
        self.spool.forget(self.done)
        todo = sorted((p for p in files.values() if p.stem not in self.done), key=_arrival)
        for path in todo:
            self.pending.put(path)
        self.spool_used = self.spool.bytes_used()
        log.info("worklist database ready; %d spooled instance(s) to catch up", len(todo))
        return True

    def _process(self, path: Path) -> None:
        if path.stem in self.done:
            return
        sop, digest = key(path)
        with Session(self.engine, expire_on_commit=False) as session:
            known = bool(worklist.known_keys(session, [(sop, digest)]))
            taken = not known and worklist.uid_taken(session, sop, digest)
        if not known:
            self._assess(path, taken)
        with unit_of_work(self.engine) as session:
            row = worklist.entry(session, sop, digest)
            if self.cfg.send_to and row.status == Status.SCORED and row.results_sent_at is None:
                outbox = self.spool.results(path) or self._recompute(path)
                if not outbox:
                    log.error("%s: scored before, not scorable now: no results", path.stem)
                elif not self._send(row.sop_instance_uid, outbox):
                    self.unsent_since = self.unsent_since or time.monotonic()
                    return  # not done: a later catch-up sends the kept results
                else:
                    worklist.mark_sent(session, row)
        self.spool.sent(path)
        self.done.add(path.stem)

    def _assess(self, path: Path, taken: bool) -> None:
        """Score once; keep what goes to the PACS in the outbox before the row says scored."""
        header = self.spool.header(path)
        refusal = "SOP Instance UID already used by a different instance" if taken else None
        try:
            assessment = self.scorer.assess(path, header, pseudonym(self.key, header), refusal)
        except Exception as exc:  # one bad file never stops the node; it is listed with why
            log.error("%s: could not be assessed: %s", path.stem, type(exc).__name__)
            why = f"processing failed: {type(exc).__name__}"
            assessment = Assessment(not_scored(path, header, reason=why))
        received = fitted(assessment.received)
        self._save_previews(path, assessment)
        if self.cfg.send_to and received.status == Status.SCORED:
            self.spool.save_results(path, self._results(header, received, assessment))
        with unit_of_work(self.engine) as session:
            new = worklist.record(session, received)
        said = received.predicted if received.status == Status.SCORED else received.reason
        log.info("%s %s: %s", "recorded" if new else "already known", path.stem, said)

    def _recompute(self, path: Path) -> list[Dataset]:
        """Results for a row scored before its outbox existed (or whose outbox was lost)."""
        header = self.spool.header(path)
        assessment = self.scorer.assess(path, header, pseudonym(self.key, header))
        received = fitted(assessment.received)
        if received.status != Status.SCORED:
            return []
        outbox = self._results(header, received, assessment)
        self.spool.save_results(path, outbox)
        return outbox

    def _results(self, header: Dataset, entry: Received, assessment: Assessment) -> list[Dataset]:
        """The Secondary Capture when there is a heat map (not for ONNX), and the SR."""
        if assessment.overlay is None:
            return [results.structured_report(header, entry)]
        sc = results.secondary_capture(header, entry, assessment.overlay, assessment.explained)
        return [sc, results.structured_report(header, entry, sc)]

    def _save_previews(self, path: Path, assessment: Assessment) -> None:
        if assessment.image is not None:
            self.spool.save_preview(path, "image", Image.fromarray(assessment.image.pixels))
        if assessment.overlay is not None:
            self.spool.save_preview(path, "cam", assessment.overlay)

    def _send(self, sop: str, outbox: list[Dataset]) -> bool:
        try:
            send(outbox, self.cfg.send_to, self.cfg.ae_title)
        except SendError as exc:
            log.error("results for %s not sent: %s", sop, exc)
            return False
        log.info("results for %s sent to %s", sop, self.cfg.send_to)
        return True

    def _quarantine(self, path: Path, exc: Exception) -> None:
        """Out of the queue for good, listed as not scored with why (when the database takes
        even that) and kept in spool/quarantine with the reason beside it."""
        problem = clean_text(str(exc).splitlines()[0] if str(exc) else "")[:200]
        reason = f"quarantined, not retried: {type(exc).__name__}: {problem}"
        log.error("%s: %s", path.stem, reason)
        moved = self.spool.quarantine(path, reason)
        try:
            with unit_of_work(self.engine) as session:
                worklist.record(session, fitted(not_scored(moved, Dataset(), reason=reason)))
        except Exception as again:  # the reason stays beside the file in spool/quarantine
            log.error("%s: not listed either: %s", path.stem, type(again).__name__)
        self.done.add(path.stem)


def _refusal(status: int, comment: str) -> Dataset:
    """A C-STORE failure status with an ErrorComment (64 characters) saying why."""
    answer = Dataset()
    answer.Status = status
    answer.ErrorComment = "".join(c for c in comment if " " <= c <= "~" and c != "\\")[:64]
    return answer


def _arrival(path: Path) -> float:
    """Catch up in the order instances arrived, so a reused UID flags the later one."""
    return path.stat().st_mtime
