"""The page says what every number holds for: an image not scored shows no probability, bar,
heat map or decision (the API gives none either, unless asked); a scored one shows its decision
with the threshold; the explorer's tiles carry counts and Wilson intervals. Real Chromium,
real server, screenshots at 1280 and 390 px."""

import os
import re
import shutil

import httpx
import numpy as np
import pydicom
import pytest
from playwright.sync_api import expect, sync_playwright
from tests.conftest import look
from tests.serve.conftest import _serve

from cxr.metrics.classification import binary_metrics
from cxr.metrics.stats import wilson_interval
from cxr.models.io import read_card

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def mr(tmp_path_factory, data):
    """A chest film whose header says MR: flagged as probably not a frontal chest X-ray."""
    ds = pydicom.dcmread(data / "dicom_cxr" / "nih_udacity" / "test1.dcm")
    ds.Modality = "MR"
    path = tmp_path_factory.mktemp("mr") / "mr.dcm"
    ds.save_as(path)
    return path


def test_the_api_gives_no_number_for_an_image_not_scored_unless_asked(live_server, mr):
    url = live_server["url"]
    files = {"file": ("mr.dcm", mr.read_bytes())}
    body = httpx.post(f"{url}/api/predict?cam=1", files=files, timeout=120).json()
    assert body["probabilities"] is body["decision"] is body["predicted"] is None
    assert "heat" not in body and body["image"].startswith("data:image/png")
    assert "DICOM Modality MR" in body["not_scored_reason"]
    asked = httpx.post(f"{url}/api/predict?cam=1&score_anyway=1", files=files, timeout=120).json()
    assert set(asked["probabilities"]) == {"NORMAL", "PNEUMONIA"} and asked["scored_anyway"]
    assert asked["cam_caption"].startswith("NOT SCORED: DICOM Modality MR")
    assert (
        "(probably not a frontal chest X-ray" in asked["decision"]
        or "not scored" in (asked["decision"])
    )


@pytest.mark.parametrize("width", [1280, 390])
def test_case_views_and_explorer(live_server, model_file, data, mr, tmp_path, width):
    assert CHROMIUM, "the browser test needs Debian's chromium: apt-get install chromium"
    normal = sorted((data / "chest_xray" / "train" / "PNEUMONIA").glob("*.jpeg"))[0]
    tuning = read_card(model_file).tuning
    truth, p = np.array(tuning["targets"]), np.array(tuning["probs"])[:, 1]
    threshold = read_card(model_file).threshold.value
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(live_server["url"])
        page.set_input_files("#files", str(normal))
        expect(page.locator("#filename")).to_have_text(normal.name, timeout=60_000)
        expect(page.locator("#threshold")).to_contain_text(
            re.compile(r"(NORMAL|PNEUMONIA): P\(PNEUMONIA\) \d\.\d+ (>=|<) threshold 0\.500")
        )
        expect(page.locator("#threshold")).to_contain_text("chosen on the tuning split")
        expect(page.locator("#cam-caption")).to_contain_text("PNEUMONIA: P(PNEUMONIA)")
        expect(page.locator("#heat-figure")).to_be_visible()
        look(page, tmp_path, f"case_scored_{width}")

        page.set_input_files("#files", str(mr))
        expect(page.locator("#filename")).to_have_text("mr.dcm", timeout=60_000)
        expect(page.locator("#decision")).to_have_text("not scored")
        expect(page.locator("#flags")).to_contain_text("DICOM Modality MR")
        expect(page.locator("#bars .probability")).to_have_count(0)
        expect(page.locator("#heat-figure")).to_be_hidden()
        expect(page.locator("#heat-legend")).to_be_hidden()
        assert "%" not in page.locator(".facts").inner_text()
        look(page, tmp_path, f"case_not_scored_{width}")

        box = page.locator("#explorer")
        box.locator(".threshold").fill("0.9")
        box.get_by_role("button", name="model's threshold").click()
        m = binary_metrics(truth, p, threshold)
        tiles = {
            "sensitivity": (m["tp"], m["tp"] + m["fn"]),
            "specificity": (m["tn"], m["tn"] + m["fp"]),
            "ppv": (m["tp"], m["tp"] + m["fp"]),
            "npv": (m["tn"], m["tn"] + m["fn"]),
        }
        for key, (k, n) in tiles.items():
            tile = box.locator(f"dd.{key}")
            expect(tile).to_contain_text(f"{k} of {n} ")
            if n:
                low, high = wilson_interval(k, n)
                ci = tile.locator("small.ci")
                assert float(ci.get_attribute("data-low")) == pytest.approx(low, abs=1e-9)
                assert float(ci.get_attribute("data-high")) == pytest.approx(high, abs=1e-9)
        page.locator("#glossary summary").click()
        expect(page.locator("#glossary")).to_contain_text("Negative predictive value")
        page.locator("#explorer-card").scroll_into_view_if_needed()
        look(page, tmp_path, f"explorer_{width}")
        browser.close()


def test_requests_are_logged_only_with_access_log(model_file, data, tmp_path):
    """Off by default (the shared server's log has none); `--access-log` logs each request,
    still without any patient field."""
    env = {k: v for k, v in os.environ.items() if k != "CXR_API_TOKEN"}
    process, info = _serve(model_file, tmp_path, env, "--access-log")
    try:
        dicom = data / "dicom_cxr" / "kermany_wrapped" / "normal_IM-0117-0001.dcm"
        answer = httpx.post(
            f"{info['url']}/api/predict", files={"file": dicom.read_bytes()}, timeout=120
        )
        assert answer.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
    log = info["log"].read_text()
    assert "POST /api/predict" in log and "SYNTHETIC" not in log.upper()
