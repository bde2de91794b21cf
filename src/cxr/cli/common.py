"""What every command shares: the console, the argument types (the same thing has the same name
in every command), the one output policy and the progress bars. Nothing here imports torch, so
argument errors come back before any heavy import."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cxr.errors import CxrError
from cxr.outputs import must_be_new
from cxr.progress import Stages, Step
from cxr.settings import data_root

console = Console(soft_wrap=True)  # never break a file path across lines
app = typer.Typer(
    help="cxr: chest X-ray classification you can trust.\n\n"
    "Example: cxr data inspect ../shared/data/chest_xray",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal's width
)


def say(text: str, style: str = "") -> None:
    """Print `text` as it is: paths, reasons and package names such as cxr[dicom] are never read
    as rich markup; `style` colours the whole line."""
    console.print(text, style=style or None, markup=False, highlight=False)


def warn(text: str) -> None:
    console.print(f"[bold yellow]warning:[/bold yellow] {escape(text)}", highlight=False)


def error(text: str) -> None:
    console.print(f"[bold red]error:[/bold red] {escape(text)}", highlight=False)


def quiet_libraries() -> None:
    """Keep the output ours: no library adverts and no deprecation notices aimed at library
    authors. Called once where the command starts (and in every DDP process it launches)."""
    pytree = r"`isinstance\(treespec, LeafSpec\)` is deprecated"  # Lightning calling torch
    warnings.filterwarnings("ignore", message=pytree, category=FutureWarning)
    # cxr keeps its history from epoch rows, so step logging on a tiny dataset loses nothing
    warnings.filterwarnings("ignore", message=r"The number of training batches .* logging interval")
    # "Seed set to 0", "GPU available: False", "`Trainer.fit` stopped", the litlogger tip:
    # Lightning's info lines say nothing a cxr user acts on; its warnings still print. Set on
    # the loggers that speak, because importing lightning resets its package loggers to INFO.
    # "Initializing distributed: GLOBAL_RANK …" stays: under DDP it says which process is which.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed",
                 "lightning.pytorch.accelerators.cuda"):  # fmt: skip
        logging.getLogger(name).setLevel(logging.WARNING)


# Arguments: the model first, then images, given the same way in every command.


def model_file(path: Path | None) -> Path | None:
    """A model file; a run folder is named as one, with the file to give instead."""
    if path is None or path.is_file():
        return path
    if (path / "model.pt").is_file():
        raise CxrError(f"{path} is a run folder; use {path / 'model.pt'}")
    if path.is_dir():
        raise CxrError(f"{path} is a folder, not a model file")
    raise CxrError(f"{path}: no such model file")


def existing(paths: list[Path] | Path | None) -> list[Path] | Path | None:
    for path in [paths] if isinstance(paths, Path) else paths or []:
        if not path.exists():
            raise CxrError(f"{path}: no such file or folder")
    return paths


def _new(path: Path | None) -> Path | None:
    """A new output: refused if taken; its folder is made now, so writing cannot fail later."""
    if path is None:
        return None
    must_be_new(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CxrError(f"--out {path}: cannot create its folder ({exc.strerror})") from None
    return path


MODEL_HELP = "A model file: a run's model.pt or its .onnx export."
IMAGES_HELP = "Image files and folders (folders are searched recursively)."
DATASET_HELP = (
    "A labelled folder of images: train/test splits, class folders, or files with a labels.csv; "
    "default $CXR_DATA/chest_xray."
)

Model = Annotated[
    Path, typer.Argument(metavar="MODEL", help=MODEL_HELP, callback=model_file, show_default=False)
]
Images = Annotated[
    list[Path], typer.Argument(metavar="IMAGES", help=IMAGES_HELP, callback=existing)
]
OptionalImages = Annotated[
    list[Path] | None,
    typer.Argument(metavar="IMAGES", help=IMAGES_HELP, callback=existing, show_default=False),
]
Dataset = Annotated[
    Path | None,
    typer.Argument(metavar="IMAGES", help=DATASET_HELP, callback=existing, show_default=False),
]
Evaluations = Annotated[
    list[Path],
    typer.Argument(
        metavar="EVALUATIONS",
        help="Run folders (their tuning predictions) or cxr evaluate folders.",
        callback=existing,
    ),
]


def out_option(what: str) -> typer.models.OptionInfo:
    """`--out`: where this command writes; it must not exist yet, and is refused before any work."""
    return typer.Option(
        "--out", help=f"{what}; must not exist: cxr never overwrites.", callback=_new
    )


# Values with a form: refused as the command line is read, torch not yet imported.


def comma_separated(option: str, what: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    """The callback of an option that takes several of fixed `choices`, comma-separated."""

    def check(text: str) -> str:
        for item in text.split(","):
            if item.strip() not in choices:
                raise CxrError(
                    f"{option}: {item.strip()!r} is not {what}; choose from {', '.join(choices)}"
                )
        return text

    return check


def valid_batch_sizes(text: str) -> str:
    """`--batches 1,8,32`: whole numbers of 1 or more."""
    for item in text.split(","):
        if not item.strip().isdigit() or int(item) < 1:
            raise CxrError(
                f"--batches: {item.strip()!r} is not a batch size; e.g. --batches 1,8,32"
            )
    return text


def parse_label_map(text: str | None) -> dict[str, str]:
    """`Normal=NORMAL,Viral Pneumonia=PNEUMONIA` -> {folder label: model class}."""
    if not text:
        return {}
    pairs = [item.partition("=") for item in text.split(",") if item.strip()]
    if any(not sep or not a.strip() or not b.strip() for a, sep, b in pairs):
        raise CxrError(f"--label-map {text!r}: expected FOLDER_LABEL=MODEL_CLASS,...")
    return {a.strip(): b.strip() for a, _, b in pairs}


def valid_label_map(text: str | None) -> str | None:
    parse_label_map(text)  # a malformed map is refused now, not after the model has loaded
    return text


def valid_threshold_rule(rule: str | None) -> str | None:
    """`sensitivity>=S`, `youden` or `fixed:T`, S and T between 0 and 1."""
    if rule is None or rule == "youden":
        return rule
    for prefix in ("sensitivity>=", "fixed:"):
        number = rule.removeprefix(prefix)
        if number != rule and number.replace(".", "", 1).isdigit() and float(number) <= 1:
            return rule
    raise CxrError(f"threshold rule {rule!r}: use sensitivity>=S, youden or fixed:T (0 to 1)")


def valid_database_url(url: str | None) -> str | None:
    """A URL SQLAlchemy can read; never echoed, since it may hold a password."""
    if url is not None:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(url)
        except ArgumentError:
            example = (
                f"sqlite:///{url}" if "://" not in url and url.strip() else "sqlite:///worklist.db"
            )
            raise CxrError(
                f"--db: not a database URL; e.g. {example} or postgresql+psycopg://user@host/db"
            ) from None
    return url


# Choices: the parser refuses anything else and --help lists them.


class SchemeName(StrEnum):
    """How folder names become labels (cxr.data.labels.SCHEMES)."""

    folder = "folder"
    kermany3 = "kermany3"


class Split(StrEnum):
    """What `cxr evaluate` scores: a split folder of the dataset, or the model's own patients
    rebuilt from its card."""

    train = "train"
    val = "val"
    test = "test"
    internal_test = "internal-test"
    tuning = "tuning"


class CalibrationMethod(StrEnum):
    """How `cxr calibrate` re-fits; platt is for binary models, vector for multi-class."""

    auto = "auto"
    temperature = "temperature"
    platt = "platt"
    vector = "vector"


class OutputFormat(StrEnum):
    """What `cxr predict` prints or writes: a table on screen, CSV or JSON."""

    table = "table"
    csv = "csv"
    json = "json"


class ModelFormat(StrEnum):
    """What `cxr export` turns a model into."""

    onnx = "onnx"
    onnx_int8 = "onnx-int8"


Bootstrap = Annotated[int, typer.Option(help="Bootstrap resamples for the 95 % CIs.", min=1)]
Workers = Annotated[int, typer.Option(help="Decoding processes.", min=0)]
Scheme = Annotated[
    SchemeName,
    typer.Option(
        help="Label scheme: folder (folder names) or kermany3 "
        "(normal / bacterial / viral from Kermany file names)."
    ),
]
Negative = Annotated[
    str | None,
    typer.Option(help="Make it binary: this class against all others, e.g. --negative normal."),
]


@contextmanager
def progress() -> Iterator[Stages]:
    """Bars for a job's stages, one after the other; each finished bar is cleared. The display
    starts with the first stage, so work before it (Lightning's own bar in `cxr study`) runs
    without a second live display."""
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # piped output (--format csv > file) stays clean
    )

    def stage(description: str, total: int | None) -> Step:
        if not bars.live.is_started:
            bars.start()
        for task in bars.tasks:
            bars.update(task.id, visible=False)
        task = bars.add_task(escape(description), total=total)
        return lambda n=1: bars.advance(task, n)

    try:
        yield stage
    finally:
        bars.stop()


def find_dataset(root: Path | None, scheme: str, negative: str | None):
    from cxr.data.discovery import discover
    from cxr.data.labels import LabelScheme

    return discover(root or data_root() / "chest_xray", LabelScheme(scheme, negative))
