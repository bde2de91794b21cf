"""What every command shares: the console, the argument types (the same thing has the same name
in every command), the one output policy and the progress bars. Nothing here imports torch, so
argument errors come back before any heavy import."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
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


# Argument kinds: one type per kind of thing, the same name and check in every command, run as
# the command line is read (torch not yet imported). tests/test_grammar.py tells a parameter's
# kind by its check, so a new command that names a path without one of these fails there.

MODEL_SUFFIXES = (".pt", ".onnx")


def model_file(path: Path | None) -> Path | None:
    """An existing model file; a run folder is named as one, with the file to give instead."""
    if path is None:
        return path
    if path.is_file():
        if path.suffix not in MODEL_SUFFIXES:
            raise CxrError(f"{path}: a model file is a run's model.pt or an .onnx export")
        return path
    if (path / "model.pt").is_file():
        raise CxrError(f"{path} is a run folder; use {path / 'model.pt'}")
    if path.is_dir():
        raise CxrError(f"{path} is a folder, not a model file")
    raise CxrError(f"{path}: no such model file")


class Architecture(StrEnum):
    """The registry's trainable architectures (cxr.models.list_models(); importing it loads
    torch, so tests/test_grammar.py pins the two equal)."""

    alexnet = "alexnet"
    classic_cnn = "classic_cnn"
    cxr_cnn = "cxr_cnn"
    densenet121 = "densenet121"
    efficientnet_b0 = "efficientnet_b0"
    efficientnet_lite0 = "efficientnet_lite0"
    efficientnet_lite1 = "efficientnet_lite1"
    efficientnet_lite2 = "efficientnet_lite2"
    lenet5 = "lenet5"
    resnet18 = "resnet18"
    resnet50 = "resnet50"
    vgg16 = "vgg16"
    vgg19 = "vgg19"
    xrv_densenet121 = "xrv_densenet121"


def model_file_or_name(value: str) -> str:
    """A registered architecture, or else an existing model file."""
    if value in set(Architecture):
        return value
    path = Path(value)
    if path.suffix or len(path.parts) > 1 or path.exists():
        model_file(path)
        return value
    raise CxrError(
        f"{value!r} is neither a model file nor a registered architecture "
        f"({', '.join(Architecture)})"
    )


def runs_or_model_files(paths: list[Path]) -> list[Path]:
    """Run folders (their model.pt) or model files."""
    for path in paths:
        if not (path / "model.pt").is_file():
            model_file(path)
    return paths


def _each(paths: list[Path] | Path | None) -> list[Path]:
    return [paths] if isinstance(paths, Path) else list(paths or [])


def existing(paths: list[Path] | Path | None) -> list[Path] | Path | None:
    """Existing files or folders (images, evaluations)."""
    for path in _each(paths):
        if not path.exists():
            raise CxrError(f"{path}: no such file or folder")
    return paths


def existing_file(paths: list[Path] | Path | None) -> list[Path] | Path | None:
    """Existing files (a config, a key, a listing)."""
    for path in _each(paths):
        if not path.is_file():
            raise CxrError(
                f"{path}: a folder, not a file" if path.is_dir() else f"{path}: no such file"
            )
    return paths


def new_output(path: Path | None) -> Path | None:
    """A new output: refused if taken; its folder is made now, so writing cannot fail later."""
    if path is None:
        return None
    must_be_new(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CxrError(f"--out {path}: cannot create its folder ({exc.strerror})") from None
    return path


def new_file(path: Path | None) -> Path | None:
    """A new file to write (OutFile)."""
    return new_output(path)


def new_folder(path: Path | None) -> Path | None:
    """A new folder to fill (OutFolder)."""
    return new_output(path)


def work_folder(path: Path | None) -> Path | None:
    """A folder cxr keeps adding to (a spool, a download): made if missing, never a file."""
    if path is not None and path.exists() and not path.is_dir():
        raise CxrError(f"{path} is a file, not a folder")
    return path


MODEL_HELP = "A model file: a run's model.pt or its .onnx export."
IMAGES_HELP = "Image files and folders (folders are searched recursively)."
DATASET_HELP = (
    "A labelled folder of images: train/test splits, class folders, or files with a labels.csv; "
    "default $CXR_DATA/chest_xray."
)

ModelFile = Annotated[
    Path, typer.Argument(metavar="MODEL", help=MODEL_HELP, callback=model_file, show_default=False)
]
RegistryName = Annotated[
    Architecture, typer.Argument(metavar="ARCH", help="An architecture of the registry.")
]
RegistryNames = Annotated[
    list[Architecture], typer.Argument(metavar="ARCHS", help="Architectures of the registry.")
]
ModelFileOrName = Annotated[
    str,
    typer.Argument(
        metavar="MODEL|ARCH",
        help="A model file (a run's model.pt or an .onnx export) or an architecture of the "
        "registry.",
        callback=model_file_or_name,
    ),
]
RunsOrModelFiles = Annotated[
    list[Path],
    typer.Argument(
        metavar="RUNS|MODELS",
        help="Run folders (their model.pt) or model files.",
        callback=runs_or_model_files,
    ),
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
NEVER = "must not exist: cxr never overwrites."


def out_file(what: str) -> typer.models.OptionInfo:
    """`--out FILE` (OutFile): the file this command writes, refused before any work if taken."""
    return typer.Option(
        "--out", metavar="FILE", help=f"{what}; a new file, {NEVER}", callback=new_file
    )


def out_folder(what: str, name: str = "--out") -> typer.models.OptionInfo:
    """`--out FOLDER` (OutFolder): the folder this command fills, refused before any work if
    taken; `name` only for a second output beside `--out` (predict's `--cam`)."""
    return typer.Option(
        name, metavar="FOLDER", help=f"{what}; a new folder, {NEVER}", callback=new_folder
    )


def in_file(help: str, *names: str) -> typer.models.OptionInfo:
    """An option naming an existing file (InFile)."""
    return typer.Option(*names, metavar="FILE", help=help, callback=existing_file)


def work_folder_option(help: str, *names: str) -> typer.models.OptionInfo:
    """An option naming a folder cxr keeps adding to (WorkFolder)."""
    return typer.Option(*names, metavar="FOLDER", help=help, callback=work_folder)


# Values with a form: refused as the command line is read, torch not yet imported.


def several(
    option: str, what: str, choices: type[StrEnum], help: str, *extra: str
) -> typer.models.OptionInfo:
    """An option that takes several `choices` (and `extra` words such as "all"), comma-separated
    as one word on the command line; --help lists them, as it lists a single choice's."""
    names = (*extra, *choices)

    def check(text: str) -> str:
        for item in text.split(","):
            if item.strip() not in names:
                raise CxrError(
                    f"{option}: {item.strip()!r} is not {what}; choose from {', '.join(names)}"
                )
        return text

    return typer.Option(option, metavar=f"{{{'|'.join(names)}}},...", help=help, callback=check)


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
