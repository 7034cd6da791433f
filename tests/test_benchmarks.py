"""The benchmark suite keeps running: quick mode prints one ratio line per comparison.

Not a timed assertion: ratios depend on the machine and its load.
"""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RATIO = re.compile(r"^\[bench\] (\w+) (.+): (\d+(?:\.\d+)?|inf|nan)x ")


def test_book_log_parser():
    if str(REPO) not in sys.path:  # benchmarks/ is a top-level package beside tests/
        sys.path.insert(0, str(REPO))
    from benchmarks.chapters import parse_log, rows

    log = ("[book] 01_training_grid: running\n[book] 01_training_grid: done in 150 s\n"
           "[book] 02_local_metrics: done in 50 s\nnoise [book] x: done in 3 s\n")
    times = parse_log(log)
    assert times == {"01_training_grid": 150.0, "02_local_metrics": 50.0}
    shares = {r.case: r.ratio for r in rows(times, "log")}
    assert shares["01_training_grid"] == pytest.approx(0.75) and shares["total"] == 1.0


@pytest.mark.slow  # every benchmark, at its smallest size
def test_quick_benchmarks_print_one_ratio_line_per_comparison(tmp_path):
    log = tmp_path / "book.log"
    log.write_text("[book] 00_introduction: running\n[book] 00_introduction: done in 4 s\n"
                   "[book] 01_training_grid: done in 12 s\n")
    out_json = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--book-log", str(log), "--json", str(out_json)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [m for m in map(RATIO.match, proc.stdout.splitlines()) if m]
    groups = {m.group(1) for m in lines}
    expected = {"population", "population_lr", "curves", "bn_recalibration", "allocator", "headroom", "lambda_max", "trace", "chapters", "scaling", "end_to_end",
                "book_executor", "data_cache"}
    if importlib.util.find_spec("curvlinops") is not None:  # a benchmark-only dependency (.[bench])
        expected.add("curvlinops")
    else:
        assert "[bench] curvlinops: skipped (curvlinops-for-pytorch is not installed" in proc.stdout
    assert groups == expected, proc.stdout
    for m in lines:
        assert float(m.group(3)) > 0, m.group(0)
    # exactly one line per compared case, and the machine is named
    cases = [(m.group(1), m.group(2)) for m in lines]
    assert len(cases) == len(set(cases))
    assert proc.stdout.startswith("[bench] machine: ")
    assert out_json.exists()


def test_curvlinops_group_is_skipped_with_a_message_when_not_installed(monkeypatch, capsys):
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from benchmarks.__main__ import main

    monkeypatch.setitem(sys.modules, "curvlinops", None)  # `import curvlinops` raises ImportError
    assert main(["--quick", "--only", "curvlinops"]) == 0
    out = capsys.readouterr().out
    assert "[bench] curvlinops: skipped (curvlinops-for-pytorch is not installed" in out
    assert "landscape_utils[bench]" in out and not any(RATIO.match(line) for line in out.splitlines())
