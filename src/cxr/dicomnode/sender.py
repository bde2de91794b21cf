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


def send(datasets: list[Dataset], destination: Destination, calling_ae: str) -> None:
    """Store every dataset in one association; raise SendError unless each one succeeded."""
    ae = AE(ae_title=calling_ae)
    for context in (SecondaryCaptureImageStorage, ComprehensiveSRStorage):
        ae.add_requested_context(context)
    try:  # a host name that does not resolve is an outage like any other: kept, retried
        assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    except OSError as exc:
        raise SendError(f"{destination}: unreachable ({exc.strerror or exc})") from None
    if not assoc.is_established:
        raise SendError(f"{destination}: association refused or unreachable")
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code != 0x0000:
                raise SendError(
                    f"{destination}: C-STORE of {ds.SOPInstanceUID} failed (status {code})"
                )
    finally:
        assoc.release()
