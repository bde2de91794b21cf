"""The listener's contract, with dcmtk's storescu against a Node in this process: calling and
called AE titles, SOP classes scored / kept as not scored / refused, a dataset size limit and a
spool quota with a clear status; header checks before decoding; no stray `.part` file after a
kill; results computed once and kept while the PACS is down, then sent as they are."""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGExtended12Bit, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage
from sqlalchemy import create_engine, text

from cxr.dicomnode.listener import ListenConfig, Node
from cxr.dicomnode.pseudonym import KEY_ENV, PseudonymKeyError, site_key
from cxr.dicomnode.sender import Destination
from tests.radiology.conftest import free_port, wait_until

NM, CT, PDF = (
    "1.2.840.10008.5.1.4.1.1.20",
    "1.2.840.10008.5.1.4.1.1.2",
    "1.2.840.10008.5.1.4.1.1.104.1",
)


def _rows(url: str) -> dict[str, dict]:
    engine = create_engine(url)
    with engine.connect() as conn:
        query = "SELECT sop_instance_uid, status, reason, results_sent_at FROM instances"
        rows = {r[0]: dict(r._mapping) for r in conn.execute(text(query))}
    engine.dispose()
    return rows


def _storescu(port: int, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["storescu", "-v", "127.0.0.1", str(port), *map(str, args)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def _file(path: Path, sop_class: str, modality: str, syntax=ExplicitVRLittleEndian,
          pixels: bytes | None = None, size: int = 64) -> str:  # fmt: skip
    """A small image of any SOP class; `pixels`: encapsulated JPEG bytes (never decoded here)."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID = modality, "contract-1"
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = 16 if pixels else 8
    ds.BitsStored = 12 if pixels else 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if pixels is None:
        ds.PixelData = np.random.default_rng(0).integers(0, 255, (size, size), np.uint8).tobytes()
    else:
        ds.PixelData = encapsulate([pixels])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True)
    return str(ds.SOPInstanceUID)


def _pdf(path: Path) -> None:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = PDF, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.MIMETypeOfEncapsulatedDocument = "DOC", "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4\n%%EOF\n"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture()
def node_factory(model_file, tmp_path):
    nodes: list[Node] = []

    def make(**options) -> Node:
        spool = options.pop("spool", tmp_path / "spool")
        cfg = ListenConfig(model_file, f"sqlite:///{tmp_path / 'worklist.db'}", spool,
                           port=free_port(), **options)  # fmt: skip
        nodes.append(Node(cfg))
        nodes[-1].start()
        return nodes[-1]

    yield make
    for node in nodes:
        node.stop()


def test_contract_titles_classes_and_limits(node_factory, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="cxr.listen")
    (tmp_path / "spool" / "previews").mkdir(parents=True)
    stray = [tmp_path / "spool" / ".x.part", tmp_path / "spool" / "previews" / ".y.part"]
    for part in stray:
        part.write_bytes(b"")  # what a kill mid-write leaves
    node = node_factory(calling_ae_titles=("MODALITY",), max_dataset_bytes=100_000)
    assert not any(p.exists() for p in stray)
    assert "calling AE titles accepted: MODALITY" in caplog.text
    assert "refuses other SOP classes" in caplog.text and "de-identified" not in caplog.text

    nm = _file(tmp_path / "nm.dcm", NM, "NM", JPEGExtended12Bit, b"\xff\xd8\xff\xc1 not JPEG")
    ct = _file(tmp_path / "ct.dcm", CT, "CT")
    _file(tmp_path / "big.dcm", SecondaryCaptureImageStorage, "CR", size=400)  # 160 kB
    _pdf(tmp_path / "doc.dcm")
    port = node.cfg.port
    stranger = _storescu(port, "-aet", "STRANGER", "-aec", "CXR", tmp_path / "ct.dcm")
    assert stranger.returncode != 0 and "Association Rejected" in stranger.stdout + stranger.stderr
    misdialled = _storescu(port, "-aet", "MODALITY", "-aec", "PACS", tmp_path / "ct.dcm")
    assert misdialled.returncode != 0
    assert "Association Rejected" in misdialled.stdout + misdialled.stderr

    sent = _storescu(port, "-aet", "MODALITY", "-aec", "CXR", "-xx", "-nh", tmp_path / "nm.dcm",
                     tmp_path / "ct.dcm", tmp_path / "doc.dcm", tmp_path / "big.dcm")  # fmt: skip
    output = sent.stdout + sent.stderr
    assert "0x0122" in output or "SOPClassNotSupported" in output, output
    assert "0xa700" in output.lower() or "OutOfResources" in output, output
    db = node.cfg.db_url
    rows = wait_until(lambda: len(r := _rows(db)) == 2 and r, 120, "NM and CT listed")
    assert rows[nm]["status"] == rows[ct]["status"] == "not_scored"
    assert "DICOM Modality NM (not CR/DX)" in rows[nm]["reason"]
    assert "decoder" not in rows[nm]["reason"]  # the header decided before any decoding
    assert "SOP class CT" in rows[ct]["reason"]
    assert len(node.spool.files()) == 2  # the PDF and the oversized image never spooled


def test_spool_quota_refuses_with_out_of_resources(node_factory, tmp_path):
    node = node_factory(spool_quota_bytes=1)
    _file(tmp_path / "cr.dcm", SecondaryCaptureImageStorage, "CR")
    sent = _storescu(node.cfg.port, "-aec", "CXR", tmp_path / "cr.dcm")
    output = sent.stdout + sent.stderr
    assert "0xa700" in output.lower() or "OutOfResources" in output, output
    assert node.spool.files() == []


def test_pseudonym_key_from_the_environment_or_an_owner_only_file(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    key, where = site_key(tmp_path)
    assert where.endswith("pseudonym.key") and len(key) == 64
    assert (tmp_path / "pseudonym.key").stat().st_mode & 0o777 == 0o600
    assert site_key(tmp_path)[0] == key  # kept: pseudonyms stay stable across restarts
    (tmp_path / "pseudonym.key").chmod(0o644)
    with pytest.raises(PseudonymKeyError, match="chmod 600"):
        site_key(tmp_path)
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(PseudonymKeyError, match="at least 32"):
        site_key(tmp_path)
    monkeypatch.setenv(KEY_ENV, "k" * 40)
    assert site_key(tmp_path) == (b"k" * 40, f"${KEY_ENV}")


def test_results_computed_once_kept_while_the_pacs_is_down_then_sent(
    node_factory, data, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="cxr.listen")
    pacs_port = free_port()
    node = node_factory(send_to=Destination("PACS", "127.0.0.1", pacs_port), resend_seconds=1)
    source = data / "dicom_cxr" / "kermany_wrapped" / "normal_IM-0448-0001.dcm"
    assert _storescu(node.cfg.port, "-aec", "CXR", source).returncode == 0
    wait_until(lambda: caplog.text.count("not sent") >= 3, 120, "three failed sends")
    assert caplog.text.count("recorded ") == 1 and "already known" not in caplog.text
    assert len(list((node.spool.root / "outbox").glob("*.dcm"))) == 2

    received: list[Dataset] = []

    def on_store(event) -> int:
        received.append(event.dataset)
        return 0x0000

    pacs = AE(ae_title="PACS")
    for context in (SecondaryCaptureImageStorage, ComprehensiveSRStorage):
        pacs.add_supported_context(context)
    server = pacs.start_server(("127.0.0.1", pacs_port), block=False,
                               evt_handlers=[(evt.EVT_C_STORE, on_store)])  # fmt: skip
    try:
        wait_until(lambda: len(received) == 2, 60, "the kept results at the PACS")
        sop = str(pydicom.dcmread(source, stop_before_pixels=True).SOPInstanceUID)
        wait_until(lambda: _rows(node.cfg.db_url)[sop]["results_sent_at"], 30, "marked sent")
        time.sleep(2)  # a resend would arrive now
    finally:
        server.shutdown()
    assert len(received) == 2 and caplog.text.count("recorded ") == 1
    assert {str(d.PatientName) for d in received} == {"SYNTHETIC^PATIENT"}
    assert not list((node.spool.root / "outbox").glob("*.dcm"))
    assert not list((node.spool.root / "routing").glob("*"))


def test_cli_states_and_applies_the_contract(listener_factory, tmp_path):
    listener = listener_factory(f"sqlite:///{tmp_path / 'cli.db'}")
    listener.args += ["--calling-ae", "MODALITY", "--max-dataset-mib", "1"]
    listener.start()
    wait_until(lambda: "contract:" in listener.log.read_text(), 60, "the stated contract")
    log = listener.log.read_text()
    assert "calling AE titles accepted: MODALITY" in log and "at most 1 MiB a dataset" in log
    _file(tmp_path / "ct.dcm", CT, "CT")
    refused = _storescu(listener.port, "-aet", "OTHER", "-aec", "CXR", tmp_path / "ct.dcm")
    assert "Association Rejected" in refused.stdout + refused.stderr
    accepted = _storescu(listener.port, "-aet", "MODALITY", "-aec", "CXR", tmp_path / "ct.dcm")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "Received Store Response (Success)" in accepted.stdout + accepted.stderr
