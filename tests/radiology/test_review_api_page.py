"""The worklist page in Chromium, at a phone's 390 px and a desk's 1280 px: nothing spills
sideways, the list comes before the case in one column on the phone, the label buttons are on
screen; and keys are taken one case at a time (two keys 10 ms apart label two cases)."""

from __future__ import annotations

import re
import shutil

import pytest
from playwright.sync_api import expect, sync_playwright

from cxr.store import worklist
from cxr.store.database import open_database
from cxr.store.reviewers import add_reviewer
from tests.conftest import look
from tests.radiology.test_review_api import running_worklist, scored

CHROMIUM = shutil.which("chromium")
AGE_WARNING = "patient age 44 years, outside the training data's 1–5"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-dev-shm-usage"]  # fmt: skip


@pytest.fixture()
def reviewer_and_url(data, tmp_path):
    url = f"sqlite:///{tmp_path / 'worklist.db'}"
    picture = sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[0]
    with open_database(url).begin() as session:
        for row in scored(6, tmp_path / "spool", picture):
            row.warnings = [AGE_WARNING]
            worklist.record(session, row)
        token = add_reviewer(session, "Dr Ann")
    with running_worklist(url) as served:
        yield token, served, url


def _signed_in(p, url: str, token: str, width: int, who: str = "Dr Ann (reviewer)"):
    assert CHROMIUM, "the browser test needs Debian's chromium: apt-get install chromium"
    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    page = browser.new_page(viewport={"width": width, "height": 844 if width < 700 else 900})
    page.goto(f"{url}/worklist")
    page.fill("#token", token)
    page.keyboard.press("Enter")
    expect(page.locator("#who")).to_have_text(who)
    expect(page.locator("#labels button")).to_have_count(2)
    expect(page.locator("#cam")).to_have_attribute("src", re.compile("^data:image/png"))
    return browser, page


@pytest.mark.parametrize("width", [390, 1280])
def test_the_page_fits_the_screen(reviewer_and_url, tmp_path, width):
    token, url, _ = reviewer_and_url
    with sync_playwright() as p:
        browser, page = _signed_in(p, url, token, width)
        expect(page.locator("#flags")).to_have_text(AGE_WARNING)  # the node's warning, shown
        look(page, tmp_path, f"worklist_{width}")  # also: no horizontal overflow
        assert page.evaluate("document.scrollingElement.scrollWidth") <= width
        listed = page.locator("#list-box").bounding_box()
        case = page.locator("#case").bounding_box()
        if width < 700:  # one column: the list, then the case below it
            assert case["y"] >= listed["y"] + listed["height"] and case["x"] == listed["x"]
        else:
            assert case["x"] > listed["x"] + listed["width"]
        for button in page.locator("#labels button").all():
            button.scroll_into_view_if_needed()
            expect(button).to_be_visible()
            box = button.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width
        page.locator("#monitor summary").click()
        expect(page.locator("#days tbody tr")).to_have_count(1)
        look(page, tmp_path, f"worklist_monitor_{width}")
        browser.close()


def test_two_keys_10_ms_apart_label_two_cases(reviewer_and_url):
    token, url, db = reviewer_and_url
    with sync_playwright() as p:
        browser, page = _signed_in(p, url, token, 1280)
        first = int(page.locator("#study").inner_text().split()[1])
        page.keyboard.press("1")
        page.wait_for_timeout(10)
        page.keyboard.press("1")
        expect(page.locator("[data-queue=reviewed]")).to_have_text("Reviewed (2)")
        with open_database(db)() as session:
            reviews = [e for e in worklist.audit_trail(session) if e.action == "review"]
            labelled = [e.detail["entry"] for e in reviews]
            assert len(labelled) == 2 and len(set(labelled)) == 2 and first in labelled, labelled
            assert worklist.counts(session)["reviewed"] == 2
        # The counts are drawn before the next case arrives: wait for the case, which must be
        # a third one, still unlabelled (the third case waits for its own key)
        for entry in labelled:
            expect(page.locator("#study")).not_to_contain_text(f"entry {entry} ")
        expect(page.locator("#review-state")).to_have_text("not reviewed yet")
        browser.close()
    with open_database(db)() as session:
        assert worklist.counts(session)["reviewed"] == 2


def test_an_admin_replaces_another_reviewers_label_only_on_purpose(reviewer_and_url):
    _, url, db = reviewer_and_url
    with open_database(db).begin() as session:
        worklist.review(session, 6, "NORMAL", "", "Dr Ann")
        boss = add_reviewer(session, "Boss", "admin")
    with sync_playwright() as p:
        browser, page = _signed_in(p, url, boss, 1280, "Boss (admin)")
        page.keyboard.press("ArrowRight")  # the Reviewed queue
        expect(page.locator("#list tbody tr")).to_have_count(1)
        expect(page.locator("#study")).to_contain_text("entry 6 ")
        page.keyboard.press("2")  # PNEUMONIA
        expect(page.locator("#error")).to_contain_text("reviewed already by Dr Ann")
        page.locator("#replace").click()
        expect(page.locator("#status")).to_contain_text("entry 6: PNEUMONIA")
        browser.close()
    with open_database(db)() as session:
        row = worklist.instance(session, 6)
        assert (row.review_label, row.reviewed_by) == ("PNEUMONIA", "Boss")


def test_a_near_certain_case_never_reads_100_percent(data, tmp_path):
    """p = 0.99996 shows as "> 99.9 %" and "> 0.999", as the case page and reports print it."""
    url = f"sqlite:///{tmp_path / 'worklist.db'}"
    picture = sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[0]
    (row,) = scored(1, tmp_path / "spool", picture)
    row.probabilities, row.urgency, row.predicted = [0.00004, 0.99996], 0.99996, "PNEUMONIA"
    with open_database(url).begin() as session:
        worklist.record(session, row)
        token = add_reviewer(session, "Dr Ann")
    with running_worklist(url) as served, sync_playwright() as p:
        browser, page = _signed_in(p, served, token, 1280)
        expect(page.locator("#bars")).to_contain_text("> 99.9 %")
        expect(page.locator("#bars")).to_contain_text("< 0.1 %")
        expect(page.locator("#list tbody")).to_contain_text("> 0.999")
        shown = page.inner_text("body").replace("\u00a0", " ")  # the pages join "99.9 %" unbroken
        assert "100.0 %" not in shown and "1.000" not in page.inner_text("#list")
        browser.close()


def test_the_monitor_prints_the_threshold_and_one_reviews_interval_as_people_read_them(
    data, tmp_path
):
    """The stored threshold to 4 decimals, as the case page prints it (not 0.9326129095520689),
    and one review against the model as 0 % (0–79), not a certain 0 % (0–0)."""
    url = f"sqlite:///{tmp_path / 'worklist.db'}"
    picture = sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[0]
    (row,) = scored(1, tmp_path / "spool", picture)
    row.probabilities, row.urgency, row.predicted = [0.01, 0.99], 0.99, "PNEUMONIA"
    row.threshold = {"rule": "sensitivity>=0.95", "positive_class": "PNEUMONIA",
                     "value": 0.9326129095520689}  # fmt: skip
    with open_database(url).begin() as session:
        worklist.record(session, row)
        token = add_reviewer(session, "Dr Ann")
    with running_worklist(url) as served, sync_playwright() as p:
        browser, page = _signed_in(p, served, token, 1280)
        page.keyboard.press("1")  # NORMAL: the reviewer corrects the model
        expect(page.locator("[data-queue=reviewed]")).to_have_text("Reviewed (1)")
        page.locator("#monitor summary").click()
        against = page.locator("#against")
        expect(against).to_contain_text("PNEUMONIA at threshold 0.9326: agreement 0 % (0–79)")
        expect(against).to_contain_text("specificity 0 % (0–79)")
        browser.close()


@pytest.mark.parametrize("width", [390, 1280])
def test_the_list_marks_a_warning_the_note_hint_fits_and_the_monitor_shows_every_column(
    reviewer_and_url, tmp_path, width
):
    """A case unlike the training images is marked in the list, before it is opened; the note's
    placeholder is read whole on a phone; the monitor's nine columns are all on screen at
    1280 px (scrolled inside their own box on a phone) and its inputs are named in words."""
    token, url, _ = reviewer_and_url
    with sync_playwright() as p:
        browser, page = _signed_in(p, url, token, width)
        marks = page.locator("#list tbody tr .oop")
        expect(marks).to_have_count(6)
        expect(marks.first).to_be_visible()
        expect(marks.first).to_have_attribute("title", re.compile(re.escape(AGE_WARNING)))
        expect(marks.first).to_have_attribute("aria-label", re.compile(re.escape(AGE_WARNING)))
        spare = page.evaluate("""() => {
            const e = document.getElementById("note"), s = getComputedStyle(e);
            const c = document.createElement("canvas").getContext("2d");
            c.font = s.font;
            const room = e.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
            return room - c.measureText(e.placeholder).width;
        }""")
        assert spare >= 0, f"the note's placeholder is cut by {-spare:.0f} px"
        page.locator("#monitor summary").click()
        expect(page.locator("#days tbody tr")).to_have_count(1)
        expect(page.locator("#inputs")).to_contain_text("grey-level mean")
        expect(page.locator("#inputs")).to_contain_text("age (years)")
        assert "_" not in page.inner_text("#inputs")
        if width >= 1280:
            box = page.locator("#days").evaluate(
                "t => [t.parentElement.clientWidth, t.scrollWidth]"
            )
            assert box[1] <= box[0], f"the monitor table is {box[1]} px in a {box[0]} px box"
        look(page, tmp_path, f"worklist_marked_{width}")  # and the page itself never spills
        browser.close()
