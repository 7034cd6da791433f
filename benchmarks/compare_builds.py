"""Did a speed-up change what the book finds? ``python -m benchmarks.compare_builds BEFORE AFTER``

``BEFORE`` and ``AFTER`` are two built books' workdirs (for example ``build/work/default`` of
two fresh clones), or their ``tables`` folders. A cut to the default book must leave every
finding's verdict as it was, or the change must be explained; this lists what moved:

* every finding (chapter, key, and its position among rows of the same key) whose verdict or
  Holm-corrected verdict differs, with both evidences;
* every cell whose phase label differs (``phase_cells.csv``), with the phase counts of both;
* per cell, the mean mc of its seed pairs before and after, and the difference in units of
  the seed spread (the before build's SE over pairs, ``mc_std / sqrt(n_pairs)``), from
  ``global_pairs.csv``.

Prints markdown; exits 0 whatever it finds (it is a report, not a check).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def tables_dir(path: str | Path) -> Path:
    """``path`` itself when it holds ``findings.csv``, else ``path/tables``; names the missing file."""
    path = Path(path)
    for candidate in (path, path / "tables"):
        if (candidate / "findings.csv").exists():
            return candidate
    raise FileNotFoundError(f"no findings.csv in {path} or {path / 'tables'}: is it a built book's workdir?")


def finding_changes(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Findings whose verdict or corrected verdict differs, matched on (chapter, key, i):
    ``i`` numbers the rows of one key within a chapter (a chapter may judge a claim per grid).
    A finding present in one build only is listed with NaN on the other side."""
    frames = []
    for f in (before, after):
        f = f.copy()
        f["i"] = f.groupby(["chapter", "key"]).cumcount()
        if "corrected_verdict" not in f:
            f["corrected_verdict"] = np.nan
        frames.append(f[["chapter", "key", "i", "verdict", "corrected_verdict", "evidence"]])
    m = frames[0].merge(frames[1], on=["chapter", "key", "i"], how="outer", suffixes=("_before", "_after"))
    changed = (m.verdict_before.astype(str) != m.verdict_after.astype(str)) | (
        m.corrected_verdict_before.astype(str) != m.corrected_verdict_after.astype(str))
    return m[changed].reset_index(drop=True)


def phase_changes(before: pd.DataFrame, after: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Cells (``keys``: the two axis columns) whose ``phase`` differs."""
    m = before[keys + ["phase"]].merge(after[keys + ["phase"]], on=keys, how="outer",
                                       suffixes=("_before", "_after"))
    return m[m.phase_before.astype(str) != m.phase_after.astype(str)].reset_index(drop=True)


def mc_shift(before: pd.DataFrame, after: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per cell: mean mc over its pairs before and after, and (after − before) / SE, where SE
    is the before build's std over pairs / sqrt(pairs) (NaN for a cell with one pair)."""
    b = before.groupby(keys).mc.agg(["mean", "std", "count"]).rename(columns={"mean": "mc_before"})
    a = after.groupby(keys).mc.agg(["mean"]).rename(columns={"mean": "mc_after"})
    out = b.merge(a, left_index=True, right_index=True, how="outer")
    out["shift"] = out.mc_after - out.mc_before
    out["shift_in_se"] = out["shift"] / (out["std"] / np.sqrt(out["count"]))
    return out.reset_index()[keys + ["mc_before", "mc_after", "shift", "shift_in_se"]]


def report(before_dir: str | Path, after_dir: str | Path) -> str:
    b, a = tables_dir(before_dir), tables_dir(after_dir)
    lines = [f"before: {b}", f"after:  {a}", ""]
    text = {"chapter": str, "key": str, "verdict": str, "corrected_verdict": str}
    fb, fa = (pd.read_csv(d / "findings.csv", dtype=text) for d in (b, a))
    ch = finding_changes(fb, fa)
    lines.append(f"## Findings: {len(ch)} of {max(len(fb), len(fa))} changed")
    for _, r in ch.iterrows():
        lines.append(f"- {r.chapter} `{r.key}` [{r.i}]: {r.verdict_before} ({r.corrected_verdict_before}) "
                     f"→ {r.verdict_after} ({r.corrected_verdict_after})")
        lines.append(f"  - before: {r.evidence_before}")
        lines.append(f"  - after: {r.evidence_after}")
    keys = None
    if (b / "phase_cells.csv").exists() and (a / "phase_cells.csv").exists():
        pb, pa = pd.read_csv(b / "phase_cells.csv"), pd.read_csv(a / "phase_cells.csv")
        keys = list(pb.columns[:2])  # the load and temperature axes lead the table
        pc = phase_changes(pb, pa, keys)
        lines += ["", f"## Phases: {len(pc)} of {len(pb)} cells changed",
                  f"counts before {pb.phase.value_counts().to_dict()}, after {pa.phase.value_counts().to_dict()}"]
        lines += [f"- {dict(zip(keys, r[keys]))}: {r.phase_before} → {r.phase_after}" for _, r in pc.iterrows()]
    if keys and (b / "global_pairs.csv").exists() and (a / "global_pairs.csv").exists():
        shift = mc_shift(pd.read_csv(b / "global_pairs.csv"), pd.read_csv(a / "global_pairs.csv"), keys)
        lines += ["", "## mc per cell (mean over pairs; shift in units of the before build's SE over pairs)", "",
                  shift.to_markdown(index=False, floatfmt=".3g")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.compare_builds", description=__doc__.splitlines()[0])
    ap.add_argument("before", help="the first build's workdir (or its tables folder)")
    ap.add_argument("after", help="the second build's workdir (or its tables folder)")
    args = ap.parse_args(argv)
    print(report(args.before, args.after))
    return 0


if __name__ == "__main__":
    sys.exit(main())
