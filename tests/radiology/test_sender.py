"""Results to a PACS that does not answer: a real TCP peer on 127.0.0.1 that accepts and stays
silent, and a real pynetdicom SCP that never answers a C-STORE, each cost the node the stated
timeouts and a SendError saying which wait ran out (the results stay spooled for the retry)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import ComprehensiveSRStorage

from cxr.dicomnode.sender import Destination, SendError, Timeouts, send
from tests.radiology.conftest import free_port

SHORT = Timeouts(connect=2.0, association=1.0, store=1.0)


def _report() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = ComprehensiveSRStorage, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID = "SR", "sender-1"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def test_a_peer_that_accepts_and_never_answers_costs_the_association_timeout():
    port = free_port()
    with socket.create_server(("127.0.0.1", port)) as server:
        held: list[socket.socket] = []
        threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
        start = time.monotonic()
        with pytest.raises(SendError, match=r"no answer within 2 s \(connect\) \+ 1 s"):
            send([_report()], Destination("SILENT", "127.0.0.1", port), "CXR", SHORT)
        took = time.monotonic() - start
        for conn in held:
            conn.close()
    assert took < 10, f"a silent peer held the sender {took:.1f} s"


def test_a_pacs_that_never_answers_a_c_store_costs_the_store_timeout():
    port = free_port()
    release = threading.Event()

    def stall(event):  # answers long after the sender's 1 s
        release.wait(20)
        return 0x0000

    scp = AE(ae_title="STALL")
    scp.add_supported_context(ComprehensiveSRStorage)
    server = scp.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, stall)]
    )
    try:
        start = time.monotonic()
        with pytest.raises(SendError, match=r"no answer to the C-STORE of .* within 1 s"):
            send([_report()], Destination("STALL", "127.0.0.1", port), "CXR", SHORT)
        took = time.monotonic() - start
    finally:
        release.set()
        server.shutdown()
    assert took < 10, f"a stalled C-STORE held the sender {took:.1f} s"
