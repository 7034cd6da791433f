"""How many steps does a Bezier curve need for a stable mc? ``python -m benchmarks.curve_budget``

``python -m benchmarks.curve_budget [--params params/default.yaml] [--fractions 0.125,0.25,0.5,1]
[--out build/curve_budget.csv] [--executor process]``

Reads the book's workdir and chapter-3 settings of a params file (the book must have run
chapters 1 and 3, or at least chapter 1), fits the curves of the same seed pairs as chapter 3
with ``curve_epochs`` scaled by each fraction (everything else unchanged), and compares each
cell's mean mc at every budget with its mean at the full budget, against the cell's seed
spread (jackknife SE over seeds, ``taxonomy.seed_jackknife``). The full budget's records are
the book's own (read from the store); the others are stored under their own keys, so a rerun
measures nothing twice.

Prints one markdown row per budget: steps per curve, the wall time of its fits, the largest
and median |mc − mc(full)| over cells, the cells whose difference exceeds 2 SE of the full
budget's mean, and the cells whose sign class (mc < −1, |mc| ≤ 1, mc > 1: the taxonomy's
thresholds) differs from the full budget's. The per-cell table goes to ``--out``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.protocol_study import REPO, book_settings


def sign_class(mc: float, threshold: float = 1.0) -> str:
    """``barrier`` (mc < −threshold), ``connected`` (|mc| ≤ threshold) or ``beats ends`` (mc > threshold)."""
    if not np.isfinite(mc):
        return "?"
    return "barrier" if mc < -threshold else "beats ends" if mc > threshold else "connected"


def compare_budgets(pairs: pd.DataFrame, load: str, temperature: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-cell mc at each budget against the full budget, and one summary row per budget.

    Args:
        pairs: one row per (budget, pair): ``epochs``, ``steps``, ``seconds`` (the budget's
            fitting time, repeated on its rows), the two axis columns, ``seed_a``, ``seed_b``, ``mc``.

    Returns:
        ``(cells, summary)``: ``cells`` has one row per (budget, cell) with ``mc``, ``mc_full``,
        ``diff`` and ``se_full`` (jackknife over seeds at the full budget); ``summary`` one row
        per budget with ``steps``, ``seconds``, ``max_abs_diff``, ``median_abs_diff``,
        ``outside_2se`` (count) and ``class_changes`` (count).
    """
    from landscape_utils.experiments.taxonomy import seed_jackknife

    full = pairs["epochs"].max()
    keys = [load, temperature]
    se = {}
    for cell, g in pairs[pairs.epochs == full].groupby(keys):
        se[cell] = seed_jackknife(g["mc"].to_numpy(float), g[["seed_a", "seed_b"]].to_numpy(object)).se
    means = pairs.groupby(["epochs", "steps", *keys])["mc"].mean().reset_index()
    ref = means[means.epochs == full].set_index(keys)["mc"]
    means["mc_full"] = [ref.get(tuple(r[k] for k in keys), np.nan) for _, r in means.iterrows()]
    means["diff"] = means["mc"] - means["mc_full"]
    means["se_full"] = [se.get(tuple(r[k] for k in keys), np.nan) for _, r in means.iterrows()]
    rows = []
    for (epochs, steps), g in means.groupby(["epochs", "steps"]):
        d = g["diff"].abs()
        rows.append({"epochs": int(epochs), "steps": int(steps),
                     "seconds": float(pairs.loc[pairs.epochs == epochs, "seconds"].iloc[0]),
                     "max_abs_diff": float(d.max()), "median_abs_diff": float(d.median()),
                     "outside_2se": int((d > 2 * g["se_full"]).sum()),
                     "class_changes": int((g["mc"].map(sign_class) != g["mc_full"].map(sign_class)).sum()),
                     "cells": len(g)})
    return means, pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.curve_budget", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params/default.yaml")
    ap.add_argument("--fractions", default="0.125,0.25,0.5,1")
    ap.add_argument("--out", default="build/curve_budget.csv")
    ap.add_argument("--executor", default="serial", help="serial | process (the book's tasks)")
    args = ap.parse_args(argv)

    import yaml

    from landscape_utils.experiments.global_metrics import (GlobalSettings, curve_steps, endpoint_steps,
                                                            measure_pairs, usable_runs)
    from landscape_utils.metrics.connectivity import select_pairs
    from landscape_utils.runs.tables import read_grid

    workdir, _, curve = book_settings(args.params)
    raw = yaml.safe_load((REPO / args.params).read_text())
    ch3 = raw.get("03_global_connectivity") or {}
    full = GlobalSettings.from_params(curve)
    grid = read_grid(workdir)
    load, temperature = grid.keys
    by_cell, _ = usable_runs(grid.runs, load, temperature)
    seed_of = grid.runs.set_index("run_id")["seed"]
    flat = [(cell, ids[i], ids[j]) for cell, ids in by_cell.items() if len(ids) >= 2
            for i, j in select_pairs(len(ids), ch3.get("max_pairs", 3), full.seed)]
    n_train = int(grid.runs["num_train"].iloc[0])
    rows = []
    for frac in sorted(float(f) for f in args.fractions.split(",")):
        s = dataclasses.replace(full, curve_epochs=max(1, int(round(frac * full.curve_epochs))))
        t0 = time.perf_counter()
        records, computed = measure_pairs(str(workdir), [(a, b) for _, a, b in flat], s, progress=True,
                                          executor=args.executor, curves_at_once=ch3.get("curves_at_once", 16))
        seconds = time.perf_counter() - t0
        print(f"[curve_budget] {s.curve_epochs} epochs: {computed} pair(s) computed in {seconds:.0f} s", flush=True)
        steps = curve_steps(s, n_train)
        rows += [{"epochs": s.curve_epochs, "steps": steps, "seconds": seconds if computed else float("nan"),
                  load: c[0], temperature: c[1], "seed_a": seed_of[a], "seed_b": seed_of[b], "mc": r["mc"]}
                 for (c, a, b), r in zip(flat, records)]
    cells, summary = compare_budgets(pd.DataFrame(rows), load, temperature)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cells.to_csv(args.out, index=False)
    print(f"endpoints: {int(endpoint_steps(grid.runs).max())} steps; "
          f"{summary.cells.iloc[0]} cells; per-cell table in {args.out}")
    print("| curve epochs | steps | fit wall s | max abs(mc − full) | median | cells beyond 2 SE | sign-class changes |")
    print("|---|---|---|---|---|---|---|")
    for _, r in summary.iterrows():
        wall = "stored" if not np.isfinite(r.seconds) else f"{r.seconds:.0f}"
        print(f"| {int(r.epochs)} | {int(r.steps)} | {wall} | {r.max_abs_diff:.2f} | {r.median_abs_diff:.2f} | "
              f"{int(r.outside_2se)} of {int(r.cells)} | {int(r.class_changes)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
