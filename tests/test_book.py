"""The book driver: params validation, and the smoke book built end to end and
rendered offline in headless Chromium."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from landscape_utils.book.driver import ParamsError, chapter_parameters, chapters, load_params

from conftest import headless_chromium

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


@pytest.mark.slow  # executes a chapter with papermill
@pytest.mark.parametrize("jobs", ["1", "2"])  # in the driver's process, and in a worker
def test_failing_chapter_keeps_its_notebook_and_is_named(tmp_path, jobs):
    # Bad values are caught before any chapter runs (exit 2, tests/test_bad_input.py); a
    # workdir that is a file only fails once chapter 1 writes to it.
    (tmp_path / "w").write_text("not a folder")
    p = write(tmp_path, f"shared: {{workdir: {tmp_path / 'w'}}}\n01_training_grid: {{num_epochs: 1}}\n")
    proc = run_driver("--params", str(p), "--out", str(tmp_path / "out"), "--chapters", "01,02", "--no-html",
                      "--jobs", jobs)
    assert proc.returncode == 1
    assert "chapter 01_training_grid failed" in proc.stderr
    assert "02_local_metrics: running" not in proc.stdout  # what reads chapter 1 never starts
    nb = json.loads((tmp_path / "out" / "notebooks" / "01_training_grid.ipynb").read_text())
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors and str(tmp_path / "w") in errors[0]["evalue"]


def build_smoke_book(tmp_path_factory) -> Path:
    """The smoke book, built once per test session (also for tests/test_pages.py, whose own
    fixture calls this: the build is found on disk under the session's temp folder).
    ``LANDSCAPE_SMOKE_BOOK=<folder>`` reuses the build in that folder instead."""
    if os.environ.get("LANDSCAPE_SMOKE_BOOK"):  # reuse a build (its folder holds out/ and driver.*)
        return Path(os.environ["LANDSCAPE_SMOKE_BOOK"]) / "out"
    base = tmp_path_factory.getbasetemp() / "smoke_book"
    if (base / "built").exists():
        return base / "out"
    base.mkdir(exist_ok=True)
    params = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    params["shared"]["workdir"] = str(base / "work")
    (base / "smoke.yaml").write_text(yaml.safe_dump(params))
    t0 = time.perf_counter()
    proc = run_driver("--params", str(base / "smoke.yaml"), "--out", str(base / "out"))
    print(f"smoke book built in {time.perf_counter() - t0:.0f} s")
    (base / "driver.out").write_text(proc.stdout)
    (base / "driver.err").write_text(proc.stderr)
    assert proc.returncode == 0, proc.stderr[-5000:]
    (base / "built").touch()
    return base / "out"


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    return build_smoke_book(tmp_path_factory)


@pytest.mark.book
def test_smoke_book_builds_every_chapter(smoke_book):
    for chap in chapters():
        assert (smoke_book / "notebooks" / f"{chap.stem}.ipynb").exists()
        assert (smoke_book / "html" / f"{chap.stem}.html").exists()
    assert (smoke_book / "html" / "index.html").exists()
    # outputs stay out of the source tree
    assert not list((REPO / "book").glob("*.ipynb"))


def _chromium():
    return headless_chromium(1300, 1800)


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


@pytest.mark.book
def test_driver_relays_progress_and_drops_only_the_tcp_warning(smoke_book):
    from landscape_utils.book.driver import TCP_WARNING

    log = (smoke_book / "book.log").read_text()
    out = (smoke_book.parent / "driver.out").read_text()
    err = (smoke_book.parent / "driver.err").read_text()
    # the package's bars reach the driver's terminal and its log: tasks done / total, elapsed, left
    for text in (log, out):
        assert re.search(r"\[book\] 01_training_grid \| training \d+ runs.*: 0/\d+ \(0%\), elapsed", text), text
        assert re.search(r"\[book\] 01_training_grid \| training .*: (\d+)/\1 \(100%\), elapsed [\d:]+, done", text)
        assert re.search(r"\[book\] 02_local_metrics \| .*(\d+)/\1 \(100%\)", text)
    assert TCP_WARNING not in err + out
    # the executed notebooks keep their own bars
    nb = json.loads((smoke_book / "notebooks" / "01_training_grid.ipynb").read_text())
    streams = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", [])
                      if o.get("name") == "stderr")
    assert "100%" in streams


def test_progress_relay_throttles_and_reads_split_updates():
    import io

    from tqdm import tqdm

    from landscape_utils.book.driver import ProgressRelay

    buf = io.StringIO()
    with tqdm(total=6, desc="Hessian (λmax, trace)", file=buf, mininterval=0, unit="run") as bar:
        for _ in range(6):
            bar.update(1)
    text = buf.getvalue() + "\nsome other stderr line 3/4 [x]\n"
    for interval, expected in ((0.0, list(range(7))), (3600.0, [0, 6])):
        lines = []
        relay = ProgressRelay("02_local_metrics", lines.append, interval=interval)
        for i in range(0, len(text), 5):  # the stream arrives in pieces
            relay.write(text[i:i + 5])
        shown = [int(re.search(r": (\d+)/6", line).group(1)) for line in lines]
        assert shown == expected, lines
        assert lines[-1].startswith("[book] 02_local_metrics | Hessian (λmax, trace): 6/6 (100%)")
        assert lines[-1].endswith("done")


def test_prepare_for_html_folds_code_and_summarizes_the_parameters():
    import nbformat

    from landscape_utils.book.driver import prepare_for_html

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# landscape-book\n\ntext"),
        nbformat.v4.new_code_cell('device: str = "auto"  # where to run\nwidth: int = 8  # hidden units\n'
                                  'seeds: list = [1, 2]  # seeds',
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(f'# Parameters\nwidth = 32\nworkdir = "{REPO}/build/work/x"\n',
                                  metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("print(width)"),
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["remove-cell"]}),
    ]
    out = prepare_for_html(nb, "params/p.yaml")
    assert len(out.cells) == 4 and len(nb.cells) == 5  # the injected cell is gone; the input is untouched
    assert out.cells[0].source.startswith("# Introduction")  # not the book's title again
    params = out.cells[1]
    assert params.cell_type == "markdown"
    assert "Set by `params/p.yaml`: `width` = 32" in params.source
    assert "| `device` | `auto` | where to run |" in params.source
    assert "| `workdir` | `build/work/x` |" in params.source  # relative to the repo, no machine path
    assert str(REPO) not in "".join(c.source for c in out.cells if c.cell_type == "markdown")
    assert out.cells[2].metadata["tags"] == ["hide-input"]
    assert out.cells[3].metadata["tags"] == ["remove-cell"]


def test_export_chapter_is_the_flat_section_papermill_reads():
    from landscape_utils.book.driver import export_chapter

    text = export_chapter(REPO / "params" / "default.yaml", "02")
    flat = yaml.safe_load(text)
    expected = load_params(REPO / "params" / "default.yaml", [REPO / "book" / "02_local_metrics.py"])
    assert flat == expected["02_local_metrics"]
    assert flat["num_samples"] == 500 and flat["device"] == "auto"  # its section and the shared keys
    assert Path(flat["workdir"]).is_absolute()
    with pytest.raises(ParamsError, match="takes one chapter"):
        export_chapter(REPO / "params" / "default.yaml", "02,03")


def readme_block(marker: str) -> str:
    """The README's fenced bash block that contains ``marker``."""
    text = (REPO / "README.md").read_text()
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        if marker in block:
            return block
    raise AssertionError(f"no bash block with {marker!r} in the README")


@pytest.mark.book
def test_readme_single_chapter_papermill_command_runs_as_printed(tmp_path):
    """The README's export + papermill commands, for chapter 00 and with outputs in a temp folder."""
    block = readme_block("--export-chapter")
    cmd = (block.replace("01_training_grid", "00_introduction").replace("--export-chapter 01", "--export-chapter 00")
           .replace("chapter01", "chapter00").replace(" build/", f" {tmp_path}/"))
    assert f"{tmp_path}/" in cmd and "00_introduction" in cmd
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", cmd], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    nb = json.loads((tmp_path / "00_introduction.ipynb").read_text())
    assert nb["metadata"]["papermill"]["parameters"]["workdir"].endswith("build/work/default")
    assert nb["metadata"]["kernelspec"]["name"] == "landscape-book"
    assert not [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]


@pytest.mark.book
def test_html_book_reads_like_an_article(smoke_book):
    html = smoke_book / "html"
    index = (html / "index.html").read_text()
    for chap in chapters():
        assert f'href="{chap.stem}.html"' in index, chap.stem
    assert "<title>Phases of learning" in index and "http-equiv=\"refresh\"" not in index
    assert "Copyright 2026" in index
    import nbformat

    from landscape_utils.book.driver import phase_diagram_output

    ch4 = nbformat.read(smoke_book / "notebooks" / "04_taxonomy.ipynb", as_version=4)
    if phase_diagram_output(ch4) is not None:  # chapter 4's grid chart, copied onto the landing page
        assert "landscape-chart" in index and "The phase diagram of this build" in index
    for chap in chapters():
        page = (html / f"{chap.stem}.html").read_text()
        title = re.search(r"<title>(.*?)</title>", page).group(1)
        assert title.count("landscape-book") <= 1, title
        assert "injected-parameters" not in page and str(smoke_book.parent) not in page, chap.stem
        assert "Parameters." in page, chap.stem
        cells = re.findall(r'<div class="(cell[ "][^"]*)"', page)
        unfolded = [c for c in cells if "tag_hide-input" not in c and "tag_remove-input" not in c]
        assert not unfolded, (chap.stem, unfolded)


@pytest.mark.book
def test_every_page_says_what_built_it(smoke_book):
    import torch

    from landscape_utils.book.driver import read_usage
    from landscape_utils.core.utils import build_info

    html = smoke_book / "html"
    for chap in chapters():
        page = (html / f"{chap.stem}.html").read_text()
        assert "What built this page." in page and f"torch {torch.__version__}" in page, chap.stem
        assert ("at commit" in page) == bool(build_info()["commit"]), chap.stem  # none outside a checkout
    assert "What built this book" in (html / "index.html").read_text()
    # chapter 1 trained every run of the grid; its table says so
    usage = read_usage(smoke_book, "01_training_grid")
    assert usage["training runs"]["computed"] == 8 and usage["training runs"]["reused"] == 0
    pairs = read_usage(smoke_book, "03_global_connectivity")["seed pairs (curve, CKA)"]
    assert (pairs["computed"], pairs["reused"]) == (4, 0)  # one pair in each of the 4 cells


def test_provenance_block_sums_a_chapters_usage_log(tmp_path):
    from landscape_utils.book.driver import provenance_markdown, read_usage, usage_log

    log = usage_log(tmp_path, "02_x")
    log.parent.mkdir(parents=True)
    log.write_text('{"what": "Hessians", "reused": 3, "computed": 1, "oldest": "2026-01-02T00:00:00+00:00"}\n'
                   '{"what": "Hessians", "reused": 2, "computed": 0, "oldest": "2025-12-31T10:00:00+00:00"}\n'
                   'not json\n')
    usage = read_usage(tmp_path, "02_x")
    assert usage == {"Hessians": {"reused": 5, "computed": 1, "oldest": "2025-12-31T10:00:00+00:00"}}
    text = provenance_markdown(usage, "cpu", "today", "What built this page.")
    assert "| Hessians | 5 | 1 | 2025-12-31 10:00:00+00:00 |" in text and "device cpu" in text
    assert "computed nothing" in provenance_markdown({}, "cpu", "today", "X")


@pytest.mark.book
def test_findings_agree_with_the_tables_they_cite(smoke_book):
    """findings.csv holds every chapter's findings, and verdicts recomputed from the build's
    own tables (not from the chapters' variables) come out the same."""
    import pandas as pd

    from landscape_utils.experiments.findings import FINDINGS_COLUMNS, read_findings
    from landscape_utils.experiments.global_metrics import small_load_poorly_connected
    from landscape_utils.experiments.local import hot_is_flatter
    from landscape_utils.runs.tables import read_grid, read_table

    work = smoke_book.parent / "work"
    found = read_findings(work)
    assert list(found.columns)[:6] == ["chapter", "key", "claim", "verdict", "evidence", "n"]
    assert list(found.columns) == list(FINDINGS_COLUMNS)
    assert set(found.verdict) <= {"holds", "fails", "inconclusive"}
    for key in ("hot_is_flatter", "small_load_poorly_connected", "best_accuracy_phase", "metric_ranking",
                "zero_loss_hurts_when_poorly_connected", "double_descent_label_noise", "phase_iii_placement_1d"):
        assert key in set(found.key), key
    assert found[found.chapter == "06_large_scale_structure"].shape[0] >= 3
    assert {"this build", "authors' grid"} <= set(found.grid)

    def recorded(key):
        row = found[(found.key == key) & (found.grid == "this build")]
        assert len(row) == 1, key
        return row.iloc[0]

    grid = read_grid(work)
    load, temp = grid.load.name, grid.temperature.name
    per_run = grid.ok_runs.merge(read_table(work, "local")[["run_id", "lambda_max"]], on="run_id")
    again = hot_is_flatter(per_run, load, temp, grid.temperature.hot_end == "large")
    assert (recorded("hot_is_flatter").verdict, recorded("hot_is_flatter").evidence) == (again.verdict, again.evidence)
    from landscape_utils.experiments.protocol import cold_end_converges
    again = cold_end_converges(grid.ok_runs, load, temp)
    assert (recorded("cold_end_converges").verdict, recorded("cold_end_converges").evidence) == (
        again.verdict, again.evidence)
    again = small_load_poorly_connected(read_table(work, "global_pairs"), load, temp)
    row = recorded("small_load_poorly_connected")
    assert (row.verdict, row.evidence) == (again.verdict, again.evidence)
    # the continuation control, from the pairs and the continued endpoints chapter 3 wrote
    import numpy as np

    from landscape_utils.experiments.global_metrics import curve_gain_over_continued, mc_survives_continuation
    pairs, continued = read_table(work, "global_pairs"), read_table(work, "continuation")
    assert (continued.steps > 0).all()
    np.testing.assert_allclose(curve_gain_over_continued(pairs, continued), pairs.gain_continued)
    again = mc_survives_continuation(pairs, load, temp)
    row = recorded("mc_survives_continuation")
    assert (row.verdict, row.evidence) == (again.verdict, again.evidence)
    # The best cell's phase, read from phase_cells.csv, against the verdict's rule.
    cells = read_table(work, "phase_cells")
    best = cells.loc[pd.to_numeric(cells.test_acc).idxmax()]
    row = recorded("best_accuracy_phase")
    assert str(best.phase) in row.evidence
    if row.verdict == "holds":
        assert best.phase in ("IV", "IV-B")
    # The protocol targets (landscape_utils.experiments.protocol), recomputed from phase_cells.csv.
    from landscape_utils.experiments.protocol import target_findings
    split = bool(cells.iv_split.iloc[0])
    for f in target_findings(cells, list(cells.phase), split, load=load, temperature=temp,
                             seed_ids=grid.runs.seed):
        row = recorded(f.key)
        assert (row.verdict, row.evidence, row.n) == (f.verdict, f.evidence, f.n), f.key


def test_chapters_start_after_the_chapters_whose_tables_they_read():
    from landscape_utils.book.driver import PREREQUISITES, prerequisites

    stems = ["00_introduction", "01_training_grid", "02_local_metrics", "03_global_connectivity",
             "04_taxonomy", "05_rugged_convexity", "06_large_scale_structure", "07_methods", "08_new"]
    needs = prerequisites([Path(f"book/{s}.py") for s in stems])
    assert needs["02_local_metrics"] == needs["03_global_connectivity"] == {"01_training_grid"}
    assert needs["04_taxonomy"] == {"01_training_grid", "02_local_metrics", "03_global_connectivity"}
    assert needs["05_rugged_convexity"] == {"04_taxonomy"}
    assert needs["06_large_scale_structure"] == {"01_training_grid", "03_global_connectivity"}
    assert needs["00_introduction"] == needs["07_methods"] == set()
    assert needs["08_new"] == set(stems[:-1])  # a chapter not listed waits for all before it
    assert prerequisites([Path("book/02_local_metrics.py")]) == {"02_local_metrics": set()}
    # every chapter of the book is listed, and the tables each reads come from its prerequisites
    from landscape_utils.book.chapters import chapter_key

    assert {chapter_key(c.stem) for c in chapters()} <= set(PREREQUISITES)
    from landscape_utils.runs.tables import TABLES

    writer = {name: spec.chapter.split("(")[-1].rstrip(")")[:2] for name, spec in TABLES.items()
              if "(" in spec.chapter}
    for chap in chapters():
        src = chap.read_text()
        for name, ch in writer.items():
            if f'read_table(workdir, "{name}")' in src:
                assert ch in PREREQUISITES[chapter_key(chap.stem)], (chap.stem, name)
