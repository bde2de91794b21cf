"""The command line's grammar, read from the command tree itself: every command, including the
ones added after this file was written, is walked and held to the same rules. The same kind of
thing has one name and one type everywhere (a model file is a `ModelFile`, an output is `--out`,
a data root is `IMAGES`); a path is always one of the shared kinds of `cxr.cli.common`; a string
with a fixed set of values is an enum that --help lists."""

import inspect
from enum import Enum
from pathlib import Path
from types import UnionType
from typing import Union, get_args, get_origin

import pytest
import typer
from typer.testing import CliRunner

from cxr.cli import app, archive, common
from cxr.cli.benchmark import Backend, Variant
from cxr.cli.common import Architecture
from cxr.cli.data import ArchiveName

# Each shared kind, known by the check it runs as the command line is read.
KINDS = {
    common.model_file: "ModelFile",
    common.model_file_or_name: "ModelFileOrName",
    common.runs_or_model_files: "RunsOrModelFiles",
    common.existing: "Existing",
    common.existing_file: "InFile",
    common.new_file: "OutFile",
    common.new_folder: "OutFolder",
    common.work_folder: "WorkFolder",
    archive.out_unless_resumed: "OutFileOrFolder",  # a worklist file, or an archive run's folder
}
METAVARS = {
    "ModelFile": {"MODEL"},
    "ModelFileOrName": {"MODEL|ARCH"},
    "RunsOrModelFiles": {"RUNS|MODELS"},
    "OutFile": {"FILE"},
    "OutFolder": {"FOLDER"},
    "OutFileOrFolder": {"FILE|FOLDER"},
    "InFile": {"FILE"},
    "WorkFolder": {"FOLDER"},
}
OUTPUTS = {"OutFile", "OutFolder", "OutFileOrFolder"}
SECOND_OUTPUTS = {("predict", "--cam")}  # written beside the worklist that --out names

# Strings whose values are free (names, URLs, patterns), each with why it is no enum. A new
# string option or argument fails here until it is an enum (or `several`) or is listed.
FREE_TEXT = {
    "--label-map": "pairs of folder labels and the model's classes",
    "--threshold-rule": "a pattern: sensitivity>=S, youden or fixed:T",
    "--cam-class": "a class of the model given, known once its card is read",
    "--negative": "a class of the dataset given",
    "--strategy": "any Lightning strategy name, including registered ones",
    "--dicomweb": "a server's URL",
    "--study": "a Study Instance UID",
    "--host": "an address",
    "--allowed-host": "a host name",
    "--db": "a database URL",
    "--ae-title": "a DICOM AE title",
    "--calling-ae": "a DICOM AE title",
    "--send-to": "AET@host:port",
    "--sha256": "a checksum",
    "--lever": "a name and config overrides",
    "--batches": "whole numbers, comma-separated",
    "name": "a reviewer's name",
    "role": "a PostgreSQL role",
}


def commands(group=None, prefix: str = "") -> dict:
    """Every command by its full name, found by walking the tree recursively."""
    group = group or typer.main.get_command(app)
    found = {}
    for name, command in group.commands.items():
        full = f"{prefix}{name}"
        if hasattr(command, "commands"):
            found |= commands(command, f"{full} ")
        else:
            found[full] = command
    return found


def _parts(annotation) -> set:
    """The types an annotation is made of: `list[Path] | None` -> {Path}."""
    if get_origin(annotation) in (Union, UnionType):
        return set().union(*(_parts(a) for a in get_args(annotation) if a is not type(None)))
    if get_origin(annotation) is list:
        return _parts(get_args(annotation)[0])
    return {annotation}


def _params():
    for name, command in commands().items():
        for p in command.params:
            yield name, p, _parts(p.type_descriptor.annotation)


def _label(p) -> str:
    return p.opts[0] if p.param_type_name == "option" else p.name


def _kind(p) -> str | None:
    return KINDS.get(_check(p))


def _check(p):
    """The function a parameter's values go through (typer wraps it once the app has run)."""
    return inspect.unwrap(p.callback) if p.callback is not None else None


WIDE = {"COLUMNS": "400"}  # values kept whole on one line


def _help(name: str) -> str:
    """`cxr NAME --help` as printed."""
    result = CliRunner().invoke(app, [*name.split(), "--help"], prog_name="cxr", env=WIDE)
    assert result.exit_code == 0, (name, result.output)
    return result.output


def test_the_walk_finds_every_command_and_every_help_runs():
    found = commands()
    assert {"listen", "ensemble", "levers", "benchmark profile", "reviews export",
            "reviews add-reviewer", "reviews grant-app-role", "data download", "keygen",
            "sign", "doctor", "cv", "predict", "serve"} <= set(found)  # fmt: skip
    for name, command in found.items():
        shown = _help(name)
        assert f"Usage: cxr {name} " in shown, name
        assert f"Example: cxr {name} " in command.help, name


def test_every_path_is_one_of_the_shared_kinds():
    for name, p, types in _params():
        if Path in types:
            assert _kind(p) is not None, (
                f"cxr {name} {_label(p)}: a path without a shared kind; use ModelFile, "
                "OutFile/out_file, OutFolder/out_folder, in_file, Images... from cxr.cli.common"
            )
            assert p.metavar in METAVARS.get(_kind(p), {p.metavar}), (name, _label(p))


def test_a_model_is_a_model_kind_and_first():
    for name, p, types in _params():
        if p.name in ("model", "models"):
            kind = _kind(p) or ("RegistryName" if Architecture in types else None)
            assert kind in {"ModelFile", "ModelFileOrName", "RunsOrModelFiles", "RegistryName"}
            assert p.param_type_name == "argument", name
            assert command_arguments(name)[0].name == p.name, f"cxr {name}: the model comes first"
        if _kind(p) == "ModelFile":
            assert p.name == "model" and p.metavar == "MODEL", name
        if Architecture in types:
            assert p.metavar in {"ARCH", "ARCHS"}, name


def command_arguments(name: str) -> list:
    return [p for p in commands()[name].params if p.param_type_name == "argument"]


def test_every_output_is_out_and_says_whether_it_is_a_file_or_a_folder():
    writers = set()
    for name, p, _ in _params():
        kind = _kind(p)
        if kind in OUTPUTS:
            writers.add(name)
            assert p.opts == ["--out"] or (name, p.opts[0]) in SECOND_OUTPUTS, (name, p.opts)
            assert p.help.endswith("must not exist: cxr never overwrites."), (name, p.help)
        if kind == "OutFile":
            assert "a new file" in p.help, name
        if kind == "OutFolder":
            assert "a new folder" in p.help, name
        if p.opts[0] == "--out":
            assert kind in OUTPUTS | {"WorkFolder"}, name
    assert {"data inspect", "evaluate", "calibrate", "compare", "report", "predict", "export",
            "ensemble", "cv", "levers", "keygen", "reviews export", "benchmark train",
            "benchmark profile", "benchmark predict", "benchmark decode"} <= writers  # fmt: skip


def test_data_roots_and_images_are_named_alike():
    for name, p, _ in _params():
        if p.name == "images" or p.metavar == "IMAGES":
            assert p.name == "images" and p.metavar == "IMAGES", name
            assert _kind(p) == "Existing", name
    for name in ("predict", "evaluate", "export", "benchmark predict", "data inspect"):
        assert "images" in [p.name for p in command_arguments(name)], name


def test_the_same_option_has_the_same_type_and_help_everywhere():
    seen: dict[str, set] = {}
    for _, p, types in _params():
        if p.param_type_name == "option" and p.opts[0] not in ("--out", "--help", "--format"):
            seen.setdefault(p.opts[0], set()).add((frozenset(types), _kind(p)))
    # --out: a file or a folder, said by its kind; --format: each command lists its own formats
    assert not {k: v for k, v in seen.items() if len(v) > 1}
    assert not {"--data", "--checkpoint", "--calibration", "--images", "--to-format",
                "--into"} & set(seen)  # fmt: skip


def test_no_string_has_a_fixed_set_of_values():
    """A string is free text (listed above with why) or several choices of an enum; a choice
    among fixed values is an enum, which --help shows."""
    for name, p, types in _params():
        if str in types and _label(p) not in FREE_TEXT and _kind(p) is None:
            qualname = getattr(_check(p), "__qualname__", "")
            assert qualname.startswith("several."), (
                f"cxr {name} {_label(p)}: a free string; a fixed set of values is an enum "
                "(or `several` of one), free text goes in FREE_TEXT with why"
            )
    for name, command in commands().items():
        shown = _help(name)
        for p in command.params:
            for enum in _parts(p.type_descriptor.annotation):
                if isinstance(enum, type) and issubclass(enum, Enum):
                    assert all(member.value in shown for member in enum), (name, enum)


def test_the_shared_choices_are_the_librarys():
    """The enums kept light (the library's lists import torch) hold what the library knows."""
    from cxr.data.download import ARCHIVES
    from cxr.inference.benchmark import BACKENDS
    from cxr.models import list_models

    assert set(Architecture) == set(list_models())
    assert set(ArchiveName) == set(ARCHIVES)
    assert tuple(Backend) == BACKENDS
    assert {"fp32-nchw", "fp32-channels_last"} <= set(Variant)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("listen", "missing.pt"), "missing.pt: no such model file"),
        (("sign", "notes.txt", "--key", "notes.txt"),
         "notes.txt: a model file is a run's model.pt or an .onnx export"),
        (("benchmark", "predict", "resnet"), "'resnet' is neither a model file nor a registered"),
        (("benchmark", "profile", "resnet"), "'resnet' is not one of"),
        (("ensemble", "nowhere", "--out", "e"), "nowhere: no such model file"),
        (("train", "--config", "."), ".: a folder, not a file"),
        (("data", "download", "kermany", "--out", "notes.txt"),
         "notes.txt is a file, not a folder"),
        (("data", "download", "kermani", "--out", "k"), "'kermani' is not one of 'kermany'"),
    ],
)  # fmt: skip
def test_a_kind_refuses_what_is_not_one(tmp_path, monkeypatch, args, message):
    """Each kind's check, from the command line (tests/test_cli.py shows such refusals come
    before torch is imported)."""
    (tmp_path / "notes.txt").write_text("not a model\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, list(args), env=WIDE)
    said = " ".join((result.output + str(result.exception or "")).replace("│", " ").split())
    assert message in said, said
    assert not (tmp_path / "k").exists()


def test_a_command_that_takes_key_value_overrides_says_so_in_its_help():
    """Extra `key=value` arguments override the config wherever a command accepts them; its
    --help says so (a reader of `cxr study --help` would not guess it from `Usage`)."""
    taking = [n for n, c in commands().items() if c.context_settings.get("allow_extra_args")]
    assert {"train", "study", "cv", "levers"} <= set(taking)
    for name in taking:
        assert "key=value" in _help(name), name
