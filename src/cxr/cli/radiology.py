"""`cxr listen` and `cxr reviews ...`: cxr inside a radiology department (a DICOM node feeding a
reviewed worklist in a database)."""

from __future__ import annotations

import getpass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cxr.cli.common import (
    ModelFile,
    app,
    console,
    out_folder,
    valid_database_url,
    work_folder_option,
)
from cxr.errors import CxrError
from cxr.settings import WORKLIST_DB

reviews_app = typer.Typer(help="The reviewed worklist: reviewers, and reviews out as a dataset.")

DbOpt = Annotated[
    str,
    typer.Option(
        "--db",
        help="Worklist database URL: sqlite:///file.db or postgresql+psycopg://user@host/db.",
        callback=valid_database_url,
    ),
]


class Role(StrEnum):
    """What a reviewer may do (cxr.store.reviewers.ROLES): admins also read the audit."""

    reviewer = "reviewer"
    admin = "admin"


def _ae_title(title: str) -> str:
    """DICOM's rule for an AE title: 1 to 16 printable ASCII characters, no backslash."""
    if (
        not 0 < len(title.strip()) <= 16
        or "\\" in title
        or not (title.isascii() and title.isprintable())
    ):
        raise CxrError(f"--ae-title {title!r}: 1 to 16 printable ASCII characters, no backslash")
    return title


def _destination(text: str | None) -> str | None:
    if text is not None:
        from cxr.dicomnode.sender import Destination  # no torch: refused at once

        Destination.parse(text)
    return text


Spool = Annotated[
    Path,
    work_folder_option(
        "Folder where every received instance is kept: names and birth date emptied; "
        "PatientID, UIDs and accession kept to file results (names only until sent)."
    ),
]
AeTitle = Annotated[
    str, typer.Option("--ae-title", help="This node's AE title.", callback=_ae_title)
]
SendTo = Annotated[
    str | None,
    typer.Option(
        "--send-to",
        help="Send the heat-map Secondary Capture and the SR here: AET@host:port.",
        callback=_destination,
    ),
]
CallingAe = Annotated[
    list[str] | None,
    typer.Option(
        "--calling-ae",
        help="Accept associations only from this calling AE title (repeatable; default any).",
        callback=lambda titles: [_ae_title(t) for t in titles or []],
    ),
]
MaxDatasetMib = Annotated[int, typer.Option(help="Refuse larger datasets (status 0xA700).", min=1)]
SpoolQuotaGib = Annotated[
    float, typer.Option(help="Refuse instances once the spool holds this much.", min=0.001)
]


@app.command("listen")
def listen_command(
    model: ModelFile,
    db: DbOpt = WORKLIST_DB,
    spool: Spool = Path("cxr-spool"),
    ae_title: AeTitle = "CXR",
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: all).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="DICOM port.", min=0, max=65535)] = 11112,
    send_to: SendTo = None,
    calling_ae: CallingAe = None,
    max_dataset_mib: MaxDatasetMib = 256,
    spool_quota_gib: SpoolQuotaGib = 50.0,
) -> None:
    """Receive studies by C-STORE, score chest radiographs into the worklist database and send
    the results back. Runs until stopped (Ctrl-C / SIGTERM); a restart catches up on the spool.

    Example: cxr listen runs/quick/model.pt --db sqlite:///worklist.db --send-to ORTHANC@pacs:4242
    """
    import signal
    import threading

    from cxr.dicomnode.listener import ListenConfig, Node
    from cxr.dicomnode.sender import Destination

    _quiet_dicom_logs()
    destination = Destination.parse(send_to) if send_to else None
    node = Node(
        ListenConfig(
            model, db, spool, ae_title, host, port, destination,
            calling_ae_titles=tuple(calling_ae or ()),
            max_dataset_bytes=max_dataset_mib * 2**20,
            spool_quota_bytes=int(spool_quota_gib * 2**30),
        )
    )  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node.start()
    console.print(
        f"listening as {ae_title} on {host}:{port}; spool {spool}"
        + (f"; results to {destination}" if destination else ""),
        highlight=False,
    )
    stop.wait()
    node.stop()


def _quiet_dicom_logs() -> None:
    """The node's own lines at INFO; the DICOM libraries only when something is wrong."""
    import logging
    import warnings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for chatty in ("pynetdicom", "highdicom", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # pydicom's value warnings quote header values (a patient's name, a hostile UID): the
    # listener states its own reasons instead.
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\.")


@reviews_app.command("export")
def export_command(
    out: Annotated[Path, out_folder("New folder for labels.csv and image links")],
    db: DbOpt = WORKLIST_DB,
) -> None:
    """The reviewers' labels as a dataset `cxr train` and `cxr evaluate` read, e.g. to measure
    the model against the radiologists.

    Example: cxr reviews export --db sqlite:///worklist.db --out reviewed
    then: cxr evaluate runs/demo/model.pt reviewed
    """
    from cxr.store.database import open_database
    from cxr.store.export import export_reviews

    with open_database(db).begin() as session:
        result = export_reviews(session, out, f"cli:{getpass.getuser()}")
    console.print(f"{result.rows} reviewed image(s) in {result.out}", highlight=False)
    for sop in result.missing:
        console.print(f"[yellow]missing from the spool[/yellow] {sop}", highlight=False)


@reviews_app.command("add-reviewer")
def add_reviewer_command(
    name: Annotated[str, typer.Argument(help="Who: shown in the audit trail.")],
    role: Annotated[
        Role, typer.Option(help="reviewer, or admin (may also read the audit).")
    ] = Role.reviewer,
    db: DbOpt = WORKLIST_DB,
) -> None:
    """Create a reviewer and print their token once (the database keeps only its hash).

    Example: cxr reviews add-reviewer "Dr Ada" --db sqlite:///worklist.db
    """
    from cxr.store.database import open_database
    from cxr.store.reviewers import add_reviewer

    with open_database(db).begin() as session:
        token = add_reviewer(session, name, role.value)
    console.print(token, highlight=False)


@reviews_app.command("grant-app-role")
def grant_app_role_command(
    role: Annotated[str, typer.Argument(help="An existing PostgreSQL role (LOGIN) for the app.")],
    db: DbOpt = WORKLIST_DB,
) -> None:
    """PostgreSQL: let ROLE run `cxr listen` and `cxr serve` without owning the tables, so that
    the application cannot disable the audit trigger. Run it as the owner (the role that
    migrates and adds reviewers, e.g. --db postgresql+psycopg://owner@db/cxr); then give the
    app a URL with ROLE. SQLite has no roles: there the file's permissions are the boundary.

    Example: cxr reviews grant-app-role cxr_app --db sqlite:///worklist.db
    """
    from cxr.store.database import create, migrate
    from cxr.store.roles import grant_application_role

    engine = create(db)
    migrate(engine)
    if grant_application_role(engine, role):
        console.print(f"{role}: may read and add instances and reviews, and append to the audit")
    else:
        console.print("SQLite has no roles: keep the database file readable by cxr's user only")
