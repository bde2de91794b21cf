"""Every CSV cxr writes goes through here, so no cell can run as a spreadsheet formula.

File names, study UIDs and patient ids are chosen by whoever made the files or sent the study:
`=HYPERLINK(...)`, `+cmd|' /C calc'!A0` or `@SUM(...)` would run when a worklist or an export is
opened in Excel or LibreOffice, and quoting does not stop them. A text cell that starts with
= + - @ tab or carriage return gets a leading apostrophe (OWASP's advice), which spreadsheets
show as text; numbers, also written as text such as "-0.5" or "1e-05", pass unchanged.
`read_cell` undoes it, so cxr reads back what it wrote.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")  # what a spreadsheet reads as one


def safe_cell(value: Any) -> Any:
    """`value`, or `'value` when it is text a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not NUMBER.fullmatch(value):
        return "'" + value
    return value


def read_cell(text: str) -> str:
    """A cell of a CSV cxr wrote, as it was before `safe_cell`."""
    return text[1:] if text.startswith("'") and safe_cell(text[1:]) == text else text


def write_rows(fh: TextIO, rows: Iterable[Sequence[Any]]) -> None:
    """Rows (the header first) as CSV, every cell neutralised."""
    writer = csv.writer(fh)
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])


def csv_text(columns: Sequence[str], records: Iterable[dict[str, Any]]) -> str:
    """Records as CSV text under `columns` (missing keys left empty), every cell neutralised."""
    buffer = io.StringIO()
    write_rows(buffer, [columns, *([r.get(c, "") for c in columns] for r in records)])
    return buffer.getvalue()


def write_predictions(
    path: Path,
    images: Sequence[Sequence[str]],
    classes: Sequence[str],
    probs: Sequence[Sequence[float]],
    extra: dict[str, Sequence[Any]] | None = None,
) -> None:
    """The one layout of a labelled predictions CSV (a run's tuning predictions, an evaluation's):
    (path, digest, patient, label) per image, P of each class at 6 decimals (every later figure
    is computed from these), then the `extra` columns."""
    extra = extra or {}
    header = ["path", "digest", "patient", "label", *(f"p_{c}" for c in classes), *extra]
    rows = (
        [*image, *(f"{v:.6f}" for v in row), *(column[i] for column in extra.values())]
        for i, (image, row) in enumerate(zip(images, probs, strict=True))
    )
    with Path(path).open("w", newline="") as fh:
        write_rows(fh, [header, *rows])
