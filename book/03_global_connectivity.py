# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: landscape-book (.venv)
#     language: python
#     name: landscape-book
#   language_info:
#     codemirror_mode:
#       name: ipython
#       version: 3
#     file_extension: .py
#     mimetype: text/x-python
#     name: python
#     nbconvert_exporter: python
#     pygments_lexer: ipython3
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
#
# A fourth measurement looks at each run on its own: **monotonic linear interpolation**
# (MLI; Goodfellow et al. 2015, Lucas et al. 2021). The train loss is evaluated along the
# straight line $(1-\alpha)\,\theta_0 + \alpha\,\theta_T$ from the run's initialization to
# its solution (BatchNorm recalibrated at every $\alpha$); a *bump* is a rise of the loss
# along the line by more than `mli_eps`, and we record the largest rise. Lucas et al. report
# that SGD-trained networks usually interpolate monotonically; a bump means the solution
# lies beyond a ridge, seen from where training started.

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
curves_at_once: int = 16          # pairs per task; their curves are fitted in one vmapped model where that is faster
data_root: str = "../data"        # where torchvision datasets live (cifar/svhn only)
mli_num_points: int = 11          # MLI: evenly spaced α in [0, 1] on the line init -> solution
mli_eps: float = 1e-3             # MLI: a rise of the train loss above this (nats) counts as a bump
executor: str = "process"         # serial | process | ray: a task is a group of curves, or one MLI line
workers: int = 0                  # process executor: worker processes; 0 means one per GPU slot, or per core
workers_per_gpu: int = 1          # process executor on GPUs: workers sharing one GPU (each worker is pinned to one)
ray_address: str = ""             # ray executor: empty starts a local Ray; "auto" joins this node's cluster; or host:port
ray_num_gpus: float = 0.0         # ray executor: GPUs per task; a fraction shares a GPU
ray_num_cpus: float = 1.0         # ray executor: CPUs per task
max_retries: int = 3              # ray executor: retries of a task whose worker dies, or that hits an I/O error or CUDA OOM
num_threads: int = 1              # torch CPU threads in this kernel (the serial executor); 0 keeps torch's default

# %%
from dataclasses import replace

import altair as alt
import pandas as pd
import torch

from landscape_utils.core import plotting
from landscape_utils.core.settings import executor_options
from landscape_utils.core.utils import resolve_device
from landscape_utils.experiments.findings import difference_verdict, majority_verdict, show_findings, write_findings
from landscape_utils.experiments.global_metrics import (
    GlobalSettings, MLISettings, continuation_runs, continuation_table, curve_gain_over_continued, curve_steps,
    endpoint_steps, example_cells, interior_min, mc_survives_continuation, measure_pairs, mli_table, paths_table,
    positive_mc_cells, small_load_poorly_connected, summarize_pairs, usable_runs)
from landscape_utils.experiments.taxonomy import PhaseThresholds, cell_table
from landscape_utils.metrics.connectivity import select_pairs
from landscape_utils.runs.tables import read_grid, write_table

dev = resolve_device(device)
if num_threads > 0:
    torch.set_num_threads(num_threads)
grid = read_grid(workdir)
load_axis, temperature_axis = grid.keys
settings = GlobalSettings.from_params(globals())  # each parameter fills the field of its name
mli_settings = MLISettings.from_params(globals(), prefix="mli_")  # mli_num_points, mli_eps
options = executor_options(globals())  # executor, workers, ray_*: as in every chapter
runs_by_cell, skipped = usable_runs(grid.runs, load_axis, temperature_axis)
pairs_by_cell = {cell: [(ids[i], ids[j]) for i, j in select_pairs(len(ids), max_pairs, seed)]
                 for cell, ids in runs_by_cell.items() if len(ids) >= 2}
print(f"{len(runs_by_cell)} cells of {load_axis} x {temperature_axis}, "
      f"{sum(map(len, pairs_by_cell.values()))} seed pairs, on {dev} ({executor} executor)")
run_steps = endpoint_steps(grid.runs)
print(f"curve: {curve_epochs} epochs, batch {curve_batch_size}, lr {curve_lr}: "
      f"{curve_steps(settings, int(grid.runs.num_train.iloc[0]))} steps; the endpoints trained for "
      f"{run_steps.min()}" + (f" to {run_steps.max()}" if run_steps.max() > run_steps.min() else "")
      + f" steps; {num_points} points per path")
print(f"CKA on {cka_samples} mixup inputs in {cka_batches} batches of {settings.cka_batch_size}")
if len(skipped):
    print(f"{len(skipped)} run(s) left out (diverged or non-finite loss):")
    print(skipped[["run_id", load_axis, temperature_axis, "seed", "status"]].to_string(index=False))
too_few = [cell for cell, ids in runs_by_cell.items() if len(ids) < 2]
if too_few:
    print(f"{len(too_few)} cell(s) with fewer than 2 usable seeds get NaN, e.g. {too_few[0]}")

# %% [markdown]
# ## Fit the curves and measure every pair (or read them from the store)

# %%
seed_of = grid.runs.set_index("run_id")["seed"]
flat = [(cell, k, a, b) for cell, prs in pairs_by_cell.items() for k, (a, b) in enumerate(prs)]
# curves of runs that share the data and architecture are fitted together, in tasks; each
# finished pair is stored at once, so an interrupted chapter resumes with the pairs it had done
records, num_computed = measure_pairs(workdir, [(a, b) for _, _, a, b in flat], settings,
                                      curves_at_once=curves_at_once, device=dev, data_root=data_root, **options)
ids = [{load_axis: lv, temperature_axis: tv, "pair": k} for (lv, tv), k, _, _ in flat]
pairs = pd.DataFrame([{**i, "run_id_a": a, "run_id_b": b, "seed_a": seed_of[a], "seed_b": seed_of[b],
                       **{m: rec[m] for m in ("mc", "linear_mc", "cka", "l2", "t_star", "linear_t_star")},
                       "curve_min_err": interior_min(rec["bezier"]["train_err"])}
                      for i, (_, _, a, b), rec in zip(ids, flat, records)],
                     columns=[load_axis, temperature_axis, "pair", "run_id_a", "run_id_b", "seed_a",
                              "seed_b", "mc", "linear_mc", "cka", "l2", "t_star", "linear_t_star",
                              "curve_min_err"])
cells = summarize_pairs(pairs, list(runs_by_cell), load_axis, temperature_axis)
paths = paths_table(list(zip(ids, records)), load_axis, temperature_axis)
for name, table in (("global_pairs", pairs), ("global_cells", cells), ("paths", paths)):
    write_table(workdir, name, table)
print(f"{num_computed} pair(s) computed, {len(pairs) - num_computed} read from the store")

# %% [markdown]
# ## The global metrics over the grid
#
# Hover over a cell for the mean and the spread over pairs. The mc panels use a diverging
# scale centred on 0 and symmetric about it: red is a barrier, white is well connected,
# blue is a path that beats its endpoints.

# %%
shown = [m for m in ("mc", "linear_mc", "cka", "l2") if cells[m].notna().any()]
if not shown:
    print("no cell has two usable seeds: nothing to draw")
plotting.phase_panels(cells, shown, x=load_axis, y=temperature_axis) if shown else None

# %% [markdown]
# ## How to read mc
#
# - **mc < 0: a barrier.** Even the best curve the fit found rises above the endpoints'
#   error: the two seeds sit in different basins, *poorly connected*. In the paper this
#   marks phases I (not fitted) and III (fitted, yet the solutions are isolated).
# - **mc ≈ 0: well connected.** A curve along which the training error stays at the
#   endpoints' level exists: the seeds lie in one connected low-loss region (phase IV).
# - **mc > 0: the endpoints have not converged.** The curve goes *below* its endpoints,
#   so both seeds could still have gone lower (phase II). The paper expects this where
#   training stops early or the temperature is so high that SGD keeps rattling around.
#
# mc is in percentage points of training error, so a cell whose models fit the training set
# perfectly can only have mc ≤ 0, and an underfit cell can swing either way.
#
# **The straight line versus the curve.** The linear barrier uses the same formula on a path
# nobody optimized. The Bezier fit starts from that very line (a bend at the midpoint makes
# the quadratic curve a straight line) and only lowers the loss along it, so the curve is
# expected to be at least as well connected as the line: points on or above the diagonal
# below. The *gap* between the two is the part of the barrier that is only an artefact of
# straight-line interpolation (often a permutation of hidden units between seeds), which
# one bend of a fitted curve removes. When even the curve keeps a barrier, the seeds are
# separated by more than a symmetry.

# %%
both = pairs.dropna(subset=["mc", "linear_mc"])
lo, hi = min(both.mc.min(), both.linear_mc.min(), 0.0), max(both.mc.max(), both.linear_mc.max(), 0.0)
diagonal = alt.Chart(pd.DataFrame({"v": [lo, hi]})).mark_line(color="gray", strokeDash=[4, 4]).encode(
    x="v:Q", y="v:Q")
scatter = alt.Chart(both).mark_point(filled=True, size=60).encode(
    x=alt.X("linear_mc:Q", title=plotting.style("linear_mc").label),
    y=alt.Y("mc:Q", title=plotting.style("mc").label),
    color=plotting.line_color(f"{load_axis}:O", grid.load.title, sort=grid.load_values, scheme="viridis"),
    shape=alt.Shape(f"{temperature_axis}:O", sort=grid.temperature_values,
                    legend=plotting.categorical_legend(grid.temperature.title)),
    tooltip=[f"{load_axis}:O", f"{temperature_axis}:O", "seed_a:Q", "seed_b:Q",
             alt.Tooltip("mc:Q", format=".2f"), alt.Tooltip("linear_mc:Q", format=".2f"),
             alt.Tooltip("cka:Q", format=".3f")])
(diagonal + scatter).properties(width=plotting.fit_width(1), height=260, title=alt.TitleParams(
    "every seed pair: curve against line", subtitle="dashed: the diagonal, where the curve does no better"))

# %% [markdown]
# ## Along the paths: the lowest mc and the mc nearest 0
#
# The training error along the fitted curve and along the straight line, one line per
# seed pair, for the cell with the most negative mc (the candidate for a poorly connected
# cell) and for the cell with mc closest to 0 among the cells with a low training loss (the
# candidate for a well connected one). Where a barrier is real, the curve keeps a bump above
# the endpoints' error; in a well connected cell the curve runs at the endpoints' error,
# whatever the line does. The panel titles give each cell's mc.

# %%
indexed = cells.set_index(grid.keys)
train_loss = cell_table(grid.runs, load_axis, temperature_axis, metrics=("train_loss",)).set_index(
    grid.keys)["train_loss"]
poor, well = example_cells(indexed, train_loss.reindex(indexed.index), low_loss_quantile)
examples = [paths[(paths[load_axis] == c[0]) & (paths[temperature_axis] == c[1])].assign(
    example=f"{label}: {load_axis} {c[0]:g}, {temperature_axis} {c[1]:g}, mc {indexed.loc[c, 'mc']:.2f}")
    for label, c in (("lowest mc", poor), ("mc nearest 0, low loss", well)) if c is not None]
chart = None
if examples:
    ex = pd.concat(examples, ignore_index=True)
    ex["line"] = ex.path + " " + ex.pair.astype(str)
    chart = alt.Chart(ex, width=plotting.fit_width(2), height=200).mark_line(point=True).encode(
        x=alt.X("t:Q", title="t along the path"),
        y=alt.Y("train_err:Q", title="train error (%)"),
        color=plotting.path_color(), strokeDash=plotting.path_dash(), detail="line:N",
        tooltip=["path:N", "pair:Q", alt.Tooltip("t:Q", format=".2f"), alt.Tooltip("train_err:Q", format=".2f"),
                 alt.Tooltip("train_loss:Q", format=".3f"), alt.Tooltip("test_err:Q", format=".2f")],
    ).facet(column=alt.Column("example:N", title=None, header=alt.Header(labelLimit=0))).resolve_scale(
        y="independent")
else:
    print("no cell has an mc: nothing to show")
chart

# %% [markdown]
# ## From initialization to solution (MLI)
#
# Every usable run's train loss along the straight line from its initialization to its
# solution. Left: the largest rise of the loss along the line, averaged over seeds (0 when
# the loss falls all the way); right: the fraction of seeds whose line has a bump.

# %%
mli = mli_table(workdir, [r for ids in runs_by_cell.values() for r in ids],
                mli_settings, device=dev, data_root=data_root, **options)
mli_runs = grid.runs.merge(mli.assign(mli_non_monotonic=~mli.mli_monotonic.astype(bool)), on="run_id")
mli_cells = cell_table(mli_runs.astype({"mli_non_monotonic": float}), load_axis, temperature_axis,
                       metrics=("mli_max_bump", "mli_non_monotonic"))
plotting.phase_panels(mli_cells, ["mli_max_bump", "mli_non_monotonic"], x=load_axis, y=temperature_axis)

# %% [markdown]
# ## Control: does a positive mc survive training the endpoints on?
#
# A curve is fitted for its own step budget (printed at the top) *after* its endpoints
# finished training. Where mc > 0, the curve's best point beats its endpoints; that is the
# paper's sign of phase II (endpoints that SGD's noise kept from converging), but it is also
# what a curve must show whenever its extra steps alone would have taken the endpoints
# lower. The control separates the two: every endpoint of a cell with mc above the
# taxonomy's threshold is trained on with exactly the curve's recipe (its lr schedule, batch,
# weight penalty, data order and number of steps) and measured as the curve's points are.
# mc > 0 counts as evidence of the paper's phase II only where the curve's best point still
# beats the *continued* endpoints (the gain below is $\tfrac12(L'_a + L'_b) - \min_t L(t)$
# in points of train error), decided per cell with a jackknife over its seeds.

# %%
mc_pos = PhaseThresholds().mc_pos  # chapter 4's threshold for mc > 0
positive = list(positive_mc_cells(pairs, load_axis, temperature_axis, mc_pos).index)
continued_runs = continuation_runs(pairs, load_axis, temperature_axis, mc_pos)
continued = continuation_table(workdir, continued_runs, settings, device=dev, data_root=data_root, **options)
pairs["gain_continued"] = curve_gain_over_continued(pairs, continued)
write_table(workdir, "global_pairs", pairs)
write_table(workdir, "continuation", continued)
if positive:
    shown_cont = pairs[pairs.set_index([load_axis, temperature_axis]).index.isin(positive)]
    summary = shown_cont.groupby([load_axis, temperature_axis]).agg(
        mc=("mc", "mean"), curve_min_err=("curve_min_err", "mean"), gain_continued=("gain_continued", "mean"),
        gain_sd=("gain_continued", "std"), pairs=("mc", "size")).reset_index()
    before_after = continued.merge(grid.runs[["run_id", load_axis, temperature_axis]], on="run_id").groupby(
        [load_axis, temperature_axis])[["train_err_before", "train_err_after"]].mean().reset_index()
    print(f"{len(positive)} cell(s) with mean mc > {mc_pos:g}; their {len(continued_runs)} endpoints trained on "
          f"for {int(continued.steps.iloc[0])} steps each (train error in %, means over seeds and pairs):")
    print(summary.merge(before_after, on=[load_axis, temperature_axis]).round(2).to_string(index=False))
else:
    print(f"no cell has a mean mc above {mc_pos:g}: nothing to continue")

# %% [markdown]
# ## What this grid shows
#
# mc is meant to separate poorly connected cells (a barrier even along the best curve) from
# well connected ones. Together with the training loss of chapter 1 and the sharpness of
# chapter 2 this is what the taxonomy of chapter 4 reads: in the paper, a barrier with a
# high loss is phase I, a barrier with a low loss phase III, mc > 0 phase II, and the
# well-connected cells are phase IV, split by CKA into IV-A and IV-B. The findings below
# test the paper's placement of the poorly connected cells (each temperature decided by a
# jackknife over the seeds its pairs share, with t quantiles), describe the curve against
# the line (the curve is fitted to beat it, so that cannot fail and is not a test), and
# test the MLI property, on this build's grid. The tables `global_cells.csv`,
# `global_pairs.csv` and `paths.csv` in `workdir/tables` hold everything shown here.

# %%
gap = difference_verdict(both.mc - both.linear_mc, 0.0, expect="greater",
                         names=("mc − linear barrier", "no gain"))
findings = [
    small_load_poorly_connected(pairs, load_axis, temperature_axis),
    mc_survives_continuation(pairs, load_axis, temperature_axis, mc_pos=mc_pos),
    replace(gap.finding("curve_beats_line", "The fitted Bezier curve is better connected than the "
                        "straight line (mc above the linear barrier, per seed pair; a "
                        "description: the curve is trained to beat the line)",
                        kind="description"),
            n=f"{len(both)} seed pairs"),
    majority_verdict(list(mli.mli_monotonic.astype(bool)), what="runs").finding(
        "mli_monotonic", f"Most runs' train loss falls monotonically along the line from "
        f"initialization to solution (no rise above {mli_eps:g} nats)"),
]
write_findings(workdir, "03_global_connectivity", findings)
show_findings(findings)
