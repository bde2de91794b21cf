"""Only regular files are read: a FIFO, a socket and links to /dev/zero and /dev/null with image
names are skipped with their reason in well under a second, by the reader, dataset discovery and
`cxr predict`; a dangling link as an output path is refused before any work. Every check runs in
a subprocess with a timeout and a memory cap, so a regression fails instead of hanging the suite
or reading /dev/zero until memory runs out."""

from __future__ import annotations

import csv
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import save_tiny_model

SPECIAL = {  # name: the reason it is skipped
    "fifo.png": "not an image: not a regular file: FIFO",
    "socket.png": "not an image: not a regular file: socket",
    "zero.dcm": "not an image: not a regular file: character device",
    "null.png": "not an image: not a regular file: character device",
}
CAP = 2 << 30  # heap of each subprocess: /dev/zero read whole would hit it in seconds


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (CAP, CAP))


def _run(args: list, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
        preexec_fn=_capped,
    )  # fmt: skip


@pytest.fixture()
def folder(tmp_path: Path, data: Path, monkeypatch) -> Path:
    """Class folder NORMAL/ with one real X-ray and the special files, made here."""
    normal = tmp_path / "ds" / "NORMAL"
    normal.mkdir(parents=True)
    source = sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[0]
    shutil.copy(source, normal / "real.jpeg")
    os.mkfifo(normal / "fifo.png")
    os.mkfifo(normal / "fifo-no-suffix")  # discovery would sniff it for DICOM magic
    monkeypatch.chdir(normal)  # a relative name: AF_UNIX paths are short
    server = socket.socket(socket.AF_UNIX)
    server.bind("socket.png")
    (normal / "zero.dcm").symlink_to("/dev/zero")
    (normal / "null.png").symlink_to("/dev/null")
    yield tmp_path / "ds"
    server.close()


READ_EACH = """
import json, sys, time
from pathlib import Path
from cxr.data.reader import read_image
from cxr.errors import ImageReadError
out = {}
for path in sorted(Path(sys.argv[1]).iterdir()):
    start = time.monotonic()
    try:
        read_image(path)
        why = "read"
    except ImageReadError as exc:
        why = f"{exc.problem.value}: {exc.detail}"
    out[path.name] = [why, time.monotonic() - start]
print(json.dumps(out))
"""


def test_the_reader_skips_each_special_file_with_its_reason_in_under_a_second(folder):
    result = _run([sys.executable, "-c", READ_EACH, folder / "NORMAL"], timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout)
    assert outcome.pop("real.jpeg")[0] == "read"
    assert outcome.pop("fifo-no-suffix")[0] == SPECIAL["fifo.png"]
    assert {name: why for name, (why, _) in outcome.items()} == SPECIAL
    assert max(seconds for _, seconds in outcome.values()) < 1, outcome


DISCOVER = """
import json, sys
from cxr.data.cache import PixelCache
from cxr.data.discovery import discover
from cxr.data.inspect import summarise
dataset = discover(sys.argv[1])
summary = summarise(dataset)
cached = PixelCache(64, root=__import__("pathlib").Path(sys.argv[2])).load(
    [r.path for r in dataset.records])
print(json.dumps({
    "records": sorted(r.path.name for r in dataset.records),
    "inspect": {u["path"].rsplit("/", 1)[1]: u["reason"] for u in summary.unreadable},
    "cache": {f.path.name: f.reason for f in cached.failures},
    "cached": [p.name for p in cached.paths],
}))
"""


def test_discovery_inspect_and_the_cache_report_them_not_block(folder, tmp_path):
    result = _run([sys.executable, "-c", DISCOVER, folder, tmp_path / "cache"], timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout)
    assert found["records"] == sorted([*SPECIAL, "real.jpeg"])  # no suffix: not sniffed, left out
    assert found["inspect"] == SPECIAL
    assert found["cache"] == SPECIAL
    assert found["cached"] == ["real.jpeg"]


def test_cxr_predict_skips_them_and_scores_the_real_xray(folder, tmp_path):
    model = save_tiny_model(tmp_path / "model.pt")
    images = folder / "NORMAL"
    result = _run(
        [sys.executable, "-m", "cxr", "predict", model, images, images / "fifo.png",
         "--out", tmp_path / "w.csv"],
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "w.csv").open()))
    assert [r["path"] for r in rows if r["group"] == "ranked"] == [str(images / "real.jpeg")]
    skipped = [(Path(r["path"]).name, r["error"]) for r in rows if r["group"] == "skipped"]
    assert sorted(skipped) == sorted([*SPECIAL.items(), ("fifo.png", SPECIAL["fifo.png"])])


@pytest.mark.parametrize(
    "args",
    [
        ("predict", "{model}", "{images}", "--cam", "{out}"),
        ("predict", "{model}", "{images}", "--out", "{out}.csv"),
        ("reviews", "export", "--db", "sqlite:///{tmp}/w.db", "--out", "{out}"),
    ],
    ids=["predict --cam", "predict --out", "reviews export --out"],
)
def test_a_dangling_link_as_output_is_refused_before_any_work(tmp_path, args):
    model, images = tmp_path / "model.pt", tmp_path / "images"
    model.write_bytes(b"never read: the refusal comes first")
    images.mkdir()
    target, out = tmp_path / "elsewhere" / "made-by-cxr", tmp_path / "out"
    filled = [a.format(model=model, images=images, out=out, tmp=tmp_path) for a in args]
    Path(filled[filled.index("--out" if "--out" in filled else "--cam") + 1]).symlink_to(target)
    result = _run([sys.executable, "-m", "cxr", *filled], timeout=60)
    said = " ".join((result.stdout + result.stderr).replace("│", " ").split())
    assert result.returncode == 2, said
    assert "exists; cxr never overwrites (choose another --out)" in said
    assert "Traceback" not in said
    assert not target.parent.exists() and not (tmp_path / "w.db").exists()
