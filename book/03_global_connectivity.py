# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: landscape-book
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. Global connectivity
#
# Chapter 2 looked at each minimum on its own. Here we ask how the minima that different
# seeds find relate to each other, with three pairwise measurements per grid cell:
#
# - **Mode connectivity** $\mathrm{mc}$. Between two trained seeds $w_1, w_2$ we fit a
#   quadratic Bezier curve $\varphi(t) = (1-t)^2 w_1 + 2t(1-t)\,\theta + t^2 w_2$: only the
#   bend $\theta$ is trained, starting at the midpoint, on the cross-entropy at one random
#   $t \sim U(0,1)$ per minibatch. With $L(t)$ the *training error in %* along the curve,
#
#   $$ \mathrm{mc} = \tfrac12\big(L(0) + L(1)\big) - L(t^*), \qquad
#      t^* = \arg\max_t \big|\tfrac12(L(0)+L(1)) - L(t)\big| . $$
#
#   BatchNorm statistics, when the model has them, are recomputed over the training set at
#   every evaluated $t$: an interpolated network has no meaningful running statistics.
# - **Linear barrier**: the same formula on the straight line $(1-\alpha) w_1 + \alpha w_2$,
#   with nothing fitted (Frankle et al.).
# - **CKA similarity** of the two seeds' softmax outputs on *mixup* training inputs
#   ($\lambda \sim \mathrm{Beta}(16, 16)$, each batch mixed with a permutation of itself), and
#   the **$L_2$ distance** $\lVert w_1 - w_2 \rVert_2$ between their weights.
#
# Each number is averaged over up to `max_pairs` seed pairs of the cell (the authors used a
# single pair), and the spread over pairs is kept. Every pair is cached in the store under
# both run ids and all the settings below, so a rerun only computes what is missing.

# %% tags=["parameters"]
device: str = "auto"              # "auto": CUDA when present, else CPU
workdir: str = "../build/work/lab"  # run store shared by all chapters
max_pairs: int = 3                # seed pairs per cell; 3 seeds give 3 pairs, the authors used 1
curve_epochs: int = 100           # Bezier fitting epochs; the paper used 50 on CIFAR-10 (390 steps each)
curve_lr: float = 0.05            # SGD lr of the bend; flat for half the fit, then decayed 100-fold
curve_batch_size: int = 64        # fitting minibatch; one t per minibatch
curve_weight_decay: float = 5e-4  # L2 penalty on the curve point, as in the paper
num_points: int = 11              # evenly spaced t in [0, 1] incl. endpoints; the paper used 5
cka_samples: int = 1280           # mixup inputs shown to both seeds
cka_batches: int = 10             # mixup batches, each with its own lambda
cka_representation: str = "softmax"  # softmax (the paper), logits, or a module name
mixup_alpha: float = 16.0         # lambda ~ Beta(alpha, alpha): mostly near-even mixes
seed: int = 0                     # pair choice, fitting order and mixup draws
low_loss_quantile: float = 0.5    # the well-connected example is picked among cells this low in train loss
curves_at_once: int = 16          # curves of one architecture fitted together in one vmapped model
data_root: str = "../data"        # where torchvision datasets live (cifar/svhn only)
num_threads: int = 1              # torch CPU threads; tiny MLPs run fastest on 1, 0 keeps torch's default

# %%
import time
from pathlib import Path

import altair as alt
import pandas as pd
import torch

from landscape_utils import plotting
from landscape_utils.connectivity import select_pairs
from landscape_utils.global_metrics import (GlobalSettings, example_cells, measure_pairs, paths_table,
                                            summarize_pairs, usable_runs)
from landscape_utils.taxonomy import cell_table
from landscape_utils.utils import resolve_device

dev = resolve_device(device)
if num_threads > 0:
    torch.set_num_threads(num_threads)
tables = Path(workdir) / "tables"
axes = pd.read_json(tables / "grid_axes.json", typ="series")
load_axis, temperature_axis = axes["load_axis"], axes["temperature_axis"]
grid = pd.read_csv(tables / "grid.csv")
settings = GlobalSettings(curve_epochs=curve_epochs, curve_lr=curve_lr, curve_batch_size=curve_batch_size,
                          curve_weight_decay=curve_weight_decay, num_points=num_points, cka_samples=cka_samples,
                          cka_batches=cka_batches, cka_representation=cka_representation,
                          mixup_alpha=mixup_alpha, seed=seed)
runs_by_cell, skipped = usable_runs(grid, load_axis, temperature_axis)
pairs_by_cell = {cell: [(ids[i], ids[j]) for i, j in select_pairs(len(ids), max_pairs, seed)]
                 for cell, ids in runs_by_cell.items() if len(ids) >= 2}
print(f"{len(runs_by_cell)} cells of {load_axis} x {temperature_axis}, "
      f"{sum(map(len, pairs_by_cell.values()))} seed pairs, on {dev}")
print(f"curve: {curve_epochs} epochs, batch {curve_batch_size}, lr {curve_lr}; {num_points} points on each path; "
      f"CKA on {cka_samples} mixup inputs in {cka_batches} batches of {settings.cka_batch_size}")
if len(skipped):
    print(f"{len(skipped)} run(s) left out (diverged or non-finite loss):")
    print(skipped[["run_id", load_axis, temperature_axis, "seed", "status"]].to_string(index=False))
too_few = [cell for cell, ids in runs_by_cell.items() if len(ids) < 2]
if too_few:
    print(f"{len(too_few)} cell(s) with fewer than 2 usable seeds get NaN: {too_few}")

# %% [markdown]
# ## Fit the curves and measure every pair (or read them from the store)

# %%
t0 = time.perf_counter()
seed_of = grid.set_index("run_id")["seed"]
flat = [(cell, k, a, b) for cell, prs in pairs_by_cell.items() for k, (a, b) in enumerate(prs)]
# curves of runs that share the data and architecture are fitted together; each finished pair is
# stored at once, so an interrupted chapter resumes with the pairs it had done
records, num_computed = measure_pairs(workdir, [(a, b) for _, _, a, b in flat], settings, device=dev,
                                      curves_at_once=curves_at_once, data_root=data_root)
pair_rows, path_records = [], []
for ((lv, tv), k, run_a, run_b), rec in zip(flat, records):
    ids = {load_axis: lv, temperature_axis: tv, "pair": k}
    pair_rows.append({**ids, "run_id_a": run_a, "run_id_b": run_b, "seed_a": seed_of[run_a],
                      "seed_b": seed_of[run_b], **{m: rec[m] for m in ("mc", "linear_mc", "cka", "l2")},
                      "t_star": rec["t_star"], "linear_t_star": rec["linear_t_star"]})
    path_records.append((ids, rec))
pairs = pd.DataFrame(pair_rows, columns=[load_axis, temperature_axis, "pair", "run_id_a", "run_id_b", "seed_a",
                                         "seed_b", "mc", "linear_mc", "cka", "l2", "t_star", "linear_t_star"])
cells = summarize_pairs(pairs, list(runs_by_cell), load_axis, temperature_axis)
paths = paths_table(path_records, load_axis, temperature_axis)
tables.mkdir(parents=True, exist_ok=True)
pairs.to_csv(tables / "global_pairs.csv", index=False)
cells.to_csv(tables / "global_cells.csv", index=False)
paths.to_csv(tables / "paths.csv", index=False)
print(f"{num_computed} pair(s) computed, {len(pairs) - num_computed} read from the store, "
      f"in {time.perf_counter() - t0:.0f} s")

# %% [markdown]
# ## The global metrics over the grid
#
# Hover over a cell for the mean and the spread over pairs. The mc panels use a diverging
# scale centred on 0: red is a barrier, white is well connected, blue is a path that beats
# its endpoints.

# %%
if cells[["mc", "linear_mc", "cka", "l2"]].notna().any().any():
    panels = plotting.phase_panels(cells, ["mc", "linear_mc", "cka", "l2"], x=load_axis, y=temperature_axis,
                                   columns=2)
else:
    panels = None
    print("no cell has two usable seeds: nothing to draw")
panels

# %%
print(cells.round(3).to_string(index=False))

# %% [markdown]
# ## How to read mc
#
# - **mc < 0: a barrier.** Even the best curve the fit found rises above the endpoints'
#   error: the two seeds sit in different basins, *poorly connected*. This marks phases I
#   (not fitted) and III (fitted, yet the solutions are isolated).
# - **mc ≈ 0: well connected.** A curve along which the training error stays at the
#   endpoints' level exists: the seeds lie in one connected low-loss region (phase IV).
# - **mc > 0: the endpoints have not converged.** The curve goes *below* its endpoints,
#   so both seeds could still have gone lower (phase II). This shows up where training
#   stops early or the temperature is so high that SGD keeps rattling around the minimum.
#
# mc is in percentage points of training error, so a cell whose models fit the training set
# perfectly can only have mc ≤ 0, and an underfit cell can swing either way.
#
# **The straight line versus the curve.** The linear barrier uses the same formula on a path
# nobody optimized. The Bezier fit starts from that very line (a bend at the midpoint makes
# the quadratic curve a straight line) and only lowers the loss along it, so the curve is
# usually better connected, its mc closer to 0 than the linear barrier. The *gap* between the two is the part of the barrier that is
# only an artefact of straight-line interpolation (often a permutation of hidden units
# between seeds), which one bend of a fitted curve removes. When even the curve keeps a
# barrier, the seeds are separated by more than a symmetry.

# %%
both = pairs.dropna(subset=["mc", "linear_mc"])
lo = float(min(both.mc.min(), both.linear_mc.min(), 0.0)) if len(both) else -1.0
hi = float(max(both.mc.max(), both.linear_mc.max(), 0.0)) if len(both) else 1.0
diagonal = alt.Chart(pd.DataFrame({"v": [lo, hi]})).mark_line(color="gray", strokeDash=[4, 4]).encode(
    x="v:Q", y="v:Q")
scatter = alt.Chart(both, title="every seed pair: above the diagonal the curve beats the line").mark_point(
    filled=True, size=60).encode(
    x=alt.X("linear_mc:Q", title=plotting.METRICS["linear_mc"].label),
    y=alt.Y("mc:Q", title=plotting.METRICS["mc"].label),
    color=alt.Color(f"{load_axis}:O", title=plotting.AXIS_LABELS.get(load_axis, load_axis)),
    shape=alt.Shape(f"{temperature_axis}:O", title=plotting.AXIS_LABELS.get(temperature_axis, temperature_axis)),
    tooltip=[f"{load_axis}:O", f"{temperature_axis}:O", "seed_a:Q", "seed_b:Q",
             alt.Tooltip("mc:Q", format=".2f"), alt.Tooltip("linear_mc:Q", format=".2f"),
             alt.Tooltip("cka:Q", format=".3f")])
diagonal + scatter

# %%
if len(both):
    gap = both.mc - both.linear_mc
    print(f"Bezier mc from {both.mc.min():.2f} to {both.mc.max():.2f}; linear barrier from "
          f"{both.linear_mc.min():.2f} to {both.linear_mc.max():.2f} (percentage points of train error)")
    print(f"the curve is at least as well connected as the line in {(gap >= -1e-9).mean():.0%} of the pairs; "
          f"median gain {gap.median():.2f} points")

# %% [markdown]
# ## Along the paths: a poorly and a well connected cell
#
# The training error along the fitted curve and along the straight line, one line per
# seed pair, for the cell with the most negative mc and for the cell with mc closest to 0
# among the cells with a low training loss.

# %%
train_loss = cell_table(grid, load_axis, temperature_axis, metrics=("train_loss",)).set_index(
    [load_axis, temperature_axis])["train_loss"]
indexed = cells.set_index([load_axis, temperature_axis])
poor, well = example_cells(indexed, train_loss.reindex(indexed.index), low_loss_quantile)
examples = []
for label, cell in (("poorly connected", poor), ("well connected", well)):
    if cell is None:
        continue
    sel = paths[(paths[load_axis] == cell[0]) & (paths[temperature_axis] == cell[1])].copy()
    sel["example"] = (f"{label}: {load_axis} {cell[0]}, {temperature_axis} {cell[1]}, "
                      f"mc {indexed.loc[cell, 'mc']:.2f}")
    examples.append(sel)
if examples:
    ex = pd.concat(examples, ignore_index=True)
    ex["line"] = ex["path"] + " " + ex["pair"].astype(str)
    chart = alt.Chart(ex, width=300, height=220).mark_line(point=True).encode(
        x=alt.X("t:Q", title="t along the path"),
        y=alt.Y("train_err:Q", title="train error (%)"),
        color=alt.Color("path:N", title="path", scale=alt.Scale(domain=["bezier", "linear"],
                                                               range=["#1f77b4", "#7f7f7f"])),
        strokeDash=alt.StrokeDash("path:N", legend=None, scale=alt.Scale(domain=["bezier", "linear"],
                                                                         range=[[1, 0], [5, 3]])),
        detail="line:N",
        tooltip=["path:N", "pair:Q", alt.Tooltip("t:Q", format=".2f"), alt.Tooltip("train_err:Q", format=".2f"),
                 alt.Tooltip("train_loss:Q", format=".3f"), alt.Tooltip("test_err:Q", format=".2f")],
    ).facet(column=alt.Column("example:N", title=None)).resolve_scale(y="independent")
else:
    chart = None
    print("no cell has an mc: nothing to show")
chart

# %% [markdown]
# In the poorly connected cell the straight line climbs far above the endpoints, and the
# fitted curve, although it removes much of that rise, still keeps a bump: the barrier is
# real. In the well connected cell the line may still bulge a little, but the curve runs
# flat at the endpoints' error.
#
# ## What to take from this chapter
#
# mc separates the grid into poorly connected cells (a barrier even along the best curve)
# and well connected ones. Together with the training loss from chapter 1 and the
# sharpness from chapter 2 this is what the taxonomy of chapter 4 reads: a barrier with a
# high loss is phase I, a barrier with a low loss phase III, mc > 0 phase II, and the
# well-connected cells are phase IV, split by CKA into IV-A and IV-B. The tables
# `global_cells.csv`, `global_pairs.csv` and `paths.csv` in `workdir/tables` hold
# everything shown here.
