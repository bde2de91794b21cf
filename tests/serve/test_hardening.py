"""A running server under attack: uploads refused from their headers, nothing spooled to disk,
the bomb set from many clients in bounded memory with /healthz answering throughout."""

import contextlib
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

GIB = 2**30
BOUNDARY = "cxrboundary"


def _raw_upload(port: int, path: str, declared: int, headers: str = "", send: int = 65536):
    """Send headers declaring `declared` body bytes, then at most `send` of them; the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                f"Content-Length: {declared}\r\n\r\n"
            ).encode()
        )
        start = time.monotonic()
        with contextlib.suppress(OSError):  # the server may already have answered and closed
            sock.sendall(
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="x.dcm"\r\n\r\n'.encode()
                + b"\0" * send
            )
        answer = sock.recv(4096).decode(errors="replace")
        return answer, time.monotonic() - start


def _mm_seconds() -> float:
    """Best of 5 torch.mm 2048² fp32, in this process: the yardstick for latencies."""
    import torch

    a = torch.randn(2048, 2048)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        torch.mm(a, a)
        times.append(time.perf_counter() - start)
    return min(times)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_gib_upload_without_token_is_refused_from_the_headers(guarded_server):
    port, tmp = guarded_server["port"], guarded_server["tmp"]
    answer, seconds = _raw_upload(port, "/api/predict", GIB)
    assert answer.startswith("HTTP/1.1 401") and seconds < 5, answer
    answer, _ = _raw_upload(port, "/api/triage", GIB)
    assert answer.startswith("HTTP/1.1 401"), answer
    token = "Authorization: Bearer s3cret\r\n"
    answer, _ = _raw_upload(port, "/api/predict", GIB, token)
    assert answer.startswith("HTTP/1.1 413"), answer
    assert list(tmp.iterdir()) == []


def test_accepted_uploads_stay_in_memory(guarded_server, data):
    """Starlette's own form parsing would spool each of these (over 1 MiB) to TMPDIR."""
    url, tmp = guarded_server["url"], guarded_server["tmp"]
    auth = {"Authorization": "Bearer s3cret"}
    big = sorted((data / "dicom_cxr" / "nih_udacity").glob("*.dcm"))[0]
    assert big.stat().st_size > 2**20
    with httpx.Client(base_url=url, timeout=120, headers=auth) as client:
        one = client.post("/api/predict", files={"file": (big.name, big.read_bytes())})
        batch = client.post("/api/triage", files=[("files", (big.name, big.read_bytes()))] * 3)
        streamed = client.post(
            "/api/predict",
            content=iter([b"--x\r\n", b"\0" * 2**20] * 30),  # no Content-Length: chunked
            headers={"Content-Type": "multipart/form-data; boundary=x"},
        )
    assert one.status_code == 200 and batch.status_code == 200, (one.text, batch.text)
    assert streamed.status_code in {413, 422}, streamed.text
    assert list(tmp.iterdir()) == []


def test_reviewer_tokens_are_checked_from_the_headers_too(worklist_server):
    """With a worklist database a reviewer's token also opens the prediction API: looked up before
    the body, so a GiB upload under it still gets its 413 at once, and under a wrong one a 401."""
    port = worklist_server["port"]
    for token, status in ((worklist_server["reviewer"], 413), ("nope", 401), (None, 401)):
        headers = f"Authorization: Bearer {token}\r\n" if token else ""
        answer, seconds = _raw_upload(port, "/api/predict", GIB, headers)
        assert answer.startswith(f"HTTP/1.1 {status}") and seconds < 5, (token, answer)


def test_start_up_line_says_auth_and_limits(guarded_server, live_server):
    assert "auth: prediction API needs CXR_API_TOKEN; limits:" in guarded_server["log"].read_text()
    opened = live_server["log"].read_text()
    assert "auth: prediction API open (no token asked" in opened, opened
    assert "uploads up to 25 MB" in opened


def test_bomb_set_from_many_clients_bounded_memory_and_live_health(
    live_server, hostile_dicoms, data, tmp_path
):
    url, pid = live_server["url"], live_server["pid"]
    big = tmp_path / "big16.png"
    ramp = (np.arange(8000, dtype=np.uint16) * 8)[None].repeat(8000, axis=0)
    Image.fromarray(ramp).save(big, compress_level=9)
    inputs = [*sorted(hostile_dicoms.iterdir()), big, big]
    inputs += sorted((data / "chest_xray_originals" / "train" / "NORMAL").glob("*.jpeg"))[:4]
    jobs = inputs * 3  # 45 requests
    with httpx.Client(timeout=30) as warm:
        warm.post(f"{url}/api/predict", files={"file": (big.name, big.read_bytes())})
    yardstick = _mm_seconds()  # the speed unit docs/benchmarks.md states latencies in
    before = _rss_mib(pid)
    peak, latencies, stop = [before], [], threading.Event()

    def watch():
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                start = time.monotonic()
                assert client.get(f"{url}/healthz").status_code == 200
                latencies.append(time.monotonic() - start)
                peak.append(_rss_mib(pid))
                time.sleep(0.05)

    def send(path):
        with httpx.Client(timeout=300) as client:
            kind = "triage" if path.suffix == ".dcm" else "predict"
            field = "files" if kind == "triage" else "file"
            return client.post(
                f"{url}/api/{kind}", files=[(field, (path.name, path.read_bytes()))]
            ).status_code

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(send, jobs))
    finally:
        stop.set()
        watcher.join()
    growth = max(peak) - before
    p99 = float(np.percentile(latencies, 99))
    print(
        f"{len(jobs)} requests, statuses {sorted(set(statuses))}, RSS {before:.0f} MiB before, "
        f"peak growth {growth:.0f} MiB; /healthz over {len(latencies)} probes: median "
        f"{np.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {max(latencies):.2f} s"
        f"; torch.mm 2048² fp32 yardstick {yardstick * 1000:.1f} ms (p99 = "
        f"{p99 / yardstick:.0f} mm, max = {max(latencies) / yardstick:.0f} mm)"
    )
    assert not [s for s in statuses if s >= 500], statuses
    # p99 holds the 0.5 s promise; the max is looser because this 2-core test machine is shared
    assert p99 < 0.5 and max(latencies) < 2.0, (p99, max(latencies))
    assert growth < 1024  # one 8000 px 16-bit read peaks near 270 MiB; two run at once
