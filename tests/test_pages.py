"""Every page of the built smoke book in headless Chromium at 1280 px: no chart wider than
the content column, no request to an outside host, no console error, code inputs folded.

The smoke book is built once per session (shared with tests/test_book.py). Skipped when
Chromium or chromedriver are missing.
"""
from __future__ import annotations

import time

import pytest

from landscape_utils.book.driver import chapters

from test_book import build_smoke_book  # tests/ is on sys.path (pytest's default import mode)

from conftest import headless_chromium

pytestmark = pytest.mark.book
WIDTH = 1280
PAGES = ["index"] + [c.stem for c in chapters()]


@pytest.fixture(scope="module")
def smoke_html(tmp_path_factory):
    return build_smoke_book(tmp_path_factory) / "html"


@pytest.fixture(scope="module")
def browser():
    b = headless_chromium(WIDTH, 1000)
    yield b
    b.quit()


# Every chart's drawn width against the content column (the article) and its own output
# area; each code cell's input, which must be hidden behind its toggle.
_MEASURE = """
const article = document.querySelector('article.bd-article') || document.body;
const box = article.getBoundingClientRect(), css = getComputedStyle(article);
const padL = parseFloat(css.paddingLeft) || 0, padR = parseFloat(css.paddingRight) || 0;
const col = {left: box.left + padL, right: box.right - padR, width: box.width - padL - padR};  // content box
const charts = Array.from(document.querySelectorAll('.landscape-chart, .vega-embed')).map((el, i) => {
  const drawn = el.querySelector('svg, canvas') || el;
  const r = drawn.getBoundingClientRect();
  const cell = el.closest('.cell');
  const title = (el.querySelector('svg .role-title-text, svg text') || {}).textContent || '';
  return {i: i, width: Math.round(r.width), left: Math.round(r.left), right: Math.round(r.right),
          title: title.slice(0, 60), drawn: !!el.querySelector('svg, canvas'),
          cellIndex: cell ? Array.from(document.querySelectorAll('.cell')).indexOf(cell) : -1};
});
const inputs = Array.from(document.querySelectorAll('.cell .cell_input')).map(el => ({
  // folded: inside a closed <details> (Jupyter Book's hide-input toggle), or not rendered
  visible: !el.closest('details:not([open])') && (el.checkVisibility ? el.checkVisibility() :
           el.getClientRects().length > 0),
  text: el.textContent.trim().slice(0, 60)}));
return {col: {left: Math.round(col.left), right: Math.round(col.right), width: Math.round(col.width)},
        charts: charts, inputs: inputs};
"""


def _load(browser, url: str) -> dict:
    browser.get(url)
    browser.get_log("browser")  # drop the log of earlier pages
    browser.get(url)
    deadline = time.time() + 30
    state = browser.execute_script(_MEASURE)
    while time.time() < deadline and not all(c["drawn"] for c in state["charts"]):
        time.sleep(0.5)
        state = browser.execute_script(_MEASURE)
    time.sleep(0.5)
    return browser.execute_script(_MEASURE)


@pytest.mark.parametrize("page", PAGES)
def test_page_fits_reads_offline_and_folds_code(smoke_html, browser, page):
    path = smoke_html / f"{page}.html"
    assert path.exists(), f"{path} was not built"
    state = _load(browser, path.as_uri())
    problems = []
    col = state["col"]
    for c in state["charts"]:
        if not c["drawn"]:
            problems.append(f"chart {c['i']} ({c['title']!r}) was not drawn")
        elif c["width"] > col["width"] + 1 or c["right"] > col["right"] + 1:
            problems.append(f"chart {c['i']} ({c['title']!r}, cell {c['cellIndex']}) is {c['width']} px wide, "
                            f"right edge {c['right']}; the content column is {col['width']} px "
                            f"({col['left']}-{col['right']})")
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    outside = [u for u in loaded if not u.startswith(("file://", "data:", "blob:"))]
    if outside:
        problems.append(f"requests to outside hosts: {outside}")
    errors = [e["message"][:300] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    if errors:
        problems.append(f"console errors: {errors}")
    shown = [i["text"] for i in state["inputs"] if i["visible"]]
    if shown:
        problems.append(f"{len(shown)} code input(s) not folded, e.g. {shown[0]!r}")
    assert browser.execute_script("return document.querySelectorAll('article.bd-article h1').length") == 1, \
        "the page has no title heading"
    assert not problems, f"{page}.html at {WIDTH} px:\n  " + "\n  ".join(problems)


def test_the_checks_catch_a_wide_chart_and_an_unfolded_input(browser, tmp_path):
    """The measurements above on a page made to fail: a 1500 px chart and an open input."""
    page = tmp_path / "wide.html"
    page.write_text(
        '<html><body><article class="bd-article" style="width:700px;padding:0 20px">'
        '<div class="cell"><div class="cell_input">print(1)</div>'
        '<div class="landscape-chart"><svg width="1500" height="50"></svg></div></div>'
        '<div class="cell"><details><summary>show</summary><div class="cell_input">x</div></details></div>'
        '</article></body></html>')
    state = _load(browser, page.as_uri())
    assert state["col"]["width"] == 700
    assert [c["width"] for c in state["charts"]] == [1500]
    assert [i["visible"] for i in state["inputs"]] == [True, False]
