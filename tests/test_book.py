"""The book driver: params validation, and the smoke book built end to end and
rendered offline in headless Chromium."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from landscape_utils.book import ParamsError, chapter_parameters, chapters, load_params

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return p


def test_every_chapter_has_a_typed_parameters_cell_with_device_and_workdir():
    for chap in chapters():
        params = chapter_parameters(chap)
        assert {"device", "workdir"} <= set(params), chap.name
        assert all(p.annotation for p in params.values()), chap.name


def test_shipped_params_files_are_valid():
    for f in ("smoke.yaml", "default.yaml", "paper_cifar10.yaml"):
        assert load_params(REPO / "params" / f, chapters())


def test_shared_keys_reach_chapters_and_sections_override(tmp_path):
    p = write(tmp_path, "shared: {device: cpu, workdir: w}\n01_training_grid: {num_seeds: 4}\n")
    out = load_params(p, chapters())
    assert out["01_training_grid"]["num_seeds"] == 4
    assert out["01_training_grid"]["device"] == "cpu"
    assert Path(out["00_introduction"]["workdir"]).is_absolute()


@pytest.mark.parametrize("text,match", [
    ("01_training_grid: {num_sedes: 3}\n", "unknown key 'num_sedes' for chapter 01_training_grid"),
    ("shared: {devcie: cpu}\n", "unknown key 'devcie' in section 'shared'"),
    ("99_nothing: {a: 1}\n", "unknown section '99_nothing'"),
    ("01_training_grid: {num_seeds: three}\n", "key 'num_seeds' for chapter 01_training_grid should be int"),
    ("01_training_grid: {load_values: 4}\n", "should be list"),
    ("01_training_grid: {lr: true}\n", "should be float"),
    ("01_training_grid: [1, 2\n", "malformed YAML"),
    ("- a\n- b\n", "top level must be a mapping"),
])
def test_bad_params_are_rejected_with_the_key_and_chapter(tmp_path, text, match):
    with pytest.raises(ParamsError, match=match):
        load_params(write(tmp_path, text), chapters())


def test_missing_params_file(tmp_path):
    with pytest.raises(ParamsError, match="params file not found: .*nope.yaml"):
        load_params(tmp_path / "nope.yaml", chapters())


def run_driver(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "landscape_utils.book", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900)


def test_driver_exits_nonzero_before_running_on_bad_params(tmp_path):
    p = write(tmp_path, "01_training_grid: {widht: 3}\n")
    proc = run_driver("--params", str(p), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "unknown key 'widht'" in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing ran


def test_failing_chapter_keeps_its_notebook_and_is_named(tmp_path):
    # Bad values are caught before any chapter runs (exit 2, tests/test_bad_input.py); a
    # workdir that is a file only fails once chapter 1 writes to it.
    (tmp_path / "w").write_text("not a folder")
    p = write(tmp_path, f"shared: {{workdir: {tmp_path / 'w'}}}\n01_training_grid: {{num_epochs: 1}}\n")
    proc = run_driver("--params", str(p), "--out", str(tmp_path / "out"), "--chapters", "01", "--no-html")
    assert proc.returncode == 1
    assert "chapter 01_training_grid failed" in proc.stderr
    nb = json.loads((tmp_path / "out" / "notebooks" / "01_training_grid.ipynb").read_text())
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors and str(tmp_path / "w") in errors[0]["evalue"]


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    """The smoke book, built once per test session into a temp folder."""
    tmp = tmp_path_factory.mktemp("smoke")
    params = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    params["shared"]["workdir"] = str(tmp / "work")
    (tmp / "smoke.yaml").write_text(yaml.safe_dump(params))
    t0 = time.perf_counter()
    proc = run_driver("--params", str(tmp / "smoke.yaml"), "--out", str(tmp / "out"))
    print(f"smoke book built in {time.perf_counter() - t0:.0f} s")
    assert proc.returncode == 0, proc.stderr[-5000:]
    return tmp / "out"


@pytest.mark.book
def test_smoke_book_builds_every_chapter(smoke_book):
    for chap in chapters():
        assert (smoke_book / "notebooks" / f"{chap.stem}.ipynb").exists()
        assert (smoke_book / "html" / f"{chap.stem}.html").exists()
    assert (smoke_book / "html" / "index.html").exists()
    # outputs stay out of the source tree
    assert not list((REPO / "book").glob("*.ipynb"))


def _chromium():
    chrome, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chrome and driver):
        pytest.skip("headless Chromium not installed (Debian packages chromium, chromium-driver); "
                    "`make test` installs them when it can")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--window-size=1300,1800"):
        opts.add_argument(a)
    opts.binary_location = chrome
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


@pytest.mark.book
@pytest.mark.parametrize("page,needs_math", [("01_training_grid.html", False), ("00_introduction.html", True)])
def test_book_renders_offline_in_headless_chromium(smoke_book, page, needs_math):
    browser = _chromium()
    try:
        browser.get((smoke_book / "html" / page).as_uri())
        deadline = time.time() + 30
        drawn = 0
        while time.time() < deadline:
            drawn = browser.execute_script(
                "return document.querySelectorAll('.landscape-chart svg, .landscape-chart canvas').length")
            math = browser.execute_script("return document.querySelectorAll('mjx-container').length")
            if (drawn or not page.startswith("01")) and (math or not needs_math):
                break
            time.sleep(0.5)
        if page.startswith("01"):
            assert drawn >= 1, "no chart was drawn"
        if needs_math:
            assert math >= 1, "MathJax did not typeset"
        js_errors = [e for e in browser.get_log("browser")
                     if e["level"] == "SEVERE" and e.get("source") == "javascript"]
        assert not js_errors, js_errors
        loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        outside = [u for u in loaded if not u.startswith("file://")]
        assert not outside, f"resources from outside hosts: {outside}"
        html = (smoke_book / "html" / page).read_text()
        import re
        refs = re.findall(r'<(?:script|img|iframe)[^>]+src="(https?://[^"]+)"', html)
        refs += re.findall(r'<link[^>]+href="(https?://[^"]+)"[^>]*rel="stylesheet"', html)
        assert not refs, refs
    finally:
        browser.quit()
