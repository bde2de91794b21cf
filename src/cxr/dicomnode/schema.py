"""Every value the node writes into the worklist database, made to fit its column first: UIDs
valid per PS3.5 (else emptied, and the instance not scored with why), text without NUL or lone
surrogates (PostgreSQL refuses both, SQLite keeps them), strings no longer than their column.
A poison header then becomes a "not scored" row instead of a write that fails for ever."""

from __future__ import annotations

import dataclasses

from cxr.dicomnode.contract import uid_problem
from cxr.store.models import Instance, Status
from cxr.store.worklist import Received

UID_FIELDS = {"study_instance_uid": "StudyInstanceUID", "series_instance_uid": "SeriesInstanceUID"}


def clean_text(text: str) -> str:
    """Without NUL, and encodable as UTF-8 (a lone surrogate becomes U+FFFD)."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def fitted(received: Received) -> Received:
    """A copy of `received` that every database accepts."""
    out = dataclasses.replace(received)
    problems = []
    for name, keyword in UID_FIELDS.items():
        if problem := uid_problem(keyword, getattr(out, name)):
            problems.append(problem)
            setattr(out, name, "")
    if problems:
        _not_scored(out, problems)
    for field in dataclasses.fields(out):
        value = getattr(out, field.name)
        if isinstance(value, str):
            setattr(out, field.name, _fit(field.name, clean_text(value)))
        elif isinstance(value, list):
            setattr(out, field.name, [clean_text(v) if isinstance(v, str) else v for v in value])
    return out


def _not_scored(out: Received, problems: list[str]) -> None:
    if out.status == Status.SCORED:  # never for headers checked first; kept as the last line
        out.status, out.predicted, out.probabilities, out.urgency = "not_scored", None, None, None
    new = [p for p in problems if p not in (out.reason or "")]
    out.reason = "; ".join(filter(None, [out.reason, *new]))


def _fit(name: str, value: str) -> str:
    length = getattr(Instance.__table__.c[name].type, "length", None)
    return value[:length] if length else value
