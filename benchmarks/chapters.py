"""Wall time of each chapter of a book build, from the book driver's log.

The driver (``python -m landscape_utils.book``) prints ``[book] <chapter>: done in N s``
after each chapter. Either read those lines from an existing log (``--book-log``) or,
in full mode only, run the driver on a fresh work folder and read its output.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from . import Row

_DONE = re.compile(r"^\[book\] (\S+): done in (\d+(?:\.\d+)?) s")
REPO = Path(__file__).resolve().parents[1]


def parse_log(text: str) -> dict[str, float]:
    """``{chapter: seconds}`` from a driver log; a chapter seen twice keeps the last."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _DONE.match(line.strip())
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def run_book(params: str = "params/default.yaml", chapters: str | None = None,
             log_path: str | Path | None = None) -> tuple[str, int]:
    """Run the driver (no HTML) with the params' work folder redirected to a fresh
    temporary one, so every chapter computes from scratch.

    The driver's output is streamed to ``log_path`` (default: ``book.log`` in the
    temporary folder, whose path is printed first) so a long build can be followed.
    Returns (its whole output, its exit code)."""
    cfg = yaml.safe_load((REPO / params).read_text())
    tmp = Path(tempfile.mkdtemp(prefix="bench_book_"))
    cfg.setdefault("shared", {})["workdir"] = str(tmp / "work")
    p = tmp / "params.yaml"
    p.write_text(yaml.safe_dump(cfg))
    log = Path(log_path) if log_path else tmp / "book.log"
    print(f"[bench] chapters: building {params} from scratch; driver log: {log}", flush=True)
    cmd = [sys.executable, "-m", "landscape_utils.book", "--params", str(p), "--out",
           str(tmp / "out"), "--no-html"] + (["--chapters", chapters] if chapters else [])
    with open(log, "w") as fh:
        code = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT).returncode
    return log.read_text(), code


def rows(times: dict[str, float], source: str) -> list[Row]:
    """One row per chapter: its share of the total (a ratio), plus the total."""
    total = sum(times.values())
    out = [Row("chapters", name, sec / total if total else 0.0, "of the book's total wall time",
               {"seconds": sec}) for name, sec in times.items()]
    out.append(Row("chapters", "total", 1.0, f"= {total:.0f} s for {len(times)} chapter(s)",
                   {"source": source}))
    return out


def run(quick: bool = False, book_log: str | None = None, chapters: str | None = None,
        params: str = "params/default.yaml") -> list[Row]:
    """Rows from ``book_log`` if given; else (full mode only) from a fresh build. A build
    that fails still reports the chapters that finished, and names the failure."""
    if book_log:
        times = parse_log(Path(book_log).read_text())
        if not times:
            raise ValueError(f"no '[book] <chapter>: done in N s' lines in {book_log}")
        return rows(times, book_log)
    if quick:
        return []  # never build the book in quick mode
    text, code = run_book(params, chapters)
    times = parse_log(text)
    if code != 0:
        tail = "\n".join(text.splitlines()[-15:])
        print(f"[bench] chapters: the book driver exited with code {code}; timings of the "
              f"{len(times)} chapter(s) that finished follow. Last lines:\n{tail}", flush=True)
    if not times:
        raise RuntimeError("the book driver finished no chapter")
    source = f"driver run of {params}" + ("" if code == 0 else f" (exit code {code})")
    return rows(times, source)
