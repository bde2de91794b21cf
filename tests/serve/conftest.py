"""A small real model file and a live `cxr serve` on 127.0.0.1 for the service tests."""

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from tests.conftest import save_tiny_model


@pytest.fixture(scope="package")
def model_file(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("serve") / "model.pt", calibration="none")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(model_file, folder, env):
    """`cxr serve` as a user starts it, its log captured to a file the tests can read."""
    port = _free_port()
    log = folder / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cxr", "serve", str(model_file), "--port", str(port)],
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
