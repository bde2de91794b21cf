"""The running server: a real Chromium using the page, a bounded load test, schemathesis, and
no patient field in any response or in the server log."""

import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from playwright.sync_api import expect, sync_playwright
from tests.conftest import look

from cxr.metrics.classification import binary_metrics
from cxr.models.io import read_card

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
MARKER = "SYNTHETIC"


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("width", [1280, 390])
def test_page_in_chromium(live_server, data, damaged_folder, tmp_path, width):
    assert CHROMIUM, "the browser test needs Debian's chromium: apt-get install chromium"
    normal = sorted((data / "chest_xray_originals" / "train" / "NORMAL").glob("*.jpeg"))[0]
    dicom = data / "dicom_cxr" / "kermany_wrapped" / "normal_IM-0117-0001.dcm"
    nih = data / "dicom_cxr" / "nih_udacity"
    mr = pydicom.dcmread(nih / "test1.dcm")
    mr.Modality = "MR"
    mr.save_as(tmp_path / "mr.dcm")
    batch = sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[:7]
    batch += [nih / "test2.dcm", nih / "test5.dcm", tmp_path / "mr.dcm"]  # adult, CT, MR
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(live_server["url"])
        expect(page.locator("#model")).to_contain_text("NORMAL / PNEUMONIA")
        expect(page.get_by_text("Research tool, not a medical device.")).to_be_visible()
        expect(page.locator("#explorer .sensitivity")).not_to_be_empty()
        look(page, tmp_path, f"empty_{width}")
        for path, name in ((normal, "jpeg"), (dicom, "dicom")):
            page.set_input_files("#files", str(path))
            expect(page.locator("#filename")).to_have_text(path.name, timeout=60_000)
            expect(page.locator("#decision")).to_have_text(re.compile("^(NORMAL|PNEUMONIA)$"))
            expect(page.locator("#bars .probability")).to_have_count(2)
            # a NORMAL image: the heat map shows the evidence for PNEUMONIA, and says so
            expect(page.locator("#cam-caption")).to_contain_text("evidence for PNEUMONIA")
            expect(page.locator("#cam-caption")).to_contain_text(" threshold ")
            for picture in ("#picture", "#original", "#heat"):
                expect(page.locator(picture)).to_have_attribute("src", re.compile("^data:image"))
                assert page.evaluate(f"document.querySelector('{picture}').naturalWidth") > 500
            assert page.evaluate("document.getElementById('legend').naturalWidth") == 256
            page.locator("#opacity").fill("0.2")
            assert page.evaluate("getComputedStyle(heat).opacity") == "0.2"
            look(page, tmp_path, f"{name}_{width}")
        page.set_input_files("#files", [str(p) for p in batch])
        expect(page.locator("#worklist tbody tr")).to_have_count(8, timeout=60_000)
        expect(page.locator("#not-scored tbody tr")).to_have_count(2)
        expect(page.locator("#not-scored")).to_contain_text("DICOM Modality CT")
        expect(page.locator("#not-scored")).to_contain_text("DICOM Modality MR")
        expect(page.locator("#worklist")).not_to_contain_text("mr.dcm")
        expect(page.locator("#worklist")).to_contain_text("patient age 58 years, outside")
        expect(page.locator("#worklist thead")).to_contain_text("P(PNEUMONIA)")
        assert page.locator("#worklist tbody img.thumb").count() == 8
        look(page, tmp_path, f"worklist_{width}")
        page.locator("#worklist tbody tr").first.focus()
        page.keyboard.press("ArrowDown")
        page.keyboard.press("Enter")  # the second most urgent case opens
        second = page.locator("#worklist tbody tr").nth(1).locator("td.file").inner_text()
        expect(page.locator("#filename")).to_have_text(second, timeout=60_000)
        look(page, tmp_path, f"case_{width}")
        page.set_input_files("#files", str(damaged_folder / "NORMAL" / "notes.png"))
        expect(page.locator("#error")).to_contain_text(
            "This file is not a chest X-ray image we can read", timeout=30_000
        )
        page.set_input_files("#files", str(normal))  # the page stays usable after an error
        expect(page.locator("#filename")).to_have_text(normal.name, timeout=60_000)
        expect(page.locator("#error")).to_be_hidden()
        browser.close()


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def test_threshold_slider_agrees_with_the_metrics_kernel(live_server, model_file):
    """The explorer's numbers at a threshold are `binary_metrics` (what `cxr evaluate` reports)
    on the tuning predictions the card stores, and PPV/NPV at a typed prevalence follow Bayes."""
    tuning = read_card(model_file).tuning  # what the card stores, as training leaves it
    truth, p = np.array(tuning["targets"]), np.array(tuning["probs"])[:, 1]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(live_server["url"])
        expect(page.locator("#explorer .threshold-value")).to_have_text("0.500")
        for threshold in (0.5, float(np.round(np.median(p), 3)), 0.001, 0.999):
            page.locator("#explorer .threshold").fill(str(threshold))
            page.locator("#explorer .prevalence").fill("10")
            m = binary_metrics(truth, p, threshold)
            shown = {
                k: page.locator(f"#explorer dd.{k}").evaluate("e => e.firstChild.textContent")
                for k in ("sensitivity", "specificity", "ppv", "npv", "ppv_at", "npv_at")
            }
            sens, spec = m["sensitivity"], m["specificity"]
            expected = {
                "sensitivity": sens, "specificity": spec, "ppv": m["precision"], "npv": m["npv"],
                "ppv_at": _ratio(sens * 0.1, sens * 0.1 + (1 - spec) * 0.9),
                "npv_at": _ratio(spec * 0.9, spec * 0.9 + (1 - sens) * 0.1),
            }  # fmt: skip
            for key, value in expected.items():
                if np.isnan(value):
                    assert shown[key] == "n/a", (threshold, key, shown[key])
                else:  # the page rounds half up, Python half to even: the same number
                    number = float(shown[key].removesuffix("\u00a0%"))
                    assert abs(number - 100 * value) <= 0.0501, (threshold, key, shown[key])
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
    assert "Uvicorn running" in log and "POST /api/predict" not in log  # quiet by default
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
