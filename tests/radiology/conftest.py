"""Real servers on 127.0.0.1 for the department tests: PostgreSQL (initdb + pg_ctl into a temporary
folder), Orthanc (Debian package, a JSON config and a Lua forwarding rule), and `cxr listen` as a
user starts it. Every database test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import save_tiny_model

PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
ORTHANC = shutil.which("Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
MARKER = "SYNTHETIC"


@pytest.fixture(scope="package")
def model_file(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("department") / "model.pt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, what: str, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    pytest.fail(f"{what} did not open port {port}: {log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster; as root it runs as the `postgres` (or `nobody`) user."""
    assert PG_BIN, "PostgreSQL is needed: apt-get install postgresql"
    bin_dir = PG_BIN[-1]
    folder = Path(tempfile.mkdtemp(prefix="cxr-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = "postgres" if _user_exists("postgres") else "nobody"
        shutil.chown(folder, user)
        prefix = ["runuser", "-u", user, "--"]
    port, data, log = free_port(), folder / "data", folder / "server.log"
    subprocess.run(
        [*prefix, bin_dir / "initdb", "-D", data, "-U", "cxr", "--auth=trust", "-E", "UTF8"],
        check=True, capture_output=True,
    )  # fmt: skip
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    control = [*prefix, bin_dir / "pg_ctl", "-D", data]
    server = {
        "port": port,
        "log": log,
        "start": [*control, "-l", log, "-o", options, "-w", "start"],
        "stop": [*control, "-m", "fast", "-w", "stop"],
    }
    subprocess.run(server["start"], check=True, capture_output=True)
    yield server
    subprocess.run(server["stop"], capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty worklist database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'worklist.db'}"
    server = request.getfixturevalue("postgres")
    name = f"cxr_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(f"host=127.0.0.1 port={server['port']} user=cxr dbname=postgres",
                         autocommit=True) as conn:  # fmt: skip
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://cxr@127.0.0.1:{server['port']}/{name}"


def dump(url: str) -> str:
    """Every row of every table as text: what a leak check must search."""
    engine = create_engine(url)
    out = []
    with engine.connect() as conn:
        for table in ("instances", "reviewers", "audit"):
            out += [repr(tuple(row)) for row in conn.execute(text(f"SELECT * FROM {table}"))]
    engine.dispose()
    return "\n".join(out)


class Listener:
    """`cxr listen` as a subprocess, its log in a file; restartable, killable with SIGKILL."""

    def __init__(self, model: Path, db: str, folder: Path) -> None:
        self.port, self.folder = free_port(), folder
        self.spool, self.log = folder / "spool", folder / "listen.log"
        self.args = [
            sys.executable, "-m", "cxr", "listen", str(model), "--db", db,
            "--spool", str(self.spool), "--port", str(self.port), "--ae-title", "CXR",
        ]  # fmt: skip
        self.send_to: str | None = None  # AET@host:port for the results
        self.process: subprocess.Popen | None = None

    def start(self) -> Listener:
        args = [*self.args, *(["--send-to", self.send_to] if self.send_to else [])]
        with self.log.open("a") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.port, "cxr listen", self.log)
        return self

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


@pytest.fixture()
def orthanc_factory(tmp_path):
    assert ORTHANC, "the PACS tests need Debian's orthanc: apt-get install orthanc orthanc-dicomweb"
    started: list[Orthanc] = []

    def make(listener_port: int) -> Orthanc:
        started.append(Orthanc(tmp_path / "orthanc", listener_port))
        return started[-1]

    yield make
    for server in started:
        server.stop()


@pytest.fixture()
def listener_factory(model_file, tmp_path):
    started: list[Listener] = []

    def make(db: str) -> Listener:
        listener = Listener(model_file, db, tmp_path)
        started.append(listener)
        return listener

    yield make
    for listener in started:
        listener.stop()


def wait_until(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


class Orthanc:
    """Orthanc with a Lua rule forwarding every instance a modality stores to `cxr listen`."""

    def __init__(self, folder: Path, listener_port: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.dicom_port, self.http_port = free_port(), free_port()
        self.url, self.log = f"http://127.0.0.1:{self.http_port}", folder / "orthanc.log"
        lua = folder / "forward.lua"
        lua.write_text(
            "function OnStoredInstance(instanceId, tags, metadata, origin)\n"
            "  if origin['RequestOrigin'] == 'DicomProtocol'\n"
            "     and origin['RemoteAet'] ~= 'CXR' then\n"
            "    SendToModality(instanceId, 'cxr')\n"
            "  end\n"
            "end\n"
        )
        config = {
            "Name": "cxr-test", "DicomAet": "ORTHANC", "DicomPort": self.dicom_port,
            "HttpPort": self.http_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"), "LuaScripts": [str(lua)],
            "DicomModalities": {"cxr": ["CXR", "127.0.0.1", listener_port]},
            "OverwriteInstances": True,  # two sources reuse one SOP Instance UID: forward both
            "Plugins": [str(DICOMWEB_PLUGIN)] if DICOMWEB_PLUGIN.exists() else [],
        }  # fmt: skip
        (folder / "orthanc.json").write_text(json.dumps(config))
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [ORTHANC, str(folder / "orthanc.json")], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/system", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        pytest.fail(f"Orthanc did not start: {self.log.read_text()[-3000:]}")

    def get(self, path: str):
        return httpx.get(f"{self.url}{path}", timeout=30).raise_for_status().json()

    def find(self, **query: str) -> list[str]:
        answer = httpx.post(f"{self.url}/tools/find", json={"Level": "Instance", "Query": query},
                            timeout=30)  # fmt: skip
        return answer.raise_for_status().json()

    def file(self, instance: str) -> bytes:
        return httpx.get(f"{self.url}/instances/{instance}/file", timeout=30).content

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
