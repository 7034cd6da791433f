"""The default book built with the serial executor and with the default one, side by side.

Both builds run the same chapters from the same params file in fresh workdirs (nothing
cached), one after the other in this run. The serial build keeps every task in the
notebook's kernel and runs one chapter after another (``--jobs 1``); the default build uses
the params file's executor (``process`` with one worker per core in ``params/default.yaml``)
and the driver's default ``--jobs`` (independent chapters side by side). Reported:
the wall-time ratio serial / default, and each build's CPU use (user + system time of the
driver and all its children, over wall time).

    python -m benchmarks --only book_executor [--params P] [--chapters 01,02,03]
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from . import Row

REPO = Path(__file__).resolve().parents[1]


def build(params: dict, chapters: str | None, out: Path, extra: tuple[str, ...] = ()) -> tuple[float, float]:
    """Build the book without HTML; returns (wall seconds, CPU seconds of all children)."""
    path = out / "params.yaml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    cmd = [sys.executable, "-m", "landscape_utils.book", "--params", str(path), "--out", str(out / "book"),
           "--no-html", *extra] + (["--chapters", chapters] if chapters else [])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"book build failed ({' '.join(cmd)}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def variants(params: dict, root: Path) -> dict[str, dict]:
    """The params file with the serial executor and as it is, each with its own workdir."""
    out = {}
    for name in ("serial", "default"):
        p = {k: dict(v or {}) for k, v in params.items()}
        p.setdefault("shared", {})["workdir"] = str(root / name / "work")
        if name == "serial":
            for section in p.values():
                if "executor" in section:
                    section["executor"] = "serial"
            p["shared"]["executor"] = "serial"
        out[name] = p
    return out


def run(quick: bool, params_path: str = "params/default.yaml", chapters: str | None = None) -> list[Row]:
    if quick:  # the tiny book's introduction only: checks that the comparison runs
        params_path, chapters = "params/smoke.yaml", "00"
    params = yaml.safe_load((REPO / params_path).read_text())
    with tempfile.TemporaryDirectory(prefix="bench_book_", dir=REPO / "build" if (REPO / "build").exists() else None) as tmp:
        root = Path(tmp)
        # serial: every task in the kernel and one chapter after another (--jobs 1);
        # default: the params file's executor and the driver's default --jobs
        results = {name: build(p, chapters, root / name, ("--jobs", "1") if name == "serial" else ())
                   for name, p in variants(params, root).items()}
    (ws, cs), (wd, cd) = results["serial"], results["default"]
    executor = (params.get("shared") or {}).get("executor", "serial")
    return [Row("book_executor", f"{params_path} chapters {chapters or 'all'}", ws / wd,
                f"faster with executor '{executor}' and the default --jobs than all serial",
                {"serial_s": ws, "default_s": wd, "serial_cpu_pct": 100 * cs / ws,
                 "default_cpu_pct": 100 * cd / wd, "cores": os.cpu_count()})]
