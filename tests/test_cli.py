"""The `cxr` command as a user runs it: a real subprocess, real data, real exit codes."""

import json
import subprocess
import sys


def _cxr(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "cxr", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_help_lists_the_verbs():
    result = _cxr("--help")
    assert result.returncode == 0 and "data" in result.stdout
    assert "Example" in _cxr("data", "inspect", "--help").stdout


def test_inspect_covid_layout(tmp_path, data):
    result = _cxr(
        "data", "inspect", str(data / "COVID-19_Radiography_Dataset"), "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["counts"] == {"all": {"COVID": 240, "Normal": 240, "Viral Pneumonia": 240}}
    assert (tmp_path / "montage.png").exists() and (tmp_path / "class_distribution.png").exists()


def test_inspect_lists_bad_files(tmp_path, damaged_folder):
    result = _cxr("data", "inspect", str(damaged_folder), "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    assert "unreadable files: 3" in result.stdout
    assert "truncated.jpeg" in result.stdout


def test_our_errors_are_one_line_not_a_traceback(tmp_path):
    result = _cxr("data", "inspect", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "no such folder" in result.stdout and "Traceback" not in result.stdout + result.stderr
