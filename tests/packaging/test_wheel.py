"""The installed package is what users run: the sdist and the wheel are built from the checkout,
every file under src/cxr must be in both, and the wheel is installed (not editable) into a fresh
venv whose `cxr` then runs every command on tiny data from a folder outside the source tree.

The venv borrows this environment's dependencies through a `.pth` path line (torch is not
installed twice); a path line does not run the editable install's own `.pth`, so the checkout's
src/ cannot leak in, and the first test proves it did not."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from tests.radiology.conftest import free_port, wait_for_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
# Tiny data: 60 normal studies and 60 pneumonia patients, enough for 20 patient folds.
PER_CLASS = 60
BENCH_BACKENDS = "torch-eager,onnx-int8"
TRAIN = ["data.limit=48", "data.workers=0", "data.batch_size=16", "optim.epochs=1", "model.size=48"]


@dataclass(frozen=True)
class Installed:
    cxr: Path  # the venv's console script
    python: Path
    work: Path  # the working directory: outside the source tree
    env: dict[str, str]
    tiny: Path  # a small Kermany-layout dataset

    def call(self, *args, timeout: float = 300) -> subprocess.CompletedProcess:
        """`cxr ARGS` as a user types it, from WORK."""
        return subprocess.run(
            [self.cxr, *map(str, args)],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run(self, *args, timeout: float = 300) -> subprocess.CompletedProcess:
        return succeeded(self.call(*args, timeout=timeout))

    def start(self, name: str, *args) -> subprocess.Popen:
        """`cxr ARGS` left running (a server), its output in WORK/NAME.log."""
        with (self.work / f"{name}.log").open("w") as log:
            return subprocess.Popen(
                [self.cxr, *map(str, args)],
                cwd=self.work,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )


def succeeded(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """The command's result; a non-zero exit fails with what it printed."""
    said = f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    command = " ".join(map(str, result.args[1:]))
    assert result.returncode == 0, f"cxr {command}: exit {result.returncode}\n{said}"
    return result


def _source_files() -> list[str]:
    """Every file under src/cxr that git tracks or would track (not ignored), as paths from the
    repository root: what a clone holds, uncommitted work included."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "src/cxr"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(f for f in listed if (ROOT / f).is_file() and "__pycache__" not in f)


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel built from a copy of the checkout, so no build/ or egg-info of
    this run lands in the working tree and nothing ignored (a stale build/) is packaged."""
    tmp = tmp_path_factory.mktemp("dist")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        if (ROOT / name).is_file():
            (tmp / "checkout" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tmp / "checkout" / name)
    # sdist first, then the wheel from the unpacked sdist: what `pip install cxr` would build
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", tmp / "out",
         tmp / "checkout"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (tmp / "out").glob("cxr-*.whl")
    (sdist,) = (tmp / "out").glob("cxr-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_every_file_under_src_is_in_the_wheel_and_the_sdist(dists):
    expected = _source_files()
    assert "src/cxr/evaluation/templates/explorer.js" in expected  # the listing itself works
    wheel = set(zipfile.ZipFile(dists["wheel"]).namelist())
    missing = [f for f in expected if f.removeprefix("src/") not in wheel]
    assert not missing, f"missing from the wheel (pyproject.toml package-data): {missing}"
    with tarfile.open(dists["sdist"]) as archive:
        sdist = {name.partition("/")[2] for name in archive.getnames()}
    missing = [f for f in expected if f not in sdist]
    assert not missing, f"missing from the sdist: {missing}"


@pytest.fixture(scope="module")
def installed(dists, tmp_path_factory, data) -> Installed:
    """The wheel in a new venv, with this environment's site-packages as a path line."""
    tmp = tmp_path_factory.mktemp("installed")
    folder = tmp / "venv"
    venv.create(folder, with_pip=False, symlinks=True)
    python = folder / "bin" / "python"
    ours = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    theirs = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(theirs, "cxr-dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    # This environment's pip, run by the new interpreter, installs into the new venv; it must
    # not look at (or try to uninstall) the editable cxr it sees through the path line.
    pip = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed",
         "--disable-pip-version-check", dists["wheel"]],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stdout + pip.stderr
    work = tmp / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "CXR_API_TOKEN"}}
    env |= {"CXR_DATA": str(data.resolve()), "CXR_CACHE": str(tmp / "cache")}
    return Installed(folder / "bin" / "cxr", python, work, env, _tiny_dataset(data, tmp / "tiny"))


def _tiny_dataset(data: Path, out: Path) -> Path:
    """The Kermany train layout with one image per normal study and per pneumonia patient."""
    train = data / "chest_xray" / "train"
    normal = sorted((train / "NORMAL").glob("IM-*-0001.jpeg"))[:PER_CLASS]
    patients: dict[str, Path] = {}
    for path in sorted((train / "PNEUMONIA").glob("person*.jpeg")):
        patients.setdefault(path.name.split("_")[0], path)
    pneumonia = list(patients.values())[:PER_CLASS]
    for label, paths in (("NORMAL", normal), ("PNEUMONIA", pneumonia)):
        (out / "train" / label).mkdir(parents=True)
        for path in paths:
            shutil.copy(path, out / "train" / label / path.name)
    return out


def test_the_wheel_not_the_checkout_is_imported(installed):
    probe = (
        "import sys, cxr; from importlib.metadata import distribution; "
        "print(cxr.__file__); print(distribution('cxr').locate_file('')); print(sys.path)"
    )
    shown = subprocess.run(
        [installed.python, "-c", probe], cwd=installed.work, env=installed.env,
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    venv_root = installed.python.parent.parent
    module, metadata, path = Path(shown[0]), Path(shown[1]), shown[2]
    assert module.is_relative_to(venv_root), f"cxr imported from {module}, not the new venv"
    assert metadata.is_relative_to(venv_root), f"cxr's metadata found at {metadata}"
    assert str(ROOT / "src") not in path, f"the editable install's path leaked in: {path}"
    assert Path(installed.cxr.read_text().splitlines()[0].removeprefix("#!")) == installed.python


@pytest.fixture(scope="module")
def alongside(installed):
    """The commands that need no trained model, one after another in a second lane beside the
    tests' own (which trains the tiny model, then uses it): two cores, two lanes. The benchmarks
    take a registered name as documented; their figures are not judged, only that they come."""
    commands = {
        "study": ("study", "--bootstrap", 20, "name=study", f"data.root={installed.tiny}", *TRAIN),
        "data inspect": ("data", "inspect", installed.tiny),
        # at the model's own input side (no --size, as documented); batch and steps cut short
        "benchmark train": ("benchmark", "train", "cxr_cnn", "--batch", 2, "--steps", 1,
                            "--out", "bt.json"),
        # the default images; PyTorch and the INT8 export (with its calibration), one batch size,
        # as every backend is timed for seconds
        "benchmark predict": ("benchmark", "predict", "cxr_cnn", "--backend", BENCH_BACKENDS,
                              "--batches", 1, "--out", "bp.json"),
    }  # fmt: skip
    # its own pixel cache: two processes filling one cache at once is not what is tested here
    second = replace(installed, env={**installed.env, "CXR_CACHE": str(installed.work / "cache2")})
    lane = ThreadPoolExecutor(max_workers=1)
    try:
        yield {name: lane.submit(second.call, *args) for name, args in commands.items()}
    finally:
        lane.shutdown(cancel_futures=True)


@pytest.fixture(scope="module")
def trained(installed, alongside) -> subprocess.CompletedProcess:
    """One tiny model for every command that needs one: runs/tiny/model.pt."""
    return installed.run("train", "name=tiny", f"data.root={installed.tiny}", *TRAIN)


def test_train(installed, trained):
    assert "run folder: runs/tiny" in trained.stdout
    metrics = json.loads((installed.work / "runs/tiny/metrics.json").read_text())
    assert 0 <= metrics["tuning_auroc"] <= 1
    assert (installed.work / "runs/tiny/model.pt").is_file()


@pytest.fixture(scope="module")
def evaluated(installed, trained) -> Path:
    out = installed.work / "evaluations/tiny"
    shown = installed.run(
        "evaluate", "runs/tiny/model.pt", installed.tiny, "--split", "internal-test",
        "--bootstrap", 20, "--workers", 0, "--out", out,
    ).stdout  # fmt: skip
    assert "evaluation folder" in shown
    return out


def test_evaluate(evaluated):
    metrics = json.loads((evaluated / "metrics.json").read_text())
    rows = (evaluated / "predictions.csv").read_text().splitlines()[1:]
    assert metrics["split"] == "internal-test" and metrics["n_images"] == len(rows) > 0


def test_predict_with_heat_maps(installed, trained, data):
    images = data / "dicom_cxr" / "nih_udacity"
    shown = installed.run(
        "predict", "runs/tiny/model.pt", images, "--cam", "cams", "--out", "worklist.csv",
        "--workers", 0,
    ).stdout  # fmt: skip
    assert "Grad-CAM heat maps: cams" in shown
    dicoms = sorted(images.glob("*.dcm"))
    with (installed.work / "worklist.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(dicoms)
    ranked = [r for r in rows if r["group"] == "ranked"]
    cams = sorted(p.name for p in (installed.work / "cams").glob("*.png"))
    assert ranked and len(cams) == len(ranked)  # the images not scored get no heat map
    assert not [name for name in cams if name.startswith("not-scored")]


@pytest.mark.parametrize("to", ["onnx", "onnx-int8"])
def test_export(installed, trained, to):
    import numpy as np
    import onnxruntime

    out = installed.work / f"tiny-{to}.onnx"
    shown = installed.run("export", "runs/tiny/model.pt", "--to", to, "--out", out).stdout
    assert "wrote" in shown and ("identical decisions" in shown) == (to == "onnx-int8")
    session = onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"])
    (probs,) = session.run(None, {session.get_inputs()[0].name: np.zeros((3, 1, 48, 48), "f4")})
    assert probs.shape == (3, 2) and np.allclose(probs.sum(axis=1), 1, atol=0.01)


def test_report(installed, alongside, evaluated):
    succeeded(alongside["study"].result())
    out = installed.work / "both.html"
    installed.run("report", "runs/study/evaluation", evaluated, "--bootstrap", 20, "--out", out)
    html = out.read_text()
    assert "function operatingPointExplorer" in html and html.count("explorer-mount") >= 2


def test_compare(installed, alongside, evaluated):
    succeeded(alongside["study"].result())
    shown = installed.run(
        "compare", "runs/study/evaluation", evaluated, "--bootstrap", 20, "--out", "compared"
    ).stdout
    assert "DeLong" in shown
    assert any((installed.work / "compared").iterdir())


@pytest.fixture(scope="module")
def department(installed, trained, data):
    """`cxr listen` into a SQLite worklist, one chest DICOM stored into it by storescu, and a
    reviewer: what `cxr serve --db` and `cxr reviews export` then work on."""
    port, db = free_port(), f"sqlite:///{installed.work / 'worklist.db'}"
    listener = installed.start(
        "listen", "listen", "runs/tiny/model.pt", "--db", db, "--spool", "spool", "--port", port
    )
    log = installed.work / "listen.log"
    try:
        wait_for_port(port, "cxr listen", log)
        wait_until(lambda: "worklist database ready" in log.read_text(), 120, "the migration")
        dicom = sorted((data / "dicom_cxr" / "kermany_wrapped").glob("normal_*.dcm"))[0]
        sent = subprocess.run(["storescu", "-xy", "-aec", "CXR", "127.0.0.1", str(port), dicom],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert sent.returncode == 0, sent.stdout + sent.stderr
        wait_until(lambda: "recorded" in log.read_text(), 120, "the stored DICOM scored")
        token = installed.run("reviews", "add-reviewer", "Dr Ann", "--db", db).stdout.strip()
        yield {"port": port, "db": db, "log": log, "token": token}
    finally:
        listener.terminate()
        listener.wait(timeout=60)


def test_listen_answers_echoscu(department):
    echo = subprocess.run(["echoscu", "-v", "-aec", "CXR", "127.0.0.1", str(department["port"])],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert echo.returncode == 0 and "Received Echo Response (Success)" in echo.stderr + echo.stdout
    assert "recorded" in department["log"].read_text()


@pytest.fixture(scope="module")
def server(installed, department):
    port = free_port()
    process = installed.start(
        "serve", "serve", "runs/tiny/model.pt", "--port", port, "--db", department["db"]
    )
    try:
        wait_for_port(port, "cxr serve", installed.work / "serve.log")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_serve_health_pages_and_one_prediction(server, data):
    assert httpx.get(f"{server}/healthz", timeout=30).json()["model"] == "model.pt"
    for page, text in (("/", "explorer.js"), ("/explorer.js", "operatingPointExplorer"),
                       ("/worklist", "reviewer")):  # fmt: skip
        answer = httpx.get(f"{server}{page}", timeout=30)
        assert answer.status_code == 200 and text in answer.text, page
    image = sorted((data / "chest_xray" / "train" / "PNEUMONIA").glob("*.jpeg"))[0]
    answer = httpx.post(f"{server}/api/predict", files={"file": (image.name, image.read_bytes())},
                        timeout=120)  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert set(answer.json()["probabilities"]) == {"NORMAL", "PNEUMONIA"}


def test_reviews_export(installed, department, server):
    token = {"Authorization": f"Bearer {department['token']}"}
    with httpx.Client(base_url=server, timeout=60, headers=token) as reviewer:
        (row,) = reviewer.get("/api/worklist").json()["rows"]
        reviewed = reviewer.post(f"/api/worklist/{row['id']}/review", json={"label": "NORMAL"})
    assert reviewed.status_code == 200, reviewed.text
    shown = installed.run("reviews", "export", "--db", department["db"], "--out", "reviewed")
    assert "1 reviewed image(s)" in shown.stdout
    (line,) = (installed.work / "reviewed/labels.csv").read_text().splitlines()[1:]
    file, label = line.split(",")[:2]
    assert label == "NORMAL" and (installed.work / "reviewed" / file).is_file()


def test_study(installed, alongside):
    shown = succeeded(alongside["study"].result()).stdout
    assert "run folder: runs/study" in shown and "report:" in shown
    report = (installed.work / "runs/study/report.html").read_text()
    assert "function operatingPointExplorer" in report  # package data, inlined


def test_data_inspect(installed, alongside):
    shown = succeeded(alongside["data inspect"].result()).stdout
    assert f"images {2 * PER_CLASS}" in shown and "unreadable files: 0" in shown
    summary = json.loads((installed.work / "outputs/inspect/tiny/summary.json").read_text())
    assert summary["counts"] == {"train": {"NORMAL": PER_CLASS, "PNEUMONIA": PER_CLASS}}


def test_benchmark_train(installed, alongside):
    from cxr.models import create_model

    succeeded(alongside["benchmark train"].result())
    rows = json.loads((installed.work / "bt.json").read_text())["results"]
    own = create_model("cxr_cnn").card.preprocessing.size
    assert rows and {r["size"] for r in rows} == {own} and all(r["images_per_s"] > 0 for r in rows)


def test_benchmark_predict(installed, alongside, data):
    succeeded(alongside["benchmark predict"].result())
    figures = json.loads((installed.work / "bp.json").read_text())
    assert figures["decode_images"] == str(data.resolve() / "chest_xray_originals")
    assert figures["decode_images_per_s"] > 0
    assert [r["backend"] for r in figures["results"]] == BENCH_BACKENDS.split(",")
    assert all(r["images_per_s"] > 0 for r in figures["results"])
