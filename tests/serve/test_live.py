"""The running server: a real Chromium using the page, a bounded load test, schemathesis, and
no patient field in any response or in the server log."""

import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
MARKER = "SYNTHETIC"


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_page_in_chromium(live_server, data, damaged_folder, tmp_path):
    assert CHROMIUM, "the browser test needs Debian's chromium: apt-get install chromium"
    original = sorted((data / "chest_xray_originals" / "train" / "PNEUMONIA").glob("*.jpeg"))[0]
    dicom = data / "dicom_cxr" / "kermany_wrapped" / "normal_IM-0117-0001.dcm"
    batch = sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[:10]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(live_server["url"])
        expect(page.locator("#model")).to_contain_text("NORMAL / PNEUMONIA")
        expect(page.get_by_text("Research tool, not a medical device.")).to_be_visible()
        for path in (original, dicom):
            page.set_input_files("#files", str(path))
            expect(page.locator("#filename")).to_have_text(path.name, timeout=60_000)
            expect(page.locator("#decision")).to_have_text(re.compile("^(NORMAL|PNEUMONIA)$"))
            expect(page.locator("#bars .bar")).to_have_count(2)
            expect(page.locator("#picture")).to_have_attribute("src", re.compile("^data:image"))
            assert page.evaluate("document.getElementById('picture').naturalWidth") > 500
        page.screenshot(path=str(tmp_path / "dicom.png"))
        page.set_input_files("#files", [str(p) for p in batch])
        expect(page.locator("#worklist tbody tr")).to_have_count(10, timeout=60_000)
        page.set_input_files("#files", str(damaged_folder / "NORMAL" / "notes.png"))
        expect(page.locator("#error")).to_contain_text(
            "This file is not a chest X-ray image we can read", timeout=30_000
        )
        page.set_input_files("#files", str(original))  # the page stays usable after an error
        expect(page.locator("#filename")).to_have_text(original.name, timeout=60_000)
        expect(page.locator("#error")).to_be_hidden()
        browser.close()


def test_fifty_concurrent_clients_mixed_good_and_bad(live_server, data, damaged_folder):
    url, pid = live_server["url"], live_server["pid"]
    good = sorted((data / "chest_xray" / "train" / "PNEUMONIA").glob("*.jpeg"))[:30]
    bad = sorted((damaged_folder / "NORMAL").glob("*"))
    bad = [p for p in bad if p.name in {"truncated.jpeg", "empty.jpeg", "notes.png"}]
    jobs = [(p, True) for p in good] + [(bad[i % 3], False) for i in range(20)]
    with httpx.Client(timeout=5) as warm:
        warm.post(f"{url}/api/predict", files={"file": (good[0].name, good[0].read_bytes())})
    before = _rss_mib(pid)

    def send(job):
        path, is_good = job
        with httpx.Client(timeout=120) as client:
            r = client.post(f"{url}/api/predict", files={"file": (path.name, path.read_bytes())})
        return is_good, r.status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(send, jobs))
    assert all(status < 500 for _, status in answers), answers
    assert [s for g, s in answers if g] == [200] * 30
    assert all(s in {415, 422} for g, s in answers if not g)
    assert _rss_mib(pid) < before + 300  # memory back near its start level


def test_no_patient_field_in_responses_or_the_server_log(live_server, data):
    folder = data / "dicom_cxr" / "kermany_wrapped"
    files = [("files", (p.name, p.read_bytes())) for p in sorted(folder.glob("*.dcm"))[:8]]
    with httpx.Client(base_url=live_server["url"], timeout=120) as client:
        texts = [client.post("/api/triage", files=files).text]
        texts += [client.post("/api/triage?format=csv", files=files).text]
        one = files[0][1]
        texts += [client.post("/api/predict?cam=1", files={"file": one}).text]
    assert all(len(t) > 200 for t in texts)
    log = live_server["log"].read_text()
    assert "POST /api/predict" in log
    assert not any(MARKER in t.upper() for t in [*texts, log])


def test_schemathesis_finds_no_server_error(live_server):
    result = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"{live_server['url']}/openapi.json",
            "--checks", "not_a_server_error", "--max-examples", "15",
            "--phases", "examples,fuzzing", "--wait-for-schema", "30",
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
