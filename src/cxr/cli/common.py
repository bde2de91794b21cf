"""What every command shares: the console, argument types, progress bars and table rendering."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from cxr.settings import data_root

# Messages carry file names and install hints such as `pip install 'cxr[dicom]'`: printed as they
# are, never read as rich markup (which would swallow "[dicom]") nor recoloured by the highlighter.
console = Console(soft_wrap=True, markup=False, highlight=False)  # soft: never break a file path
STYLES = {"error:": "bold red", "warning:": "bold yellow", "skipped": "red", "unreadable": "red"}


def say(label: str, message: str) -> None:
    """One line led by a coloured label ("error", "warning", "skipped", "unreadable")."""
    console.print(Text.assemble((label, STYLES[label]), " ", message))


app = typer.Typer(
    help="cxr: chest X-ray classification you can trust.\n\n"
    "Example: cxr data inspect ../shared/data/chest_xray",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

SchemeOpt = Annotated[
    str,
    typer.Option(
        help="Label scheme: folder (folder names) or kermany3 "
        "(normal / bacterial / viral from Kermany file names)."
    ),
]
NegativeOpt = Annotated[
    str | None,
    typer.Option(help="Make it binary: this class against all others, e.g. --negative normal."),
]


def progress(description: str, total: int | None) -> Progress:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    bar.add_task(description, total=total)
    return bar


def dataset(root: Path | None, scheme: str, negative: str | None):
    from cxr.data.discovery import discover
    from cxr.data.labels import LabelScheme

    return discover(root or data_root() / "chest_xray", LabelScheme(scheme, negative))
