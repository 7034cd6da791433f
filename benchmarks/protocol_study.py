"""Protocol study: which CPU-scale training protocol reproduces the paper's phase table?

``python -m benchmarks.protocol_study [--quick] [--candidates a,b] [--out DIR]``

For each candidate protocol (model, widths, batch sizes, data fraction, lr and schedule,
epochs, BatchNorm) this trains the grid with the package (``runner.run_grid``, serial, one
torch thread), measures λmax of every run (``local.hessian_table``, modest settings), mc and
CKA of the seed pairs of every cell (``global_metrics.measure_pairs``), classifies the cells
(``taxonomy.classify`` on the cell means and ``taxonomy.classify_with_confidence`` on the
resampled seeds), and writes one row per candidate to ``{out}/protocol_study.csv``:

* the phases present with their cell counts (confidence labels; IV-A/IV-B only where the
  CKA separates them, else IV), and the labels of the cell means;
* per phase, the median over cells of train loss, train acc, λmax, mc, CKA and test acc;
* the best mean test accuracy, its cell and its phase;
* which of the targets 1-4 below hold (:func:`check_targets`) and the wall time of each
  stage.

Each candidate trains in its own workdir ``build/protocol_study/<name>`` (``--work``), so
a rerun resumes from the store. The pure pieces (:func:`phase_counts`,
:func:`phase_medians`, :func:`check_targets`, :func:`candidate_row`) take plain tables and
are tested in ``tests/test_protocol_study.py``.

The targets, on the phase labels of the confidence classifier:

1. the best cell's mean test accuracy is at least 0.90;
2. phases I, II, III and IV are present, each with at least two cells (IV-A and IV-B
   count as IV unless the CKA separates them, in which case each counts on its own);
3. per-phase medians follow the paper's table: train loss of I and II above that of III
   and IV, λmax of I and II above that of III and IV, and phase II trained (mean train
   accuracy of its cells at least 0.8);
4. the cell with the best mean test accuracy is in phase IV (IV-B when IV is split).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from landscape_utils.core.train import RunConfig, sgd_steps
from landscape_utils.experiments.protocol import (CONFIDENT_P, MEDIAN_METRICS, check_targets, phase_counts,
                                                  phase_medians, recipe_text, temperature_text)

REPO = Path(__file__).resolve().parents[1]
#: RunConfig's defaults: what a candidate spec leaves unset trains with these.
RUN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}

# ---------------------------------------------------------------------------- candidates
# Shared measurement settings of the study (modest: the point is the phase table's shape).
HESSIAN = dict(num_samples=1000, k=1, tol=1e-3, max_iter=60, rel_tol=0.25, max_probes=10,
               min_probes=5, sketch_size=8, seed=0)
CURVE = dict(curve_epochs=12, curve_batch_size=64, curve_lr=0.05, num_points=11,
             cka_samples=640, cka_batches=5, seed=0)

_CNN = dict(dataset="mnist1d", model="cnn", data_fraction=1.0, lr=0.05, schedule="step",
            decay_at=0.75, decay_factor=0.1, num_epochs=40, batch_norm=False,
            load_axis="width", load_values=[4, 8, 16, 32],
            temperature_axis="batch_size", temperature_values=[16, 32, 64, 256],
            num_seeds=3, train_loss_high=0.05)

#: name -> grid parameters (chapter 1's keys) plus ``train_loss_high`` (chapter 4) and
#: optional ``curve`` / ``hessian`` overrides and a one-line ``note``.
CANDIDATES: dict[str, dict[str, Any]] = {
    # the starting candidate: SmallCNN 1D on full MNIST-1D, lr 0.05 decayed once at 75%
    "cnn_lr05_step40": {**_CNN, "note": "the issue's lead"},
    # BatchNorm and lr 0.1: faster fitting at large batch, noisier small batches; batch
    # 128 instead of 256 so that the coldest column gets enough steps (32 per epoch)
    "cnn_bn_lr10_step40": {**_CNN, "batch_norm": True, "lr": 0.1,
                           "temperature_values": [16, 32, 64, 128],
                           "curve": dict(curve_epochs=20),
                           "note": "BatchNorm, lr 0.1, batch 16-128"},
    # half the data, 60 epochs: fewer samples to fit, so more cells reach a low loss
    "cnn_bn_half_step60": {**_CNN, "batch_norm": True, "lr": 0.1, "data_fraction": 0.5,
                           "num_epochs": 60, "temperature_values": [16, 32, 64, 128],
                           "curve": dict(curve_epochs=20),
                           "note": "BatchNorm, lr 0.1, half the data, 60 epochs"},
    # wider and hotter on half the data: width 64 for well connected cells, batch 8 for
    # hot ones; 48 epochs (decay at 36)
    "cnn_bn_half_w4to64_b8to128": {**_CNN, "batch_norm": True, "lr": 0.1, "data_fraction": 0.5,
                                   "num_epochs": 48, "load_values": [4, 8, 32, 64],
                                   "temperature_values": [8, 16, 64, 128],
                                   "curve": dict(curve_epochs=20),
                                   "note": "BatchNorm, lr 0.1, half the data, widths 4-64, batch 8-128"},
    # the same runs, curves fitted 3x longer (60 epochs, 1860 steps): is the barrier of the
    # wide cells real or an underfitted curve?
    "cnn_bn_half_w4to64_b8to128_curve60": {
        **_CNN, "batch_norm": True, "lr": 0.1, "data_fraction": 0.5, "num_epochs": 48,
        "load_values": [4, 8, 32, 64], "temperature_values": [8, 16, 64, 128],
        "curve": dict(curve_epochs=60), "reuse": "cnn_bn_half_w4to64_b8to128",
        "note": "as cnn_bn_half_w4to64_b8to128, curves fitted for 60 epochs"},
    # the same runs and curves, read with chapter 4's threshold of the candidate params
    # (train_loss_high 0.1: the loss floor of the fitted CNNs is 0.03-0.07)
    "cnn_bn_half_w4to64_b8to128_curve60_tl10": {
        **_CNN, "batch_norm": True, "lr": 0.1, "data_fraction": 0.5, "num_epochs": 48,
        "load_values": [4, 8, 32, 64], "temperature_values": [8, 16, 64, 128],
        "curve": dict(curve_epochs=60), "reuse": "cnn_bn_half_w4to64_b8to128",
        "train_loss_high": 0.1,
        "note": "as ..._curve60, train_loss_high 0.1"},
    # Probes of the hot end: 2 x 2 grids of the chosen candidate's extreme
    # cells (widths 32, 64; batch 8, 128), each changing one thing, to find a protocol whose
    # small-batch runs stay unconverged (phase II: mc > 0) while the wide cold runs connect.
    # constant lr 0.1 (no decay): the small-batch runs end hot
    "probe_const": {**_CNN, "batch_norm": True, "lr": 0.1, "data_fraction": 0.5,
                    "num_epochs": 48, "schedule": "constant", "load_values": [32, 64],
                    "temperature_values": [8, 128], "curve": dict(curve_epochs=60),
                    "train_loss_high": 0.1, "note": "probe: constant lr 0.1 (no decay)"},
    # ten times the weight decay: more steps (small batches) = more shrinkage
    "probe_wd5e-3": {**_CNN, "batch_norm": True, "lr": 0.1, "data_fraction": 0.5,
                     "num_epochs": 48, "weight_decay": 5e-3, "load_values": [32, 64],
                     "temperature_values": [8, 128], "curve": dict(curve_epochs=60),
                     "train_loss_high": 0.1, "note": "probe: weight decay 5e-3"},
    # a milder decay (x0.3) late (at 90%): the small batches cool less
    "probe_late_mild": {**_CNN, "batch_norm": True, "lr": 0.1, "data_fraction": 0.5,
                        "num_epochs": 48, "decay_at": 0.9, "decay_factor": 0.3,
                        "load_values": [32, 64], "temperature_values": [8, 128],
                        "curve": dict(curve_epochs=60), "train_loss_high": 0.1,
                        "note": "probe: decay x0.3 at 90%"},
    # no weight decay: can the wide cold runs reach a near-zero loss and mc = 0?
    "probe_wd0": {**_CNN, "batch_norm": True, "lr": 0.1, "data_fraction": 0.5,
                  "num_epochs": 48, "weight_decay": 0.0, "load_values": [32, 64],
                  "temperature_values": [8, 128], "curve": dict(curve_epochs=60),
                  "train_loss_high": 0.1, "note": "probe: no weight decay"},
    # the cold end pushed to batch 512 (3 steps per epoch, 144 in all): runs that stop
    # before they converge, so that a curve fitted between them beats them (mc > 0)
    "probe_b512": {**_CNN, "batch_norm": True, "lr": 0.1, "data_fraction": 0.5,
                   "num_epochs": 48, "load_values": [8, 64], "temperature_values": [512],
                   "curve": dict(curve_epochs=60), "train_loss_high": 0.1,
                   "note": "probe: batch 512 (144 steps)"},
    # The default (params/default.yaml): the late mild decay that connects the widest hot
    # cell (probe_late_mild) and the batch-512 column of unconverged runs (probe_b512),
    # measured with the book's own settings of chapters 2-3 in the book's workdir, so the
    # row reads what `make book` stored (and a rerun without it computes the same tasks)
    "default_late_mild_b8to512": {
        **_CNN, "batch_norm": True, "lr": 0.1, "data_fraction": 0.5, "num_epochs": 48,
        "decay_at": 0.9, "decay_factor": 0.3, "load_values": [8, 16, 32, 64],
        "temperature_values": [8, 16, 128, 512], "train_loss_high": 0.1,
        "book": "params/cnn_batch.yaml",
        "note": "the batch-size default before the lr protocol (params/cnn_batch.yaml), the book's settings"},
    # the default on a quarter of MNIST-1D (half the cost per epoch), its cold end at batch
    # 256 (3 steps per epoch, as 512 on half the data); the book's settings, own workdir
    "quarter_late_mild_b8to256": {
        **_CNN, "batch_norm": True, "lr": 0.1, "data_fraction": 0.25, "num_epochs": 48,
        "decay_at": 0.9, "decay_factor": 0.3, "load_values": [8, 16, 32, 64],
        "temperature_values": [8, 16, 64, 256], "train_loss_high": 0.1,
        "book": "params/cnn_batch.yaml", "book_workdir": "build/work/cnn_quarter",
        "note": "the default on a quarter of the data, batch 8-256, the book's settings"},
    # lr as the temperature at a fixed batch: every cell takes the same number of steps, so
    # neither end is under-trained by its budget; the paper's decay (x0.1 at 75%), all 4000
    # MNIST-1D samples at batch 32 (125 steps per epoch, 3750 in all); the curve is fitted at
    # a fixed, colder setting (lr 0.05, batch 64) for 1240 steps, a third of the endpoints'
    "lr_full_b32_w8to64": {**_CNN, "batch_norm": True, "lr": 0.1, "data_fraction": 1.0, "batch_size": 32,
                           "num_epochs": 30, "load_values": [8, 16, 32, 64], "temperature_axis": "lr",
                           "temperature_values": [0.02, 0.08, 0.32, 1.0], "train_loss_high": 0.1,
                           "curve": dict(curve_epochs=20, curve_batch_size=64, curve_lr=0.05),
                           "note": "lr 0.02-1.0 at batch 32, all the data, 3750 steps per run"},
    # the same on half of the data (62 steps per epoch, 2480 in all), curves of the same
    # 1240 steps: half the cost per epoch
    "lr_half_b32_w8to64": {**_CNN, "batch_norm": True, "lr": 0.1, "data_fraction": 0.5, "batch_size": 32,
                           "num_epochs": 40, "load_values": [8, 16, 32, 64], "temperature_axis": "lr",
                           "temperature_values": [0.02, 0.08, 0.32, 1.0], "train_loss_high": 0.1,
                           "curve": dict(curve_epochs=40, curve_batch_size=64, curve_lr=0.05),
                           "note": "lr 0.02-1.0 at batch 32, half the data, 2480 steps per run"},
    # the same runs, curves fitted 3x longer (120 epochs, 3720 steps, 1.5x the endpoints'
    # budget): are the barriers of the wide cells real, and does the hot end's dip show?
    "lr_half_b32_w8to64_curve120": {
        **_CNN, "batch_norm": True, "lr": 0.1, "data_fraction": 0.5, "batch_size": 32, "num_epochs": 40,
        "load_values": [8, 16, 32, 64], "temperature_axis": "lr", "temperature_values": [0.02, 0.08, 0.32, 1.0],
        "train_loss_high": 0.1, "curve": dict(curve_epochs=120, curve_batch_size=64, curve_lr=0.05),
        "reuse": "lr_half_b32_w8to64", "chosen_for": "params/default.yaml",
        "note": "as lr_half_b32_w8to64, curves of 3720 steps"},
    # Probes of the lr grid's hot end, for the paper's phase II (high train loss, mc > 0, hot):
    # 2 x 2 grids of the chosen candidate's wide cells, curves of 3720 steps as in the default,
    # read with its continuation control. lr 3.0 (x0.1 at 75%: 0.3 for the last quarter)
    # keeps the hottest runs noisier to the end; its lr 1.0 cells are the candidate's own
    # (same workdir), so only the lr 3.0 column is new
    "probe_lr_hot": {
        **_CNN, "batch_norm": True, "lr": 0.1, "data_fraction": 0.5, "batch_size": 32, "num_epochs": 40,
        "load_values": [32, 64], "temperature_axis": "lr", "temperature_values": [1.0, 3.0],
        "train_loss_high": 0.1, "curve": dict(curve_epochs=120, curve_batch_size=64, curve_lr=0.05),
        "reuse": "lr_half_b32_w8to64", "note": "probe: lr 1.0 and 3.0 (widths 32, 64)"},
    # no decay: the runs end at their own lr, so the hot ones end unconverged by noise (the
    # paper decays the lr; this asks whether its phase II needs the noise kept to the end)
    "probe_lr_const": {
        **_CNN, "batch_norm": True, "lr": 0.1, "data_fraction": 0.5, "batch_size": 32, "num_epochs": 40,
        "schedule": "constant", "load_values": [32, 64], "temperature_axis": "lr",
        "temperature_values": [0.32, 1.0], "train_loss_high": 0.1,
        "curve": dict(curve_epochs=120, curve_batch_size=64, curve_lr=0.05),
        "reuse": "lr_half_b32_w8to64", "note": "probe: constant lr 0.32 and 1.0 (no decay; widths 32, 64)"},
    # hotter without BatchNorm (started, not finished: see PROTOCOL_STUDY.md)
    "cnn_lr10_step40": {**_CNN, "lr": 0.1, "note": "hotter (lr 0.1)"},
    # the current default: MLP on a quarter of MNIST-1D, constant lr 0.1, 100 epochs
    "mlp_quarter": dict(dataset="mnist1d", model="mlp", data_fraction=0.25, lr=0.1,
                        schedule="constant", num_epochs=100, batch_norm=False,
                        load_axis="width", load_values=[4, 16, 64, 256],
                        temperature_axis="batch_size", temperature_values=[16, 32, 64, 256],
                        num_seeds=3, train_loss_high=0.1,
                        curve=dict(curve_epochs=100, curve_batch_size=64, curve_lr=0.05),
                        note="the current default (params/mlp_quarter.yaml)"),
}
#: What ``--quick`` runs: a 2 x 2 grid, 2 seeds, a few epochs (checks the plumbing only).
QUICK = dict(load_values=[4, 16], num_seeds=2, num_epochs=3)  # and the two ends of the temperature axis
QUICK_CURVE = dict(curve_epochs=1, cka_samples=80, cka_batches=2, num_points=5)
QUICK_HESSIAN = dict(num_samples=200, max_iter=10, max_probes=5, min_probes=2)

_NOT_GRID = ("note", "reuse", "curve", "hessian", "train_loss_high", "mc_neg", "mc_pos", "cka_high", "book",
             "chosen_for", "book_workdir")


# ---------------------------------------------------------------------------- pure pieces
# group_of, phase_counts, phase_medians and check_targets live in landscape_utils.experiments.protocol,
# where chapter 4 reads the same targets from the default book's own grid.


def _fmt_counts(counts: Mapping[str, int]) -> str:
    return " ".join(f"{k}:{v}" for k, v in counts.items())


def candidate_row(name: str, spec: Mapping[str, Any], cells: pd.DataFrame, labels: Sequence[object],
                  labels_of_means: Sequence[object], iv_split: bool, load: str, temperature: str,
                  seconds: Mapping[str, float]) -> dict[str, Any]:
    """One CSV row: the protocol, the phase table's summary, the targets and the times.

    ``cells`` holds one row per cell (``load``, ``temperature`` and the metric means);
    ``labels`` / ``labels_of_means`` align with its rows; ``seconds`` maps stage -> wall s.
    """
    targets = check_targets(cells, labels, iv_split, temperature=temperature)
    best_cell = ""
    if targets["best_index"] is not None:
        r = cells.loc[targets["best_index"]]
        best_cell = f"{load}={r[load]:g} {temperature}={r[temperature]:g}"
    row: dict[str, Any] = {
        "candidate": name, "note": spec.get("note", ""),
        "model": spec.get("model"), "data_fraction": spec.get("data_fraction"),
        "batch_norm": spec.get("batch_norm", False), "lr": spec.get("lr"),
        "schedule": spec.get("schedule", "constant"), "num_epochs": spec.get("num_epochs"),
        "weight_decay": spec.get("weight_decay", RUN_DEFAULTS["weight_decay"]),
        **{k: spec.get(k, RUN_DEFAULTS[k]) if spec.get("schedule") == "step" else float("nan")
           for k in ("decay_at", "decay_factor")},
        "temperature_axis": spec.get("temperature_axis", "batch_size"),
        "batch_size": spec.get("batch_size", RUN_DEFAULTS["batch_size"]),
        "load_values": " ".join(map(str, spec.get("load_values", []))),
        "temperature_values": " ".join(map(str, spec.get("temperature_values", []))),
        "num_seeds": spec.get("num_seeds"), "train_loss_high": spec.get("train_loss_high"),
        # the params file this row is measured with (``book``) or that follows it (``chosen_for``)
        "book_params": spec.get("book") or spec.get("chosen_for", ""),
        "n_cells": len(cells), "iv_split": bool(iv_split),
        "phases": _fmt_counts(phase_counts(labels)),
        "phases_of_means": _fmt_counts(phase_counts(labels_of_means)),
        "best_test_acc": targets["best_test_acc"], "best_cell": best_cell,
        "best_phase": targets["best_phase"],
    }
    for i in range(1, 5):
        row[f"target{i}"] = targets[f"target{i}"]
    row["n_targets"] = targets["n_targets"]
    for k in ("phases_missing", "loss_gap", "lambda_gap", "ii_train_acc", "placement"):
        row[k] = targets[k]
    for g in ("I", "II", "III", "IV"):
        row[f"{g}_heat_pos"] = targets["heat"].get(g, float("nan"))
    med = phase_medians(cells, labels)
    for g in ("I", "II", "III", "IV", "IV-A", "IV-B"):
        for m in MEDIAN_METRICS:
            row[f"{g}_{m}"] = med.get(g, {}).get(m, float("nan"))
    for stage, s in seconds.items():
        row[f"seconds_{stage}"] = round(float(s), 1)
    row["seconds_total"] = round(float(sum(seconds.values())), 1)
    return row


def fill_protocol_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Fill missing weight decay and step-decay columns of the CSV's rows from the
    candidates' specs (rows of unknown candidates are left as they are)."""
    table = table.copy()
    if "temperature_axis" not in table:
        table["temperature_axis"] = np.nan
    # the rows before lr axes
    table["temperature_axis"] = table["temperature_axis"].astype(object).fillna("batch_size")
    for col in ("weight_decay", "decay_at", "decay_factor"):
        if col not in table:
            table[col] = np.nan
        for i, r in table.iterrows():
            spec = CANDIDATES.get(str(r["candidate"]))
            if spec is None or pd.notna(r[col]):
                continue
            if col == "weight_decay" or spec.get("schedule") == "step":
                table.loc[i, col] = spec.get(col, RUN_DEFAULTS[col])
    if "book_params" not in table:
        table["book_params"] = np.nan
    table["book_params"] = table["book_params"].astype(object)
    for i, r in table.iterrows():  # the params file a row is measured with, or that follows it
        base = str(r.get("heldout_of")) if isinstance(r.get("heldout_of"), str) else str(r["candidate"])
        spec = CANDIDATES.get(base, {})
        if not isinstance(r["book_params"], str) and (spec.get("book") or spec.get("chosen_for")):
            table.loc[i, "book_params"] = spec.get("book") or spec.get("chosen_for")
    for col in ("endpoint_steps", "curve_steps", "seeds"):
        if col not in table:
            table[col] = np.nan
        table[col] = table[col].astype(object)
    for i, r in table.iterrows():  # rows measured before the study recorded its step budgets
        spec = CANDIDATES.get(str(r["candidate"]))
        if spec is None or pd.notna(r["endpoint_steps"]):
            continue
        table.loc[i, ["endpoint_steps", "curve_steps"]] = step_budgets(spec)
        table.loc[i, "seeds"] = f"{spec.get('first_seed', 0)}-{spec.get('first_seed', 0) + spec['num_seeds'] - 1}"
    return table


def step_budgets(spec: Mapping[str, Any]) -> tuple[str, int]:
    """The SGD steps of a candidate's runs (a range over its batch sizes) and of one curve
    fit, from its spec: ``epochs × ⌊n / batch⌋`` (the last partial minibatch is dropped)."""
    from landscape_utils.runs.runner import train_size

    n = train_size(spec.get("dataset", "mnist1d"), spec.get("data_fraction", 1.0))
    batches = (spec["temperature_values"] if spec.get("temperature_axis", "batch_size") == "batch_size"
               else [spec.get("batch_size", RUN_DEFAULTS["batch_size"])])
    steps = sorted(sgd_steps(spec["num_epochs"], n, int(b)) for b in batches)
    curve = {**CURVE, **spec.get("curve", {})}
    if spec.get("book"):
        curve = {**curve, **book_settings(spec["book"])[2]}
    text = f"{steps[0]}" if steps[0] == steps[-1] else f"{steps[0]}-{steps[-1]}"
    return text, int(sgd_steps(curve["curve_epochs"], n, int(curve["curve_batch_size"])))


def placement_text(r: pd.Series) -> str:
    """``✓ (0.83 / 0.21)``: the placement target and the heat positions of II and III."""
    v = r.get("placement", np.nan)
    if not isinstance(v, (bool, np.bool_)) and pd.isna(v):
        return "not measured"
    heat = [r.get(f"{g}_heat_pos", np.nan) for g in ("II", "III")]
    return ("✓" if bool(v) else "✗") + " (" + " / ".join("-" if pd.isna(h) else f"{h:.2f}" for h in heat) + ")"


def markdown_table(table: pd.DataFrame) -> str:
    """The study's summary table (one line per candidate) as GitHub markdown.

    ``table`` is the study's CSV (columns of :func:`candidate_row`). Medians are shown as
    ``I / II / III / IV`` (``-`` for a phase without cells).
    """
    def per_phase(r: pd.Series, m: str, fmt: str) -> str:
        vals = []
        for g in ("I", "II", "III", "IV"):
            v = r.get(f"{g}_{m}", float("nan"))
            vals.append("-" if not isinstance(v, (int, float)) or not np.isfinite(v) else format(v, fmt))
        return " / ".join(vals)

    head = ["candidate", "protocol", "seeds", "steps: endpoints / curve", "phases (cells)",
            "best test acc (cell, phase)", "train loss I/II/III/IV", "λmax I/II/III/IV", "mc I/II/III/IV",
            "CKA I/II/III/IV", "targets 1 2 3 4", "placement (heat of II / III)", "cold end converges", "mc > 0 survives continuation",
            "wall s"]

    def col(r: pd.Series, name: str, default: str = "not measured") -> str:
        v = r.get(name, np.nan)
        return default if not isinstance(v, str) and (v is None or pd.isna(v)) else str(v)

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        proto = f"{r['model']}, {recipe_text(r)}, widths {r['load_values']}, {temperature_text(r)}"
        marks = " ".join("✓" if bool(r[f"target{i}"]) else "✗" for i in range(1, 5))
        best = f"{r['best_test_acc']:.3f} ({r['best_cell']}, {r['best_phase'] if isinstance(r['best_phase'], str) else '?'})"
        steps = f"{col(r, 'endpoint_steps', '?')} / {col(r, 'curve_steps', '?')}"
        lines.append("| " + " | ".join([
            str(r["candidate"]), proto, col(r, "seeds", "0-2"), steps, str(r["phases"]), best,
            per_phase(r, "train_loss", ".3f"), per_phase(r, "lambda_max", ".1f"),
            per_phase(r, "mc", ".1f"), per_phase(r, "cka", ".2f"), marks, placement_text(r),
            col(r, "cold_end"), col(r, "continuation"), f"{r['seconds_total']:.0f}"]) + " |")
    return "\n".join(lines)


def heldout_agreement(chosen: pd.DataFrame, heldout: pd.DataFrame, spec: Mapping[str, Any],
                      base: str) -> dict[str, Any]:
    """How many cells keep their confidence label on the held-out seeds.

    ``chosen`` and ``heldout`` are the per-cell tables of the same grid on the seeds the
    protocol was chosen on and on fresh ones (columns: the two axes and ``phase``); IV-A and
    IV-B count as IV, ``undetermined`` is a label like the others, and cells without a label
    (no mc) in either are left out. Returns the CSV columns
    ``heldout_of``, ``heldout_agree`` (a fraction of the cells labelled in both),
    ``heldout_flips`` (the cells that changed, ``width 8, lr 1: old→new``) and, where
    ``chosen`` has ``p_phase``, ``heldout_confident_agree`` / ``heldout_confident_n``: the
    same fraction over the cells labelled with probability at least
    :data:`~landscape_utils.experiments.protocol.CONFIDENT_P` on the chosen seeds (a diagnostic of where the flips sit; the
    target reads ``heldout_agree``).
    """
    keys = [spec["load_axis"], spec["temperature_axis"]]
    p = chosen["p_phase"] if "p_phase" in chosen else pd.Series(float("nan"), index=chosen.index)
    both = chosen[keys + ["phase"]].assign(p_chosen=p).merge(heldout[keys + ["phase"]], on=keys,
                                                             suffixes=("_chosen", "_heldout"))

    def norm(v: object) -> str:
        text = str(v) if isinstance(v, str) else "?"
        return "IV" if text.startswith("IV") else text

    both = both[both.phase_chosen.map(norm).ne("?") & both.phase_heldout.map(norm).ne("?")]
    same = both.phase_chosen.map(norm) == both.phase_heldout.map(norm)
    flips = "; ".join(f"{keys[0]} {r[keys[0]]:g}, {keys[1]} {r[keys[1]]:g}: {r.phase_chosen}→{r.phase_heldout}"
                      for _, r in both[~same].iterrows())
    sure = pd.to_numeric(both["p_chosen"], errors="coerce") >= CONFIDENT_P
    return {"heldout_of": base, "heldout_agree": float(same.mean()) if len(both) else float("nan"),
            "heldout_flips": flips,
            "heldout_confident_agree": float(same[sure].mean()) if sure.any() else float("nan"),
            "heldout_confident_n": int(sure.sum())}


# ---------------------------------------------------------------------------- measuring
def grid_params(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Chapter 1's parameters of a candidate (the keys ``grid_from_params`` reads)."""
    return {k: v for k, v in spec.items() if k not in _NOT_GRID}


def book_settings(params_file: str) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The workdir and the Hessian and curve settings a params file gives chapters 2 and 3
    (each chapter's defaults overridden by the file), as ``HessianSettings`` and
    ``GlobalSettings`` keyword arguments, built as the chapters build them
    (``from_params``): the same store keys as the book's tasks."""
    import dataclasses

    import yaml

    from landscape_utils.book.chapters import merged_values
    from landscape_utils.experiments.global_metrics import GlobalSettings
    from landscape_utils.experiments.local import HessianSettings
    raw = yaml.safe_load((REPO / params_file).read_text())
    shared = raw.get("shared") or {}
    local = merged_values("02_local_metrics", {**shared, **(raw.get("02_local_metrics") or {})})
    glob = merged_values("03_global_connectivity", {**shared, **(raw.get("03_global_connectivity") or {})})
    hessian = dataclasses.asdict(HessianSettings.from_params(local))
    curve = dataclasses.asdict(GlobalSettings.from_params(glob))
    return REPO / shared.get("workdir", "build/work/default"), hessian, curve


def run_candidate(name: str, spec: Mapping[str, Any], work: Path, quick: bool = False,
                  device: str = "cpu") -> tuple[dict[str, Any], pd.DataFrame]:
    """Train, measure and classify one candidate; returns its CSV row and its cell table."""
    from landscape_utils.experiments.global_metrics import (GlobalSettings, continuation_runs, continuation_table,
                                                            curve_gain_over_continued, curve_steps, endpoint_steps,
                                                            interior_min,
                                                            mc_survives_continuation, measure_pairs,
                                                            summarize_pairs, usable_runs)
    from landscape_utils.experiments.local import HessianSettings, hessian_table
    from landscape_utils.experiments.protocol import cold_end_converges, threshold_stability
    from landscape_utils.experiments.taxonomy import PhaseThresholds, cell_table, classify, classify_with_confidence
    from landscape_utils.metrics.connectivity import select_pairs
    from landscape_utils.runs.runner import grid_from_params, mark_collapsed, run_grid

    spec = dict(spec)
    if quick:
        spec.update(QUICK, temperature_values=[spec["temperature_values"][0], spec["temperature_values"][-1]])
    params = grid_params(spec)
    load, temperature = params["load_axis"], params["temperature_axis"]
    # ``reuse``: train in (or read the runs of) another candidate's workdir; ``book``: the
    # book's workdir and chapter 2-3 settings of that params file
    workdir = work / (spec.get("reuse", name) + ("_quick" if quick else ""))
    hessian, curve = {**HESSIAN, **spec.get("hessian", {})}, {**CURVE, **spec.get("curve", {})}
    if spec.get("book") and not quick:
        workdir, hessian, curve = book_settings(spec["book"])  # the settings' own defaults fill the rest
        workdir = REPO / spec["book_workdir"] if spec.get("book_workdir") else workdir
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    configs = grid_from_params(params)
    # a run that ended no better than chance is failed here: every candidate trains for its
    # full budget, so such a run collapsed (lr 3.0: train loss ln 10) rather than stopped early
    grid = mark_collapsed(run_grid(configs, workdir, device=device, executor="serial", progress=False))
    seconds["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    hs = HessianSettings.from_params({**hessian, **(QUICK_HESSIAN if quick else {})})
    ok = grid[grid["status"].astype(str) != "diverged"]
    local = hessian_table(workdir, list(ok["run_id"]), hs, device=device, progress=False)
    seconds["hessian"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    gs = GlobalSettings.from_params({**curve, **(QUICK_CURVE if quick else {})})
    runs_by_cell, _ = usable_runs(grid, load, temperature)
    flat = [(cell, ids[i], ids[j]) for cell, ids in runs_by_cell.items() if len(ids) >= 2
            for i, j in select_pairs(len(ids), 3, gs.seed)]
    records, _ = measure_pairs(str(workdir), [(a, b) for _, a, b in flat], gs, device=device,
                               progress=False, executor="serial")
    pairs = pd.DataFrame([{load: c[0], temperature: c[1], "mc": r["mc"], "cka": r["cka"],
                           "linear_mc": r["linear_mc"], "t_star": r["t_star"]}
                          for (c, _, _), r in zip(flat, records)],
                         columns=[load, temperature, "mc", "cka", "linear_mc", "t_star"])
    seconds["pairs"] = time.perf_counter() - t0

    runs = grid.merge(local[["run_id", "lambda_max"]], on="run_id", how="left")
    cells = cell_table(runs, load, temperature, metrics=("train_loss", "train_acc", "test_acc",
                                                          "lambda_max"))
    gcells = summarize_pairs(pairs, list(runs_by_cell), load, temperature, metrics=("mc", "cka", "linear_mc"))
    cells = cells.merge(gcells, on=[load, temperature], how="left")
    th = PhaseThresholds.from_params(spec)
    cells["phase_of_means"] = classify(cells, th).astype(object)
    conf = classify_with_confidence(cells, pairs, runs, load=load, temperature=temperature,
                                    thresholds=th, level=0.7)
    cells["phase"] = conf["phase"].astype(object)
    cells["p_phase"] = conf["p_phase"]
    iv_split = bool(conf.attrs.get("iv_split", False))

    # the controls: does the cold end converge, and does a positive mc survive training the
    # endpoints on for the curve's own budget?
    t0 = time.perf_counter()
    seed_of = grid.set_index("run_id")["seed"]
    pairs["run_id_a"], pairs["run_id_b"] = [a for _, a, _ in flat], [b for _, _, b in flat]
    pairs["seed_a"], pairs["seed_b"] = pairs["run_id_a"].map(seed_of), pairs["run_id_b"].map(seed_of)
    pairs["curve_min_err"] = [interior_min(r["bezier"]["train_err"]) for r in records]
    ii_runs = continuation_runs(pairs, load, temperature, th.mc_pos)
    cont = continuation_table(workdir, ii_runs, gs, device=device, progress=False, executor="serial")
    pairs["gain_continued"] = curve_gain_over_continued(pairs, cont)
    continuation = mc_survives_continuation(pairs, load, temperature, mc_pos=th.mc_pos)
    cold_end = cold_end_converges(runs, load, temperature)
    stability, _ = threshold_stability(cells, th, load=load, temperature=temperature)
    seconds["controls"] = time.perf_counter() - t0

    row = candidate_row(name, spec, cells, list(cells["phase"]), list(cells["phase_of_means"]),
                        iv_split, load, temperature, seconds)
    row["iv_reason"] = conf.attrs.get("iv_reason", "")
    row["quick"] = bool(quick)
    seeds = sorted(int(v) for v in grid["seed"].unique())
    row["seeds"] = f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    steps = endpoint_steps(grid)
    row["endpoint_steps"] = (f"{int(steps.min())}" if steps.min() == steps.max()
                             else f"{int(steps.min())}-{int(steps.max())}")
    row["curve_steps"] = curve_steps(gs, int(grid["num_train"].iloc[0]))
    row["curve_recipe"] = f"{gs.curve_epochs} ep, batch {gs.curve_batch_size}, lr {gs.curve_lr:g}"
    for key, f in (("cold_end", cold_end), ("continuation", continuation), ("threshold_stability", stability)):
        row[key] = f.verdict
        row[f"{key}_evidence"] = f.evidence
    return row, cells


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.protocol_study",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a 2 x 2 grid, 2 seeds, 3 epochs per candidate")
    ap.add_argument("--candidates", default=",".join(CANDIDATES),
                    help=f"comma-separated names (default all: {','.join(CANDIDATES)})")
    ap.add_argument("--out", default="benchmarks", help="where protocol_study.csv goes (default benchmarks)")
    ap.add_argument("--work", default="build/protocol_study", help="workdirs, one per candidate")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--first-seed", type=int, default=None,
                    help="held-out confirmation: train and measure the candidates on seeds from this one on "
                         "(in the same workdir); the row is named <candidate>_seeds<N>")
    ap.add_argument("--summary", action="store_true",
                    help="print the markdown table of {out}/protocol_study.csv and stop")
    args = ap.parse_args(argv)
    if args.summary:
        print(markdown_table(pd.read_csv(Path(args.out) / "protocol_study.csv")))
        return 0

    import torch
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        ap.error(f"unknown candidate(s) {', '.join(unknown)}; known: {', '.join(CANDIDATES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / ("protocol_study_quick.csv" if args.quick else "protocol_study.csv")
    for base in names:
        name, spec = base, CANDIDATES[base]
        if args.first_seed is not None:  # the same candidate on fresh seeds, in its own workdir
            name = f"{base}_seeds{args.first_seed}"
            spec = {**spec, "first_seed": args.first_seed, "reuse": spec.get("reuse", base),
                    "note": f"held-out seeds of {base}"}
        print(f"[study] {name}: {spec.get('note', '')}", flush=True)
        row, cells = run_candidate(name, spec, Path(args.work), quick=args.quick)
        cells_dir = Path(args.work) / "cells"
        cells_dir.mkdir(parents=True, exist_ok=True)
        if args.first_seed is not None and (cells_dir / f"{base}.csv").exists():
            row.update(heldout_agreement(pd.read_csv(cells_dir / f"{base}.csv"), cells, spec, base))
        cells.to_csv(cells_dir / f"{name}{'_quick' if args.quick else ''}.csv", index=False)
        # one row per candidate: replace an earlier row of the same name, keep the others
        old = pd.read_csv(csv) if csv.exists() else pd.DataFrame()
        if len(old):
            old = old[old["candidate"] != name]
        table = fill_protocol_columns(pd.concat([old, pd.DataFrame([row])], ignore_index=True))
        table.to_csv(csv, index=False)
        keep = ["candidate", "phases", "best_test_acc", "best_phase", "target1", "target2",
                "target3", "target4", "seconds_total"]
        print(pd.DataFrame([row])[keep].to_string(index=False), flush=True)
        print(cells[[c for c in ("width", spec.get("temperature_axis", "batch_size"), "train_loss", "train_acc", "test_acc", "lambda_max",
                                 "mc", "cka", "phase_of_means", "phase", "p_phase") if c in cells]]
              .round(3).to_string(index=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
