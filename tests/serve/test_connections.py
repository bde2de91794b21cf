"""What `cxr serve` answers at the connection level: only the Host names it serves (a DNS
rebinding page carries its own name), and a client that sends its headers too slowly is cut off
instead of holding a connection forever."""

import os
import socket
import time

import httpx
import pytest
from tests.serve.conftest import _serve


@pytest.fixture(scope="module")
def named_server(model_file, tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if k != "CXR_API_TOKEN"}
    folder = tmp_path_factory.mktemp("named")
    process, info = _serve(model_file, folder, env, "--allowed-host", "cxr.hospital.example")
    yield info
    process.terminate()
    process.wait(30)


def _status(url: str, host: str) -> int:
    return httpx.get(f"{url}/api/model", headers={"Host": host}, timeout=10).status_code


@pytest.mark.parametrize("host", ["rebind.attacker.example", "cxr.example.evil", "10.0.0.1"])
def test_a_foreign_host_name_is_refused_on_loopback(live_server, host):
    assert _status(live_server["url"], host) == 400
    assert _status(live_server["url"], f"localhost:{live_server['port']}") == 200


def test_named_hosts_and_loopback_are_served_others_refused(named_server):
    url = named_server["url"]
    assert _status(url, "cxr.hospital.example") == 200
    assert _status(url, f"127.0.0.1:{named_server['port']}") == 200
    assert _status(url, "rebind.attacker.example") == 400
    assert "Host header: cxr.hospital.example" in named_server["log"].read_text()


def test_headers_sent_a_byte_at_a_time_are_cut_off(live_server):
    """A slowloris client: the connection is closed about 10 s after it opened, although it
    keeps sending."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", live_server["port"]), timeout=30) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")
        closed = None
        for _ in range(40):
            time.sleep(0.5)
            try:
                conn.sendall(b"X")
                conn.settimeout(0.01)
                if conn.recv(1) == b"":
                    closed = time.monotonic() - start
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = time.monotonic() - start
                break
    assert closed is not None and 8 < closed < 16, closed
    assert httpx.get(f"{live_server['url']}/healthz", timeout=10).status_code == 200


def _half_an_upload(data, endpoint: str) -> bytes:
    """The headers of an upload of one X-ray to `endpoint` and the first half of its body."""
    image = next((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg")).read_bytes()
    field = "file" if endpoint == "predict" else "files"
    body = (
        f'--B\r\nContent-Disposition: form-data; name="{field}"; filename="a.jpeg"\r\n\r\n'.encode()
        + image
        + b"\r\n--B--\r\n"
    )
    head = (
        f"POST /api/{endpoint} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary=B\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body[: len(body) // 2]


@pytest.mark.parametrize("endpoint", ["predict", "triage"])
def test_an_upload_that_stops_mid_body_is_answered_408_and_let_go(live_server, data, endpoint):
    """Headers complete, then half of an image and silence: without a deadline on the body the
    server waited for the rest for good (an attack held such connections 200 s and more)."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", live_server["port"]), timeout=30) as conn:
        conn.sendall(_half_an_upload(data, endpoint))
        answer = b""
        while chunk := conn.recv(4096):  # until the server closes; a timeout fails the test
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"paused" in answer and 8 < time.monotonic() - start < 20
    assert httpx.get(f"{live_server['url']}/healthz", timeout=10).status_code == 200


def test_a_client_hanging_up_mid_upload_leaves_no_traceback(live_server, data):
    """Fifty clients that hung up mid-body left fifty 60-line tracebacks (ClientDisconnect) in
    an attacked server's log: a log anyone could flood."""
    log = live_server["log"]
    seen = len(log.read_text())
    for endpoint in ("predict", "triage"):
        with socket.create_connection(("127.0.0.1", live_server["port"]), timeout=30) as conn:
            conn.sendall(_half_an_upload(data, endpoint))
    time.sleep(2)
    assert httpx.get(f"{live_server['url']}/healthz", timeout=10).status_code == 200
    assert "Traceback" not in log.read_text()[seen:], log.read_text()[seen:][-2000:]
