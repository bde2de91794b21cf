"""Executable documentation (issue 26): every command that README.md, docs/*.md, the `make demo`
recipe and every `Example:` of every --help show a user runs here as written, each its own test
id, and a documented command that crashes fails the suite.

How, and what is changed:
- Commands run through `bash -c` as written, in a temporary checkout laid out like the user's:
  `.venv` is this interpreter's venv (so `.venv/bin/cxr` works, and PATH starts with it for a bare
  `cxr` or `python`), `configs` is the repository's, and `../shared/data` is a tiny copy of the
  shared data with real file names (TINY_DATA). CXR_DATA points at it; CXR_CACHE and TMPDIR are
  in the temporary folder; CXR_API_TOKEN is unset unless a block exports it.
- The only other change: the arguments in OVERRIDES, appended to the commands they name (for
  `key=value` and options the last value wins). Precision is never forced.
- Two readers, each a checkout: `docs` runs the `make demo` recipe first (`runs/demo`, which
  later commands use), then README.md, then docs/*.md, in order, in one folder; `help` runs the
  --help examples and shares `runs/` with the first (an example assumes the reader has trained;
  the examples' own outputs, report.html or worklist.csv, would collide with the README's, and
  cxr never overwrites). Run the module whole: a later command uses what earlier ones made.
- What the documentation assumes the reader already has (PREPARED) is made just before the first
  command that names it. Commands that cannot run here are in SKIPPED with the reason; those that
  must fail here, fast and clearly, are in REFUSED; servers are started, probed and stopped.
A command works if it exits 0 (or as REFUSED says), prints no traceback and writes its --out.
One with the same words as a command already run (its --out aside, `_work`) is not run again: its
id passes or fails with the first.
"""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.doc_commands import (
    DocCommand,
    from_help,
    from_make_recipe,
    from_markdown,
    unlabelled_blocks_running_cxr,
)

REPO = Path(__file__).parents[1]
MARKDOWN = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# Appended to the commands of each verb; nothing else is changed.
TINY_TRAINING = ["data.workers=0", "data.batch_size=16", "optim.epochs=1", "model.size=48"]
FEWER_RESAMPLES = ["--bootstrap", "50"]  # 95 % CIs from 50 bootstrap draws, not 1000
OVERRIDES: dict[str, list[str]] = {
    "cxr train": TINY_TRAINING,
    "cxr cv": TINY_TRAINING,  # the documented 5 folds stay: `runs/quick-cv5` is read later
    "cxr study": [*TINY_TRAINING, *FEWER_RESAMPLES],
    "cxr levers": [*TINY_TRAINING, *FEWER_RESAMPLES],
    "cxr evaluate": FEWER_RESAMPLES,
    "cxr compare": FEWER_RESAMPLES,
    "cxr report": FEWER_RESAMPLES,
    "cxr benchmark train": ["--steps", "1", "--batch", "2"],  # never --size: the default is used
    "cxr benchmark profile": ["--steps", "1", "--batch", "2"],
    "cxr benchmark predict": ["--batches", "1"],
    "cxr serve": ["--port", "{port}"],  # a free port: the host is shared
    "cxr listen": ["--port", "{port}"],
}

SKIPPED = {
    "make demo": "its recipe's two commands run one by one, first (ids Makefile:demo)",
    "make test": "the test suite itself",
    "torchrun": "two nodes with four GPUs each",
    "srun": "a SLURM cluster",
}

# Commands that must fail here, at once, with exit code 2, no traceback, and these words. The
# network is cut for every command through a proxy on a closed port (NO_NETWORK), so a CI host
# with network access does not fetch the 1.2 GB archive either.
NO_NETWORK = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
REFUSED = {
    "cxr data download kermany --out data/kermany": (
        "could not download ChestXRay2017.zip",
        "--from-archive",
        "--out DIR",  # the hint must spell the command's real option
    ),
}
REFUSED_WITHIN_S = 20


@dataclass
class Reader:
    """One user's checkout and shell environment."""

    folder: Path
    env: dict[str, str] = field(repr=False)  # kept out of failure reports: it may hold secrets
    tokens: list[str] = field(default_factory=list)  # printed by `cxr reviews add-reviewer`


def _made_by(path: str, command: str) -> Callable[[Reader], None]:
    def make(reader: Reader) -> None:
        if not (reader.folder / path).exists():
            made = DocCommand(f"prepared {path}", command)
            _check(reader, made, _run(reader, command, _overrides(made)))
            assert (reader.folder / path).exists(), f"{command} did not make {path}"

    return make


def _archive(reader: Reader) -> None:
    """The reader's own download of the Kermany archive: Mendeley's layout, a few images."""
    path = reader.folder / "ChestXRay2017.zip"
    if path.exists():
        return
    kermany = reader.folder.parent / "shared" / "data" / "chest_xray" / "train"
    with zipfile.ZipFile(path, "w") as zf:
        for split in ("train", "test"):
            for label in ("NORMAL", "PNEUMONIA"):
                for image in sorted((kermany / label).iterdir())[:2]:
                    zf.write(image, f"chest_xray/{split}/{label}/{image.name}")


def _reviewed(reader: Reader) -> None:
    """The reviewers' work `cxr reviews export` assumes: two cases labelled, NORMAL and PNEUMONIA
    (through the product's store, as the page would)."""
    from cxr.store import worklist
    from cxr.store.database import open_database
    from cxr.store.worklist import Queue

    with open_database(f"sqlite:///{reader.folder / 'worklist.db'}").begin() as session:
        if worklist.counts(session)[Queue.REVIEWED]:
            return
        pending = worklist.queue(session, Queue.PENDING)
        assert len(pending) >= 2, "the listener scored fewer than two cases"
        for row, label in zip(pending, ("NORMAL", "PNEUMONIA"), strict=False):
            worklist.review(session, row.id, label, "", "docs test")


# What the documentation assumes the reader already has, by a string its command contains: made
# before that command if missing (commands get OVERRIDES like any other).
SITE2 = (
    "cxr evaluate runs/quick/model.pt ../shared/data/COVID-19_Radiography_Dataset "
    "--label-map 'Normal=NORMAL,COVID=PNEUMONIA,Viral Pneumonia=PNEUMONIA' "
    "--out outputs/evaluate/site2"
)
PREPARED: dict[str, Callable[[Reader], None]] = {
    # the README's "Our own CNN from scratch instead: cxr study --config configs/quick.yaml"
    "runs/quick/evaluation": _made_by(
        "runs/quick/evaluation", "cxr study --config configs/quick.yaml"
    ),
    "runs/quick-seed2": _made_by(
        "runs/quick-seed2", "cxr train --config configs/quick.yaml seed=2 name=quick-seed2"
    ),
    "outputs/evaluate/site2/predictions.csv": _made_by("outputs/evaluate/site2", SITE2),
    "ChestXRay2017.zip": _archive,
    "reviews export": _reviewed,
}


def _documented() -> list[tuple[str, DocCommand]]:
    docs = from_make_recipe(REPO / "Makefile", "demo")
    for path in MARKDOWN:
        docs += from_markdown(path, REPO)
    return [("docs", c) for c in docs] + [("help", c) for c in from_help()]


PLAN = _documented()


def _overrides(command: DocCommand, port: int | None = None) -> list[str]:
    extra = OVERRIDES.get(command.verb, [])
    return [a.format(port=port) for a in extra]


def _run(reader: Reader, text: str, extra: Sequence[str] = (), setup: str = "", timeout=900):
    script = "\n".join(filter(None, [setup, " ".join([text, *map(shlex.quote, extra)])]))
    return subprocess.run(
        ["bash", "-c", script],
        cwd=reader.folder,
        env=reader.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _tail(result, n: int = 4000) -> str:
    return (result.stdout + "\n" + result.stderr)[-n:]


def _check(reader: Reader, command: DocCommand, result, code: int = 0) -> None:
    said = f"{command.where}: {' '.join(result.args[2:])}\n{_tail(result)}"
    assert "Traceback (most recent call last)" not in result.stdout + result.stderr, said
    assert result.returncode == code, said
    words = command.argv
    for option in ("--out", "--cam"):
        if option in words and code == 0:
            written = reader.folder / words[words.index(option) + 1]
            assert written.exists(), f"{command.where}: {option} {written} was not written"


@pytest.fixture(scope="session")
def readers(tmp_path_factory) -> dict[str, Reader]:
    root = tmp_path_factory.mktemp("docs")
    _tiny_data(Path(os.environ.get("CXR_DATA") or REPO.parent / "shared" / "data"), root)
    venv = Path(sys.prefix)
    assert (venv / "bin" / "cxr").is_file(), f"{venv}/bin/cxr missing: run the suite in the venv"
    env = {k: v for k, v in os.environ.items() if k != "CXR_API_TOKEN"}
    found = {}
    for name in ("docs", "help"):
        folder = root / name
        folder.mkdir()
        (folder / ".venv").symlink_to(venv)
        (folder / "configs").symlink_to(REPO / "configs")
        found[name] = Reader(
            folder,
            env
            | NO_NETWORK
            | {
                "CXR_DATA": str(root / "shared" / "data"),
                "CXR_CACHE": str(root / "cache"),
                "TMPDIR": str(root / "tmp"),
                "PATH": f"{folder / '.venv' / 'bin'}:{env['PATH']}",
            },
        )
    (root / "tmp").mkdir()
    (root / "docs" / "runs").mkdir()
    (root / "help" / "runs").symlink_to(root / "docs" / "runs")
    return found


@pytest.fixture(scope="session")
def ran() -> dict[tuple, tuple[str, bool]]:
    """The work each command did (`_work`), where it was documented first, and whether it passed."""
    return {}


def _work(command: DocCommand) -> tuple[str, ...]:
    """What a command does, whatever it names its outputs: `cxr benchmark predict
    efficientnet_lite0 --out bench.json` in the README and `--out predict-bench.json` in --help
    run the same code on the same input, so the second is not run again."""
    words = command.words
    masked = ["OUT" if i and words[i - 1] in {"--out", "--cam"} else w for i, w in enumerate(words)]
    return (command.setup, *masked)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(condition: Callable[[], object], seconds: float, what: str, log: Path):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.5)
    pytest.fail(f"{what} within {seconds} s:\n{log.read_text()[-4000:]}")


def _serving(reader: Reader, command: DocCommand, port: int, probe) -> None:
    """Start the documented server, run `probe` against it, stop it with SIGTERM (as a service
    manager would)."""
    log = reader.folder.parent / f"{command.where.replace('/', '_')}.log"
    started = " ".join(["exec", command.text, *_overrides(command, port)])
    script = "\n".join(filter(None, [command.setup, started]))
    with log.open("w") as out:
        server = subprocess.Popen(["bash", "-c", script], cwd=reader.folder, env=reader.env,
                                  stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        probe(server, log)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    text = log.read_text()
    assert "Traceback (most recent call last)" not in text, f"{command.where}:\n{text[-4000:]}"
    stopped = server.returncode in {0, -signal.SIGTERM}  # uvicorn re-raises it after shutdown
    assert stopped, f"{command.where} exit {server.returncode}:\n{text[-4000:]}"


def _serve(reader: Reader, command: DocCommand) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"

    def up(server, log):
        def healthy():
            assert server.poll() is None, f"{command.where} exited:\n{log.read_text()[-4000:]}"
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        _wait(healthy, 180, f"{command.where}: /healthz", log)
        image = next((reader.folder.parent / "shared" / "data" / "chest_xray").rglob("*.jpeg"))
        with image.open("rb") as fh:
            answer = httpx.post(f"{url}/api/predict", files={"file": fh}, timeout=120)
        token_set = "CXR_API_TOKEN" in command.setup
        assert answer.status_code == (401 if token_set else 200), answer.text
        if "--db" in command.argv:
            assert httpx.get(f"{url}/worklist", timeout=30).status_code == 200
            assert reader.tokens, "no reviewer token: `cxr reviews add-reviewer` runs before"
            queue = httpx.get(f"{url}/api/worklist", timeout=30,
                              headers={"Authorization": f"Bearer {reader.tokens[-1]}"})  # fmt: skip
            assert queue.status_code == 200, queue.text

    _serving(reader, command, port, up)


def _listen(reader: Reader, command: DocCommand) -> None:
    """The listener comes up (C-ECHO), receives the tiny DICOMs (C-STORE) and scores them."""
    from cxr.settings import WORKLIST_DB
    from cxr.store import worklist
    from cxr.store.database import open_database

    port = _free_port()
    words = command.argv
    url = words[words.index("--db") + 1] if "--db" in words else WORKLIST_DB
    db = url.replace("sqlite:///", f"sqlite:///{reader.folder}/")
    dicoms = sorted((reader.folder.parent / "shared" / "data" / "dicom_cxr").rglob("*.dcm"))
    for tool in ("echoscu", "storescu"):
        assert shutil.which(tool), f"{tool} is needed (Debian: apt-get install dcmtk)"

    def dicom(tool: str, *files: Path) -> bool:
        """dcmtk as the modality: C-ECHO, or C-STORE of `files` (JPEG Baseline proposed too)."""
        options = ["-xy"] if files else []
        called = [tool, *options, "-aec", "CXR", "127.0.0.1", str(port), *map(str, files)]
        return subprocess.run(called, capture_output=True, timeout=120).returncode == 0

    def up(server, log):
        def echoed():
            assert server.poll() is None, f"{command.where} exited:\n{log.read_text()[-4000:]}"
            return dicom("echoscu")

        _wait(echoed, 180, f"{command.where}: C-ECHO", log)
        assert dicom("storescu", *dicoms)
        sessions = open_database(db)

        def all_in():
            with sessions() as session:
                counts = worklist.counts(session)
            return counts["pending"] + counts["reviewed"] + counts["not_scored"] >= len(dicoms)

        _wait(all_in, 300, f"{command.where}: {len(dicoms)} instances in the worklist", log)

    _serving(reader, command, port, up)


SERVERS = {"cxr serve": _serve, "cxr listen": _listen}


def test_every_documented_shell_block_is_marked_as_shell():
    assert not {p.name: b for p in MARKDOWN if (b := unlabelled_blocks_running_cxr(p))}


def test_every_exception_names_a_documented_command():
    verbs = {c.verb for _, c in PLAN}
    texts = " \n".join(c.text for _, c in PLAN)
    assert set(SKIPPED) <= verbs and set(OVERRIDES) <= verbs
    assert all(refused.split(" ", 1)[1] in texts for refused in REFUSED)
    assert all(key in texts for key in PREPARED)


@pytest.mark.parametrize(("reader", "command"), PLAN, ids=[c.ident for _, c in PLAN])
def test_documented_command_runs(
    readers: dict[str, Reader], ran: dict[tuple, tuple[str, bool]], reader: str, command: DocCommand
):
    user = readers[reader]
    if command.verb in SKIPPED:
        pytest.skip(f"{command.text}: {SKIPPED[command.verb]}")
    work = _work(command)
    if work in ran:  # the same work already ran: its result stands for this one too
        where, passed = ran[work]
        assert passed, f"{command.where}: the same command as {where}, which failed"
        return
    ran[work] = (command.where, False)
    for needle, prepare in PREPARED.items():
        if needle in command.text:
            prepare(user)
    if command.verb in SERVERS:
        SERVERS[command.verb](user, command)
        ran[work] = (command.where, True)
        return
    spelled = " ".join(command.words)
    start = time.monotonic()
    result = _run(user, command.text, _overrides(command), command.setup)
    if spelled in REFUSED:
        _check(user, command, result, code=2)
        assert time.monotonic() - start < REFUSED_WITHIN_S, f"{command.where}: not at once"
        for words in REFUSED[spelled]:
            assert words in result.stdout + result.stderr, f"{command.where}: {words!r}"
    else:
        _check(user, command, result)
    if command.verb == "cxr reviews add-reviewer":
        user.tokens.append(result.stdout.strip().splitlines()[-1])
    ran[work] = (command.where, True)


# The tiny data: real files with their real names (patients group as in the full set), few of them.
TINY_DATA = {
    "kermany": (32, 16, 16),  # NORMAL, PNEUMONIA bacteria, PNEUMONIA virus (by patient)
    "originals": 3,  # per class
    "covid": 8,  # per class
    "dicoms": "the smallest kermany_wrapped file per label and encoding; NIH test2 and test5",
}


def _tiny_data(source: Path, root: Path) -> None:
    data = root / "shared" / "data"
    normal, bacteria, virus = TINY_DATA["kermany"]
    kermany = source / "chest_xray" / "train"
    normals = sorted((kermany / "NORMAL").iterdir())
    _copy(normals[:: len(normals) // normal][:normal], data / "chest_xray" / "train" / "NORMAL")
    pneumonia = sorted((kermany / "PNEUMONIA").iterdir())
    for kind, n in (("bacteria", bacteria), ("virus", virus)):
        patients: dict[str, list[Path]] = {}
        for path in pneumonia:
            if f"_{kind}_" in path.name:
                patients.setdefault(path.name.split("_")[0], []).append(path)
        chosen = [p for who in sorted(patients)[:: len(patients) // n] for p in patients[who]]
        _copy(chosen[:n], data / "chest_xray" / "train" / "PNEUMONIA")
    for label in ("NORMAL", "PNEUMONIA"):
        originals = source / "chest_xray_originals" / "train" / label
        _copy(sorted(originals.iterdir())[: TINY_DATA["originals"]],
              data / "chest_xray_originals" / "train" / label)  # fmt: skip
    for folder in sorted((source / "COVID-19_Radiography_Dataset").iterdir()):
        images = sorted((folder / "images").iterdir())[: TINY_DATA["covid"]]
        _copy(images, data / "COVID-19_Radiography_Dataset" / folder.name / "images")
    wrapped = source / "dicom_cxr" / "kermany_wrapped"
    with (wrapped / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    smallest: dict[tuple[str, str], dict] = {}
    for row in sorted(rows, key=lambda r: (wrapped / r["file"]).stat().st_size, reverse=True):
        smallest[row["label"], row["encoding"]] = row
    _subset(wrapped, "labels.csv", "file", list(smallest.values()), data / "dicom_cxr")
    nih = source / "dicom_cxr" / "nih_udacity"
    with (nih / "labels_and_header.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["file"] in {"test2.dcm", "test5.dcm"}]
    _subset(nih, "labels_and_header.csv", "file", rows, data / "dicom_cxr")


def _copy(paths: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        shutil.copy(path, folder / path.name)


def _subset(source: Path, table: str, column: str, rows: list[dict], into: Path) -> None:
    folder = into / source.name
    _copy([source / r[column] for r in rows], folder)
    with (folder / table).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
