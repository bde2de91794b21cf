import hashlib
import threading
import time
import zipfile
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cxr.data.download import KERMANY, fetch, unpack
from cxr.errors import DownloadError


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves files with `Range: bytes=N-` support, the way a real download server resumes."""

    def send_head(self):
        header = self.headers.get("Range")
        if not header:
            return super().send_head()
        path = self.translate_path(self.path)
        body = open(path, "rb").read()  # noqa: SIM115
        start = int(header.removeprefix("bytes=").rstrip("-"))
        self.send_response(206)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        import io

        return io.BytesIO(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture()
def archive(tmp_path, data):
    zip_path = tmp_path / "served" / "ChestXRay2017.zip"
    zip_path.parent.mkdir()
    with zipfile.ZipFile(zip_path, "w") as zf:
        for split, label in (("train", "NORMAL"), ("test", "PNEUMONIA")):
            for src in sorted((data / "chest_xray/train" / label).glob("*.jpeg"))[:3]:
                zf.write(src, f"chest_xray/{split}/{label}/{src.name}")
                zf.write(src, f"__MACOSX/chest_xray/{split}/{label}/._{src.name}")
        zf.writestr("chest_xray/train/.DS_Store", b"\0")
    return zip_path


@pytest.fixture()
def server(archive):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=archive.parent))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def _remote(archive, url):
    return replace(
        KERMANY,
        url=f"{url}/{archive.name}",
        sha256=hashlib.sha256(archive.read_bytes()).hexdigest(),
    )


def test_offline_fails_fast_with_a_clear_message(tmp_path):
    remote = replace(KERMANY, url="http://127.0.0.1:9/ChestXRay2017.zip")  # discard port: refused
    start = time.monotonic()
    with pytest.raises(DownloadError, match="--from-archive") as caught:
        fetch(remote, tmp_path)
    assert time.monotonic() - start < 10
    assert "ChestXRay2017.zip" in str(caught.value)


def test_download_resumes_and_checks_the_checksum(tmp_path, archive, server):
    remote = _remote(archive, server)
    whole = archive.read_bytes()
    (tmp_path / "ChestXRay2017.zip.part").write_bytes(whole[:1000])  # an interrupted earlier run
    got = fetch(remote, tmp_path)
    assert got.read_bytes() == whole
    assert not (tmp_path / "ChestXRay2017.zip.part").exists()


def test_wrong_checksum_is_refused(tmp_path, archive, server):
    remote = replace(_remote(archive, server), sha256="0" * 64)
    with pytest.raises(DownloadError, match="does not match"):
        fetch(remote, tmp_path)


def test_unpack_into_the_standard_layout_without_overwriting(tmp_path, archive):
    counts = unpack(archive, tmp_path / "kermany")
    assert counts == {("train", "NORMAL"): 3, ("test", "PNEUMONIA"): 3}
    files = sorted(
        p.relative_to(tmp_path / "kermany").parts[:2]
        for p in (tmp_path / "kermany").rglob("*.jpeg")
    )
    assert len(files) == 6
    assert unpack(archive, tmp_path / "kermany") == counts  # same content again: fine
    victim = next((tmp_path / "kermany/train/NORMAL").glob("*.jpeg"))
    victim.write_bytes(b"the user's own edit")
    with pytest.raises(DownloadError, match="not overwritten"):
        unpack(archive, tmp_path / "kermany")
    assert victim.read_bytes() == b"the user's own edit"
