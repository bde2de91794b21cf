"""A small real model file and a live `cxr serve` on 127.0.0.1 for the service tests."""

import dataclasses
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.conftest import save_tiny_model

from cxr.data.population import intensity_ranges
from cxr.inference.predict import predict_paths
from cxr.inference.predictor import load_predictor
from cxr.models import load_model, save_model


@pytest.fixture(scope="package")
def model_file(tmp_path_factory, data):
    """The tiny model with what training adds to its card: the training population's ranges and
    the model's real probabilities on 60 real images as its tuning-split predictions."""
    path = save_tiny_model(tmp_path_factory.mktemp("serve") / "model.pt", calibration="none")
    train = data / "chest_xray" / "train"
    tuning = [
        *sorted((train / "NORMAL").glob("*.jpeg"))[100:120],
        *sorted((train / "PNEUMONIA").glob("*.jpeg"))[100:140],
    ]
    rows = predict_paths(load_predictor(path), tuning, workers=0).rows
    model = load_model(path)
    model.card = dataclasses.replace(
        model.card,
        population=intensity_ranges(sorted(train.rglob("*.jpeg"))[::13], age_years=(1, 5)),
        tuning={
            "targets": [int(Path(r.path).parent.name == "PNEUMONIA") for r in rows],
            "probs": [[round(float(v), 6) for v in r.probs] for r in rows],
        },
    )
    return save_model(path, model)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(model_file, folder, env, *options: str):
    """`cxr serve` as a user starts it, its log captured to a file the tests can read."""
    port = _free_port()
    log = folder / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cxr", "serve", str(model_file), "--port", str(port), *options],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"server did not start: {log.read_text()}")
    return process, {"url": url, "log": log, "pid": process.pid, "port": port}


@pytest.fixture(scope="package")
def live_server(model_file, tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if k != "CXR_API_TOKEN"}
    process, info = _serve(model_file, tmp_path_factory.mktemp("log"), env)
    yield info
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="package")
def guarded_server(model_file, tmp_path_factory):
    """A server with a token and its own empty temporary directory, to prove nothing lands there."""
    folder = tmp_path_factory.mktemp("guarded")
    (folder / "tmp").mkdir()
    env = {**os.environ, "CXR_API_TOKEN": "s3cret", "TMPDIR": str(folder / "tmp")}
    process, info = _serve(model_file, folder, env)
    yield {**info, "tmp": folder / "tmp", "token": "s3cret"}
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="package")
def worklist_server(model_file, tmp_path_factory):
    """A server with CXR_API_TOKEN and a worklist database (SQLite) holding two scored cases, one
    reviewer and one admin, each with their own token."""
    from cxr.store import worklist
    from cxr.store.database import open_database
    from cxr.store.reviewers import add_reviewer
    from cxr.store.worklist import Received

    folder = tmp_path_factory.mktemp("worklist")
    db = f"sqlite:///{folder / 'worklist.db'}"
    sessions = open_database(db)
    with sessions.begin() as session:
        for n in (1, 2):
            worklist.record(session, Received(
                sop_instance_uid=f"1.2.826.0.1.{n}", content_digest=f"{n:064x}",
                study_instance_uid=f"1.2.826.1.{n}", series_instance_uid=f"1.2.826.2.{n}",
                patient_pseudonym=None, spool_path=str(folder / f"{n}.dcm"), status="scored",
                classes=["NORMAL", "PNEUMONIA"], probabilities=[0.3, 0.7], predicted="PNEUMONIA",
                urgency=0.7, threshold={"rule": "fixed:0.5", "value": 0.5},
            ))  # fmt: skip
        tokens = {"reviewer": add_reviewer(session, "Dr Ann"),
                  "admin": add_reviewer(session, "Dr Bea", "admin")}  # fmt: skip
    env = {**os.environ, "CXR_API_TOKEN": "s3cret"}
    process, info = _serve(model_file, folder, env, "--db", db)
    yield {**info, "token": "s3cret", **tokens}
    process.terminate()
    process.wait(timeout=30)
