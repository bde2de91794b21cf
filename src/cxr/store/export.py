"""Reviewed cases out as a dataset: `labels.csv` (file,label,split plus provenance columns) in
the layout `cxr train` and `cxr evaluate` read, with de-identified copies of the spooled images
(no link back into the spool: the folder moves and travels as it is)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
from sqlalchemy.orm import Session

from cxr.data.discovery import LABELS_CSV
from cxr.errors import DatasetError
from cxr.outputs import must_be_new
from cxr.spreadsheet import csv_text
from cxr.store import worklist
from cxr.store.deidentify import deidentify

COLUMNS = ["file", "label", "split", "sop_instance_uid", "study_instance_uid", "model_predicted",
           "model_fingerprint", "reviewed_by", "reviewed_at"]  # fmt: skip


@dataclass
class Export:
    out: Path
    rows: int
    missing: list[str]  # SOP Instance UIDs whose spooled image is gone


def export_reviews(session: Session, out: Path, actor: str) -> Export:
    """Write a new folder: labels.csv and de-identified copies (images/) of the spooled files."""
    must_be_new(out)  # a dangling link too: mkdir would follow it
    reviewed = worklist.reviewed(session)
    if not reviewed:  # an empty labels.csv is no dataset: cxr train and cxr evaluate refuse it
        raise DatasetError("no case reviewed yet in this worklist: nothing to export")
    (out / "images").mkdir(parents=True)
    rows, missing = [], []
    for row in reviewed:
        source = Path(row.spool_path)
        if not source.is_file():
            missing.append(row.sop_instance_uid)
            continue
        copy = out / "images" / source.name  # <SOP Instance UID>_<digest>.dcm: unique
        deidentify(pydicom.dcmread(source), row.patient_pseudonym).save_as(copy)
        rows.append({
            "file": copy.relative_to(out).as_posix(),
            "label": row.review_label,
            "split": "",
            "sop_instance_uid": row.sop_instance_uid,
            "study_instance_uid": row.study_instance_uid,
            "model_predicted": row.predicted,
            "model_fingerprint": row.model_fingerprint,
            "reviewed_by": row.reviewed_by,
            "reviewed_at": row.reviewed_at.isoformat() if row.reviewed_at else "",
        })  # fmt: skip
    with (out / LABELS_CSV).open("w", newline="") as fh:
        fh.write(csv_text(COLUMNS, rows))  # UIDs come from any sender: no cell runs as a formula
    worklist.audit(session, actor, "export", rows=len(rows), missing=len(missing))
    return Export(out, len(rows), missing)
