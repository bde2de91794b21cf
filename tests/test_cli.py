"""The `cxr` command as a user runs it: a real subprocess, real data, real exit codes; and its
grammar read from the command tree itself."""

import json
import subprocess
import sys

import typer

from cxr.cli import app

MODEL_FIRST = ("evaluate", "calibrate", "export", "predict", "serve", "benchmark predict")
WRITERS = ("data inspect", "evaluate", "calibrate", "compare", "report", "predict", "export",
           "benchmark train", "benchmark predict", "cv")  # fmt: skip


def _cxr(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "cxr", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def _commands() -> dict:
    """Every command by its full name, as the parser sees it (typer ships its own click)."""
    root = typer.main.get_command(app)
    found = {}
    for name, command in root.commands.items():
        if hasattr(command, "commands"):
            found |= {f"{name} {sub}": c for sub, c in command.commands.items()}
        else:
            found[name] = command
    return found


def test_help_lists_every_verb():
    result = _cxr("--help")
    assert result.returncode == 0
    for verb in ("data", "train", "study", "evaluate", "calibrate", "compare", "report",
                 "predict", "export", "serve", "benchmark"):  # fmt: skip
        assert f"│ {verb} " in result.stdout, verb
    for name, command in _commands().items():
        assert f"Example: cxr {name} " in command.help, name


def test_the_model_is_the_first_argument_and_images_are_named_alike():
    commands = _commands()
    for name in MODEL_FIRST:
        arguments = [p for p in commands[name].params if p.param_type_name == "argument"]
        assert arguments[0].metavar == "MODEL", name
    images = {
        name: p
        for name, c in commands.items()
        for p in c.params
        if p.param_type_name == "argument" and p.name == "images"
    }
    assert set(images) >= {"predict", "evaluate", "export", "benchmark predict", "data inspect"}
    assert all("IMAGES" in p.metavar for p in images.values())


def test_the_same_option_has_the_same_name_and_help_everywhere():
    helps: dict[str, set[str]] = {}
    for command in _commands().values():
        for p in command.params:
            if p.param_type_name == "option":
                helps.setdefault(p.opts[0], set()).add(p.help)
    for option in ("--bootstrap", "--workers", "--scheme", "--negative"):
        assert len(helps[option]) == 1, (option, helps[option])
    assert all(h.endswith("must not exist: cxr never overwrites.") for h in helps["--out"])
    assert not {"--data", "--checkpoint", "--calibration", "--images", "--to-format"} & set(helps)
    for name in WRITERS:
        assert "--out" in [p.opts[0] for p in _commands()[name].params], name


def test_argument_errors_come_before_torch_is_imported(tmp_path):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cxr", "evaluate", tmp_path / "missing.pt"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "missing.pt: no such model file" in result.stdout
    assert "| torch" not in result.stderr and "| cxr.cli" in result.stderr
    taken, model = tmp_path / "taken.csv", tmp_path / "m.pt"
    taken.write_text("mine\n")
    model.write_bytes(b"not read: the refusal comes first")
    for args in (("predict", model, tmp_path, "--out", taken),
                 ("export", model, "--out", taken),
                 ("data", "inspect", tmp_path, "--out", tmp_path),
                 ("compare", tmp_path, tmp_path, "--out", tmp_path),
                 ("benchmark", "train", "cxr_cnn", "--out", taken)):  # fmt: skip
        result = _cxr(*args)
        assert result.returncode == 2, args
        assert "exists; cxr never overwrites (choose another --out)" in result.stdout, args
    assert taken.read_text() == "mine\n"


def test_brackets_in_user_text_are_printed_as_typed(tmp_path):
    result = _cxr("data", "inspect", tmp_path / "cxr[dicom]" / "x[red]")
    assert result.returncode == 2
    assert f"{tmp_path}/cxr[dicom]/x[red]: no such file or folder" in result.stdout


def test_format_choices_are_checked_by_the_parser(tmp_path):
    model = tmp_path / "m.pt"
    model.write_bytes(b"")
    for args in (("predict", model, tmp_path, "--format", "jpeg"),
                 ("export", model, "--out", tmp_path / "m.onnx", "--to", "onnx-int9")):  # fmt: skip
        result = _cxr(*args)
        assert result.returncode == 2 and "Invalid value" in result.stderr, args


def test_inspect_covid_layout(tmp_path, data):
    out = tmp_path / "inspect"
    result = _cxr("data", "inspect", data / "COVID-19_Radiography_Dataset", "--out", out)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"all": {"COVID": 240, "Normal": 240, "Viral Pneumonia": 240}}
    assert (out / "montage.png").exists() and (out / "class_distribution.png").exists()


def test_inspect_lists_bad_files_and_never_overwrites_by_default(tmp_path, damaged_folder):
    for expected in ("ds", "ds-2"):
        result = _cxr("data", "inspect", damaged_folder, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "unreadable files: 3" in result.stdout
        assert "truncated.jpeg" in result.stdout
        assert (tmp_path / "outputs" / "inspect" / expected / "summary.json").is_file()


def test_our_errors_are_one_line_not_a_traceback(tmp_path):
    result = _cxr("data", "inspect", tmp_path / "nowhere")
    assert result.returncode == 2
    assert "no such file or folder" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
