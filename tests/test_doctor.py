"""`cxr doctor` as a user runs it: a real subprocess on this host, its facts checked against the
kernel's own CPU flags, the training code's precision rule, the installed packages and pytest's
header."""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cxr.doctor import CPU_FLAGS, EXTRAS, cpuinfo_flags
from cxr.training.precision import resolve_precision

FIELDS = {"cxr", "python", "packages", "cuda", "cpu", "threads", "precision", "data", "cache",
          "extras", "servers"}  # fmt: skip


def _doctor(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cxr", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[dict, float, Path]:
    """`cxr doctor --format json` with a cache of known size and a data root of known content."""
    cache = tmp_path_factory.mktemp("cache")
    (cache / "sub").mkdir()
    (cache / "sub" / "rows.u8").write_bytes(b"\0" * 12345)
    data = tmp_path_factory.mktemp("data")
    (data / "chest_xray").mkdir()
    env = {**os.environ, "CXR_CACHE": str(cache), "CXR_DATA": str(data)}
    start = time.perf_counter()
    result = _doctor("--format", "json", env=env)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout), seconds, cache


def test_json_has_every_field_and_runs_in_reasonable_time(report):
    facts, seconds, cache = report
    assert set(facts) == FIELDS
    assert seconds < 120  # torch and Lightning imports, on a 2-core host others share
    assert facts["python"]["executable"] == sys.executable
    assert facts["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    for name in ("torch", "torchvision", "lightning", "onnxruntime"):
        assert facts["packages"][name] == importlib.metadata.version(name), name
    assert "CPUExecutionProvider" in facts["packages"]["onnxruntime_providers"]
    assert facts["cache"] == {"path": str(cache.resolve()), "bytes": 12345}
    assert facts["data"]["datasets"] == ["chest_xray"] and facts["data"]["exists"]
    assert set(facts["extras"]) == set(EXTRAS) == {"dicom", "xrv", "pacs"}
    for program in ("Orthanc", "storescu", "echoscu", "chromium"):
        assert facts["servers"][program] == shutil.which(program), program


def test_cpu_flags_agree_with_proc_cpuinfo(report):
    facts = report[0]
    text = Path("/proc/cpuinfo").read_text()
    words = set(next(line for line in text.splitlines() if line.startswith("flags")).split())
    assert cpuinfo_flags() == words - {"flags", ":"}
    assert facts["cpu"]["flags"] == {flag: flag in words for flag in CPU_FLAGS}
    assert facts["cpu"]["torch_capability"] == torch.backends.cpu.get_cpu_capability()


def test_precision_is_the_training_rule_and_threads_are_this_process(report):
    facts = report[0]
    chosen, why = resolve_precision("auto", "auto")
    assert facts["precision"] == {"auto": chosen, "reason": why}
    assert facts["cuda"]["available"] == torch.cuda.is_available()
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert len(facts["cuda"]["devices"]) == gpus
    assert facts["threads"]["cpu_count"] == os.cpu_count()
    assert facts["threads"]["affinity"] == len(os.sched_getaffinity(0))
    assert facts["threads"]["torch"] == torch.get_num_threads()


def test_the_table_says_the_same_in_aligned_lines(report):
    facts = report[0]
    result = _doctor()
    assert result.returncode == 0, result.stdout + result.stderr
    printed = result.stdout.splitlines()
    rows = dict(line.split(None, 1) for line in printed)
    assert list(rows) == ["cxr", "python", "os", "packages", "gpu", "cpu", "threads",
                          "precision", "data", "cache", "extras", "servers"]  # fmt: skip
    starts = {line.index(value) for line, value in zip(printed, rows.values(), strict=True)}
    assert len(starts) == 1  # one column
    assert rows["precision"] == f"{facts['precision']['auto']} — {facts['precision']['reason']}"
    present = [flag for flag, on in facts["cpu"]["flags"].items() if on]
    assert f": {' '.join(present)}" in rows["cpu"]


def test_pytest_header_is_the_doctor(pytestconfig):
    header = pytestconfig.hook.pytest_report_header(
        config=pytestconfig, start_path=pytestconfig.rootpath
    )
    ours = next(lines for lines in header if lines and lines[0] == "cxr doctor:")
    assert [line.split()[0] for line in ours[1:]][:2] == ["cxr", "python"]
    assert any(line.strip().startswith("precision") for line in ours)
