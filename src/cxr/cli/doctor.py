"""`cxr doctor`: this host and install as a bug report needs them, in one command."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer

from cxr.cli.common import app, say


class DoctorFormat(StrEnum):
    """Aligned lines for a person, JSON for a machine."""

    table = "table"
    json = "json"


@app.command("doctor")
def doctor(
    output_format: Annotated[
        DoctorFormat, typer.Option("--format", help="table (aligned lines) or json.")
    ] = DoctorFormat.table,
) -> None:
    """What a bug report needs: cxr, Python and library versions, the GPU, the CPU's bf16 / AMX /
    VNNI / AVX-512 flags, threads, the precision `auto` trains in here and why, the data root,
    the cache's size, optional extras and the Debian servers found. Paste it into the report.

    Example: cxr doctor --format json
    """
    from cxr.doctor import gather, lines

    facts = gather()
    if output_format is DoctorFormat.json:
        say(json.dumps(facts, indent=2))
        return
    for line in lines(facts):
        say(line)
