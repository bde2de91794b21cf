"""The case page reads as people read: a number keeps its "%" (and an interval its two ends) on
one line, and a file name wraps between its words, not inside them. Real Chromium, real server,
at 1280 and 390 px."""

import re
import shutil

import pytest
from playwright.sync_api import expect, sync_playwright
from tests.conftest import look

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
NAMES = {  # as a department names its exports: long, in words joined by "_" and "-"
    "PNEUMONIA/person1000_bacteria_2931.jpeg": "pneumonia_person1000_bacteria_2931_frontal.jpeg",
    "PNEUMONIA/person1000_virus_1681.jpeg": "pneumonia_person1000_virus_1681_frontal_view.jpeg",
    "NORMAL/IM-0115-0001.jpeg": "normal_IM-0115-0001_frontal-chest.jpeg",
}
# the lines each text node of an element takes: a text node between two <wbr> is one word
LINES_PER_PIECE = """e => [...e.childNodes].filter(n => n.nodeType === 3).map(n => {
    const r = document.createRange(); r.selectNodeContents(n);
    return [n.textContent, new Set([...r.getClientRects()].map(b => Math.round(b.top))).size];
})"""
TOPS = """e => [...new Set([...e.childNodes].filter(n => n.nodeType === 3).flatMap(n => {
    const r = document.createRange(); r.selectNodeContents(n);
    return [...r.getClientRects()].map(b => Math.round(b.top));
}))]"""
SPLIT_UNIT = re.compile(r"\d %|[<>≤≥] \d")  # an ordinary (breakable) space inside a figure


@pytest.fixture(scope="module")
def long_names(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("named")
    for source, name in NAMES.items():
        shutil.copy(data / "chest_xray" / "train" / source, folder / name)
    return [folder / name for name in NAMES.values()]


@pytest.mark.parametrize("width", [1280, 390])
def test_names_wrap_between_words_and_numbers_keep_their_units(
    live_server, long_names, tmp_path, width
):
    assert CHROMIUM, "the browser test needs Debian's chromium: apt-get install chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(live_server["url"])
        page.set_input_files("#files", [str(p) for p in long_names])
        cells = page.locator("#worklist tbody td.file")
        expect(cells).to_have_count(3, timeout=120_000)
        tops = set()  # the lines the names take in all: at 390 px some name must wrap
        for k in range(3):
            name = cells.nth(k).get_attribute("title")
            assert name in NAMES.values()
            pieces = cells.nth(k).evaluate(LINES_PER_PIECE)
            assert "".join(text for text, _ in pieces) == name
            assert all(lines == 1 for _, lines in pieces), f"{name} breaks inside a word: {pieces}"
            tops |= {(k, top) for top in cells.nth(k).evaluate(TOPS)}
        if width < 700:
            assert len(tops) > 3, "no name wraps: the test shows nothing"
        look(page, tmp_path, f"index_batch_{width}")

        page.locator("#worklist tbody tr").first.click()
        expect(page.locator("#cam-caption")).to_contain_text("P(PNEUMONIA)", timeout=60_000)
        expect(page.locator("#explorer dd.ppv small.ci")).to_contain_text("CI")
        for where in ("#cam-caption", "#threshold", "#bars", "#explorer", "#worklist"):
            text = page.inner_text(where)
            assert not SPLIT_UNIT.search(text), f"{where}: {SPLIT_UNIT.findall(text)} can break"
        explorer = page.inner_text("#explorer")  # 40 of 40 found: "100 %", never "100.0 %"
        assert re.search(r"\b100\u00a0%", explorer) and not re.search(
            r"100\.0|\b0\.0\u00a0%", explorer
        )
        ranges = page.locator("#explorer small.ci .range")
        expect(ranges.first).to_be_visible()
        for k in range(ranges.count()):
            pieces = ranges.nth(k).evaluate(LINES_PER_PIECE)
            assert [lines for _, lines in pieces] == [1], f"an interval on two lines: {pieces}"
        look(page, tmp_path, f"index_case_{width}")
        browser.close()
