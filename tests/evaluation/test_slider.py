"""The operating-point explorer at the model's threshold is `cxr evaluate`, tile by tile: a real
Chromium opens `cxr report` over a real evaluation, sets the model's threshold and reads every
count, rate and Wilson interval against metrics.json; the report read at 1280 and 390 px."""

import json
import shutil
import subprocess
import sys

import pytest
from playwright.sync_api import expect, sync_playwright
from tests.conftest import look, train_tiny

from cxr.metrics.stats import wilson_interval

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _cxr(*args):
    return subprocess.run(
        [sys.executable, "-m", "cxr", *map(str, args)], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("slider")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXR_CACHE", str(tmp / "cache"))
        run = train_tiny(tmp, data, "slider", "data.limit=160", epochs=2)
        out = tmp / "internal"
        result = _cxr("evaluate", run / "model.pt", data / "chest_xray", "--split", "internal-test",
                      "--out", out, "--bootstrap", 50, "--workers", 0)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        html = tmp / "report.html"
        result = _cxr("report", out, "--out", html, "--bootstrap", 50)
        assert result.returncode == 0, result.stdout + result.stderr
    return {"html": html, "metrics": json.loads((out / "metrics.json").read_text()), "tmp": tmp}


def test_the_slider_at_the_models_threshold_equals_cxr_evaluate(report):
    assert CHROMIUM, "the browser test needs Debian's chromium: apt-get install chromium"
    m = report["metrics"]["metrics"]
    threshold = report["metrics"]["card"]["threshold"]["value"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(report["html"].as_uri())
        box = page.locator(".explorer").first
        box.locator(".threshold").fill("0.2")
        box.get_by_role("button", name="model's threshold").click()
        shown = box.locator(".threshold-value").inner_text()
        assert len(shown) > 5 and float(shown) == pytest.approx(threshold, abs=1e-8)  # unrounded
        counts = {
            "sensitivity": (m["tp"], m["tp"] + m["fn"], m["sensitivity"]),
            "specificity": (m["tn"], m["tn"] + m["fp"], m["specificity"]),
            "ppv": (m["tp"], m["tp"] + m["fp"], m["precision"]),
            "npv": (m["tn"], m["tn"] + m["fn"], m["npv"]),
        }
        for key, (k, n, rate) in counts.items():
            tile = box.locator(f"dd.{key}")
            value = tile.evaluate("e => e.firstChild.textContent")
            expect(tile).to_contain_text(f"{k} of {n} ")
            ci = tile.locator("small.ci")
            if n == 0:  # no calls of that kind at this threshold: no rate, no interval
                assert value == "n/a" and ci.inner_text() == "no interval: no cases", key
                continue
            digits = 0 if rate in (0, 1) else 1  # all or none counted: "100 %", not "100.0 %"
            assert value == f"{100 * rate:.{digits}f}\u00a0%", key
            low, high = wilson_interval(k, n)
            assert float(ci.get_attribute("data-low")) == pytest.approx(low, abs=1e-9), key
            assert float(ci.get_attribute("data-high")) == pytest.approx(high, abs=1e-9), key
        for key in ("ppv_at", "npv_at"):
            expect(box.locator(f"dd.{key} small.ci")).to_contain_text("95 % CI")
        browser.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_the_report_reads_on_a_phone(report, width):
    """Figures one to a row at full width and enlarged on a tap, a cue over every table wider
    than the screen, a glossary; nothing spills sideways."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(report["html"].as_uri())
        expect(page.locator("#glossary")).to_contain_text("Expected calibration error")
        look(page, report["tmp"], f"report_{width}")
        figure = page.locator(".grid figure").first
        column = page.locator(".grid").first.bounding_box()["width"]
        if width == 390:
            assert figure.bounding_box()["width"] >= column - 1  # stacked, full width
        wide = page.evaluate(
            "[...document.querySelectorAll('.scroll')]"
            ".filter(b => b.scrollWidth > b.clientWidth + 1).length"
        )
        assert page.locator("p.scroll-cue").count() == wide
        assert wide > 0 or width == 1280
        figure.locator("img").click()
        expect(page.locator("#enlarged")).to_be_visible()
        page.locator("#enlarged").click()
        expect(page.locator("#enlarged")).to_be_hidden()
        browser.close()
