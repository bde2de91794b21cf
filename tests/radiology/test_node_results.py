"""The node and a PACS (Orthanc): the same image in two transfer syntaxes is one row and one set
of results; results carry the source's patient and study modules (the database keeps neither
name nor birth date), the SR references the Secondary Capture, the banner names the probability
of the class it decides; cxr's own results sent back add no row."""

from __future__ import annotations

import hashlib
import hmac
import io
import subprocess

import httpx
import pydicom
from PIL import Image
from sqlalchemy import create_engine, text

from cxr.dicomnode.results import banner_lines, with_banner
from cxr.store.worklist import Received
from tests.radiology.conftest import MARKER, dump, wait_until

SC, SR = "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.88.33"


def _rows(url: str) -> list[dict]:
    engine = create_engine(url)
    with engine.connect() as conn:
        query = "SELECT sop_instance_uid, status, reason, patient_pseudonym FROM instances"
        rows = [dict(r._mapping) for r in conn.execute(text(query))]
    engine.dispose()
    return rows


def _store(port: int, aet: str, *args) -> str:
    sent = subprocess.run(["storescu", "-v", "-aec", aet, "127.0.0.1", str(port), *map(str, args)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert sent.returncode == 0, sent.stdout + sent.stderr
    return sent.stdout + sent.stderr


def _assessed(entry: str = "NORMAL") -> Received:
    return Received(
        sop_instance_uid="1.2.3", content_digest="0" * 16, study_instance_uid="1.2",
        series_instance_uid="1.2.4", patient_pseudonym=None, spool_path="x.dcm",
        status="scored", classes=["NORMAL", "PNEUMONIA"], probabilities=[0.3, 0.7],
        predicted=entry, threshold={"value": 0.85, "rule": "sensitivity>=0.9",
                                    "positive_class": "PNEUMONIA"},
    )  # fmt: skip


def test_banner_names_the_probability_of_the_class_it_decides():
    """0.5 < P(PNEUMONIA) = 0.7 < threshold 0.85: NORMAL, with P(NORMAL) = 0.30, never 0.70."""
    lines = banner_lines(_assessed(), "PNEUMONIA")
    assert lines[1].startswith("cxr: NORMAL  P(NORMAL) = 0.30")
    assert "PNEUMONIA if P(PNEUMONIA) >= 0.85" in lines[1]
    assert "0.70" not in " ".join(lines)
    assert lines[2].startswith("heat map: evidence for PNEUMONIA")
    picture = Image.new("RGB", (800, 600), (90, 90, 90))
    banner = with_banner(picture, _assessed(), "PNEUMONIA")
    band = banner[: banner.shape[0] - 600].astype(int)
    assert band.shape[0] > 40 and banner.shape[1] == 800
    red = band[..., 0] > band[..., 1] + 80  # jet's strong end (white or yellow text: R ~ G)
    green = band[..., 1] > band[..., 0] + 40  # its middle, over the grey of a film
    assert red.any() and green.any(), "the colour bar (jet, weak to strong) is missing"


def test_one_image_two_syntaxes_one_row_results_filed_with_the_patient(
    data, tmp_path, db_url, listener_factory, orthanc_factory
):
    source = data / "dicom_cxr" / "kermany_wrapped" / "normal_IM-0448-0001.dcm"
    original = pydicom.dcmread(source)
    assert original.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"  # explicit, native
    listener = listener_factory(db_url)
    pacs = orthanc_factory(listener.port)
    listener.send_to = f"ORTHANC@127.0.0.1:{pacs.dicom_port}"
    listener.start()

    _store(listener.port, "CXR", "-xi", source)  # implicit VR: PixelData as OW
    wait_until(lambda: len(pacs.find(Modality="SR")) == 1, 180, "the first results")
    _store(listener.port, "CXR", "-xe", source)  # explicit VR: PixelData as OB
    wait_until(lambda: listener.log.read_text().count("stored ") == 2, 60, "the resend")

    # A genuinely different image under the same UID is still flagged.
    changed = tmp_path / "changed.dcm"
    pixels = bytearray(original.PixelData)
    pixels[: len(pixels) // 2] = bytes(len(pixels) // 2)
    original.PixelData = bytes(pixels)
    original.save_as(changed)
    _store(listener.port, "CXR", changed)
    rows = wait_until(lambda: len(r := _rows(db_url)) == 2 and r, 180, "the reused UID's row")
    assert {r["sop_instance_uid"] for r in rows} == {str(original.SOPInstanceUID)}
    flagged = [r for r in rows if r["status"] == "not_scored"]
    assert len(flagged) == 1 and "already used by a different instance" in flagged[0]["reason"]

    # The PACS: one SC and one SR, filed with the patient and study of the source.
    assert len(pacs.find(Modality="SR")) == 1 and len(pacs.find(Modality="OT")) == 1
    sc = pydicom.dcmread(io.BytesIO(pacs.file(pacs.find(Modality="OT")[0])))
    sr = pydicom.dcmread(io.BytesIO(pacs.file(pacs.find(Modality="SR")[0])))
    for result in (sc, sr):
        assert str(result.PatientName) == str(original.PatientName) == "SYNTHETIC^PATIENT"
        assert result.PatientID == original.PatientID
        assert result.PatientBirthDate == original.PatientBirthDate
        assert result.StudyInstanceUID == original.StudyInstanceUID
    references = {
        item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for item in sr.ContentSequence
        if "ReferencedSOPSequence" in item
    }
    assert {sc.SOPInstanceUID, original.SOPInstanceUID} <= references
    band = sc.pixel_array[:80].astype(int)
    assert (band[..., 0] > band[..., 1] + 80).any(), "no colour bar in the banner"

    # The PACS forwards everything back (the source, stored there now, and cxr's results).
    _store(pacs.dicom_port, "ORTHANC", source)
    wait_until(lambda: listener.log.read_text().count("stored ") == 4, 60, "the forwarded source")
    everything = pacs.find()
    answer = httpx.post(f"{pacs.url}/modalities/cxr/store", timeout=120,
                        json={"Resources": everything, "Synchronous": True})  # fmt: skip
    assert answer.status_code == 200, answer.text
    wait_until(lambda: listener.log.read_text().count("ignored cxr's own result") == 2, 60,
               "the results recognised")  # fmt: skip
    assert len(_rows(db_url)) == 2
    assert len(pacs.find(Modality="SR")) == 1 and len(pacs.find(Modality="OT")) == 1

    # Neither name nor birth date in the database or the log; a keyed pseudonym.
    listener.stop()
    assert MARKER not in (dump(db_url) + listener.log.read_text()).upper()
    assert original.PatientBirthDate not in dump(db_url)
    key = (listener.spool / "pseudonym.key").read_bytes().strip()
    assert (listener.spool / "pseudonym.key").stat().st_mode & 0o077 == 0
    expected = hmac.new(key, original.PatientID.encode(), hashlib.sha256).hexdigest()[:24]
    assert {r["patient_pseudonym"] for r in rows} == {"p-" + expected}
    # Results sent: the spool keeps no name (the routing copy and the outbox are gone).
    stored = b"".join(p.read_bytes() for p in listener.spool.rglob("*") if p.is_file())
    assert MARKER.encode() not in stored.upper()
    assert "the emptied patient fields and the results only until" in listener.log.read_text()
    assert not list(listener.spool.rglob(".*.part"))
