"""C-STORE results back to the PACS (pynetdicom as a storage SCU)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage

from cxr.errors import CxrError

_ADDRESS = re.compile(r"^(?P<aet>[^@]{1,16})@(?P<host>[^:]+):(?P<port>\d{1,5})$")


class SendError(CxrError, OSError):
    """The PACS could not be reached or refused an instance."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait on the PACS. pynetdicom waits on a TCP connect for as long as the OS does
    (about 2 minutes for a host that drops packets) and 30-60 s for each answer; the node scores
    in the same thread, so a silent PACS must cost seconds, not minutes, before the results wait
    in the spool for the next retry."""

    connect: float = 10.0  # TCP connection
    association: float = 15.0  # A-ASSOCIATE-AC / A-RELEASE-RP after the request
    store: float = 30.0  # each C-STORE response (a large Secondary Capture on a slow link)


@dataclass(frozen=True)
class Destination:
    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        """`AET@host:port`, e.g. ORTHANC@127.0.0.1:4242."""
        match = _ADDRESS.match(text.strip())
        if not match:
            raise CxrError(f"--send-to {text!r}: expected AET@host:port, e.g. ORTHANC@pacs:4242")
        return cls(match["aet"], match["host"], int(match["port"]))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def send(
    datasets: list[Dataset],
    destination: Destination,
    calling_ae: str,
    timeouts: Timeouts = Timeouts(),
) -> None:
    """Store every dataset in one association; raise SendError unless each one succeeded."""
    ae = AE(ae_title=calling_ae)
    ae.connection_timeout = timeouts.connect
    ae.acse_timeout = timeouts.association
    ae.dimse_timeout = ae.network_timeout = timeouts.store
    for context in (SecondaryCaptureImageStorage, ComprehensiveSRStorage):
        ae.add_requested_context(context)
    try:  # a host name that does not resolve is an outage like any other: kept, retried
        assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    except OSError as exc:
        raise SendError(f"{destination}: unreachable ({exc.strerror or exc})") from None
    if not assoc.is_established:
        raise SendError(
            f"{destination}: association refused, unreachable, or no answer within "
            f"{timeouts.connect:g} s (connect) + {timeouts.association:g} s (association)"
        )
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code is None:  # pynetdicom's empty answer: no response in time, or aborted
                raise SendError(
                    f"{destination}: no answer to the C-STORE of {ds.SOPInstanceUID} "
                    f"within {timeouts.store:g} s, or the association was aborted"
                )
            if code != 0x0000:
                raise SendError(
                    f"{destination}: C-STORE of {ds.SOPInstanceUID} failed (status {code})"
                )
    finally:
        assoc.release()
