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
# # 4. The taxonomy: phases of learning
#
# Chapters 1-3 measured, for every cell of the load × temperature grid, how well the models
# fit and generalize, how sharp their minima are, and how the minima of different seeds
# connect. Here we read those numbers together and assign every cell a **phase**
# (Yang et al. 2021):
#
# | phase | train loss | Hessian | mc | reading |
# |---|---|---|---|---|
# | I | high | large | < 0 | sharp and poorly connected |
# | II | high | large | > 0 | the endpoints have not converged |
# | III | small | small | < 0 | flat but poorly connected: training to zero loss can hurt |
# | IV-A | small | small | ≈ 0 | well connected, lower CKA |
# | IV-B | small | small | ≈ 0 | well connected, higher CKA: the best test accuracy |
#
# The paper draws the boundaries by eye. Our classifier (`landscape_utils.taxonomy.classify`)
# states them: mc clearly below 0 with a high train loss is **I**; mc clearly below 0
# otherwise is **III**; mc clearly above 0 is **II**; a cell with mc near 0 that has not
# fitted its training set goes by the sign of its mc to I or II (the table's train-loss
# column: phase IV is fitted); the rest is **IV**, split into **IV-B** when the CKA is high. Its four thresholds default to those of `PhaseThresholds`,
# calibrated on the authors' grid, which is always classified with them; the parameters of
# this chapter set them for our grid. We also show how much the phase map moves when each
# threshold moves.
#
# We first apply the classifier to the metrics the authors released for their ResNet18 /
# CIFAR-10 grid, redrawing the paper's figure, then to our own grid. Two small experiments
# follow (training longer in a poorly and a well connected cell; double descent with label
# noise), and an explorer to click through the cells.

# %% tags=["parameters"]
device: str = "auto"              # "auto": CUDA when present, else CPU
workdir: str = "../build/work/lab"  # run store shared by all chapters
paper_results: str = ""           # the authors' results.tar.gz, relative to the repo root; empty skips it
train_loss_high: float = 0.01     # train loss (nats) above which a poorly connected cell is I, not III
mc_neg: float = 1.0               # mc below minus this (points of train error) is a clear barrier
mc_pos: float = 1.0               # mc above this: the path beats its endpoints (phase II)
cka_high: float = 0.7             # CKA at or above this makes a well connected cell IV-B
sensitivity_rel: float = 0.25     # each threshold is moved down and up by this fraction
num_threads: int = 1              # torch CPU threads while training; 1 avoids spin-waits on shared cores, 0 keeps torch's choice
sweep_loads: list = []            # a poorly and a well connected load; empty picks them from the phase map
sweep_temperature: float = 0.0    # temperature of the epochs sweep; 0 picks the coldest of the grid
sweep_epochs: list = [10, 20, 40, 80, 160]  # training lengths, one run each
sweep_seeds: int = 2              # seeds per point of the epochs sweep
noise_level: float = 0.2          # label noise of the double-descent sweeps: the load
noise_widths: list = [8, 16, 32, 64, 128]  # widths of the width sweep
noise_temperature: float = 256.0  # value of the grid's temperature axis in the width sweep
noise_width: int = 64             # width in the temperature sweep
noise_temperatures: list = [64, 128, 256, 512]  # values of the temperature axis in that sweep
noise_epochs: int = 200           # long enough to fit most of the noisy labels
noise_data_fraction: float = 0.25  # a smaller training set interpolates sooner and trains faster
noise_seeds: int = 2              # seeds per point of the label-noise sweeps
executor: str = "serial"          # serial | process | ray, for the sweeps' training (see chapter 1)
workers: int = 2                  # process executor: worker processes; 0 means one per GPU slot, or per core
workers_per_gpu: int = 1          # process executor on GPUs: workers sharing one GPU
ray_address: str = ""             # ray executor: empty starts a local Ray; or "auto" or host:port
ray_num_gpus: float = 0.0         # ray executor: GPUs per task; a fraction shares a GPU
ray_num_cpus: float = 1.0         # ray executor: CPUs per task
max_retries: int = 3              # ray executor: retries of a failed task
data_root: str = "../data"        # where torchvision datasets live (cifar/svhn only)
download: bool = False            # allow torchvision to download a missing dataset

# %%
import os
import time
from pathlib import Path

import altair as alt
import pandas as pd
import torch
from IPython.display import display

from landscape_utils import plotting
from landscape_utils.reference import load_released_results
from landscape_utils.runner import expand_grid, run_grid
from landscape_utils.store import run_id
from landscape_utils.taxonomy import (PhaseThresholds, classify, contrast_loads, phase_summary,
                                      sensitivity, spearman_table)
from landscape_utils.utils import resolve_device
from landscape_utils.widgets import (PhaseExplorer, assemble_cells, grid_base_config,
                                     linked_explorer, load_book_tables, released_paths)

t_start = time.perf_counter()
dev = resolve_device(device)
if num_threads > 0:
    torch.set_num_threads(num_threads)
thresholds = PhaseThresholds(train_loss_high=train_loss_high, mc_neg=mc_neg, mc_pos=mc_pos,
                             cka_high=cka_high)
paper_thresholds = PhaseThresholds()  # the defaults were calibrated on the released grid
executor_options = dict(workers=workers, workers_per_gpu=workers_per_gpu, ray_address=ray_address,
                        ray_num_gpus=ray_num_gpus, ray_num_cpus=ray_num_cpus, max_retries=max_retries)
changed = {k: v for k, v in vars(thresholds).items() if v != getattr(paper_thresholds, k)}
print(f"thresholds for our grid: {thresholds}"
      + (f"; changed from the defaults: {changed}" if changed else ""))
PAPER_METRICS = ["test_acc", "train_loss", "lambda_max", "trace", "mc", "cka", "l2"]


def find_file(path: str) -> Path | None:
    """``path`` as given, else relative to the repo root (the chapter runs in book/)."""
    if not path:
        return None
    for candidate in (Path(path), Path.cwd().parent / path):
        if candidate.exists():
            return candidate.resolve()
    return None


paper_path = find_file(paper_results)
tables_dir = Path(workdir) / "tables"
tables_dir.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## The paper's figure, from the authors' released metrics
#
# The authors released the metrics of their grid (ResNet18 of width 1 to 128 × 13 batch
# sizes on CIFAR-10, 5 runs per cell, lr 0.1 decayed once at epoch 75 of 100). Download
# `workspace/checkpoint/results.tar.gz` from their repository,
# [nsfzyzz/loss_landscape_taxonomy](https://github.com/nsfzyzz/loss_landscape_taxonomy),
# and set `paper_results` to its path. We read it without unpacking and with a restricted
# unpickler (`landscape_utils.reference`), then colour the seven panels of the paper's
# figure and, last, the phase map our classifier draws from them. mc comes from the
# training error along the authors' Bezier curve between runs 0 and 1; CKA is their softmax
# CKA on mixup inputs.

# %%
if paper_path is None:
    paper = None
    why = "paper_results is empty" if not paper_results else f"{paper_results} was not found"
    print(f"skipping the released metrics: {why} (download results.tar.gz from "
          "nsfzyzz/loss_landscape_taxonomy, workspace/checkpoint/)")
    paper_fig = None
else:
    paper = load_released_results(paper_path, paper_grid_only=True)
    paper["phase"] = classify(paper, paper_thresholds)
    panels = [plotting.phase_heatmap(paper, m, "width", "batch_size", width=230, height=170)
              for m in PAPER_METRICS]
    panels.append(plotting.phase_map(paper, x="width", y="batch_size", width=230, height=170,
                                     title="phase (our classifier)"))
    paper_fig = alt.concat(*panels, columns=2).resolve_scale(color="independent")
    print(f"{len(paper)} cells from {paper_path.name}: widths {paper.width.unique().tolist()}, "
          f"batch sizes {paper.batch_size.unique().tolist()}")
paper_fig

# %% [markdown]
# The phase map reproduces the paper's layout: narrow networks (width ≤ 4) underfit at every
# batch size and sit behind a barrier (I); the hottest runs (batch 16-32) of wide networks
# have paths that beat their endpoints (II): the endpoints are not at the bottom of their
# basin; medium widths at large batch fit the training set but stay poorly connected (III);
# wide networks at moderate batch sizes are well connected (IV), with the highest CKA and
# the best test accuracy in the middle of that region (IV-B).

# %% [markdown]
# ## Our grid
#
# **How the default grid was chosen.** The paper's phases need a grid where some models
# cannot fit the data (I), some are too hot to settle (II), and some fit it with or without
# a barrier between seeds (III, IV). MLPs on the full MNIST-1D barely fit within a CPU
# budget, so every cell stayed behind a barrier. `params/default.yaml` therefore uses a
# quarter of the training set (1000 samples), so that width 64 and up interpolate within
# 100 epochs, widths from 4 (far too small) to 256 (wide), and lr 0.1 so that batch 16 is
# hot enough to leave the endpoints unconverged. Training loss on this data levels off near
# 0.01 once it is fitted, so `train_loss_high` is 0.1 there. The Bezier fits get 100 epochs
# of 15 steps: with too few steps the curve keeps a spurious barrier even between wide nets.
#
# We join the tables of chapters 1-3 (`{workdir}/tables`): the losses and accuracies of
# every run, the Hessian metrics of every run averaged over seeds, and the per-cell mc,
# linear barrier, CKA and $L_2$ distance over seed pairs. A table that is missing is named
# below; the cells then lack its metrics, and a cell without mc gets no phase.

# %%
tables = load_book_tables(workdir)
for line in tables.missing:
    print(line)
load_axis, temperature_axis = tables.load, tables.temperature
cells = assemble_cells(tables)
cells["phase"] = classify(cells, thresholds)
cells.to_csv(tables_dir / "phase_cells.csv", index=False)
present = [m for m in PAPER_METRICS + ["linear_mc"] if m in cells and cells[m].notna().any()]
print(f"{len(cells)} cells of {load_axis} x {temperature_axis}; metrics present: "
      f"{', '.join(present) or 'none'}; {cells.phase.notna().sum()} cells with a phase; "
      f"written to {tables_dir / 'phase_cells.csv'}")

# %%
if len(cells) and present:
    ours_fig = alt.concat(
        *[plotting.phase_heatmap(cells, m, load_axis, temperature_axis, width=230, height=150)
          for m in present],
        *([plotting.phase_map(cells, x=load_axis, y=temperature_axis, width=230, height=150)]
          if cells.phase.notna().any() else []),
        columns=2).resolve_scale(color="independent")
else:
    ours_fig = None
    print("nothing to draw: chapter 1's grid is missing")
ours_fig

# %% [markdown]
# ## Test accuracy per phase
#
# Number of cells, mean and best test accuracy of each phase, and the mean of the metrics
# that decide it. On the paper's data the ordering I < II ≈ III < IV-A < IV-B of the mean
# test accuracy is the paper's main claim.

# %%
summaries = {}
if paper is not None:
    summaries["paper (ResNet18, CIFAR-10)"] = phase_summary(paper, paper.phase)
if cells.phase.notna().any() and "test_acc" in cells:
    summaries["ours"] = phase_summary(cells, cells.phase)
else:
    print("our grid has no phases yet (no mc): chapter 3's global_cells.csv is needed")
pd.concat(summaries, names=["grid"]).round(4) if summaries else None

# %% [markdown]
# ## Which metric tracks test accuracy?
#
# Spearman's rank correlation of each metric with the test accuracy, over all cells and over
# the well-trained cells only (train loss below `train_loss_high`). Over all cells every
# metric correlates, because the underfit cells are bad at everything; among the
# well-trained cells the train loss no longer says much, and the paper's point is that the
# *global* metrics (mc, CKA) keep ranking the cells where the local ones weaken.

# %%
spearman = {}
if paper is not None:
    spearman["paper (ResNet18, CIFAR-10)"] = spearman_table(
        paper, train_loss_high=paper_thresholds.train_loss_high)
if "test_acc" in cells and len(cells) >= 3:
    spearman["ours"] = spearman_table(cells, train_loss_high=thresholds.train_loss_high)
sp = pd.concat(spearman, names=["grid"]) if spearman else None
(sp[["rho_all", "n_all", "rho_well_trained", "n_well_trained"]].round(3)
 if sp is not None else print("no table with test accuracy to correlate"))

# %% [markdown]
# ## How much do the thresholds matter?
#
# Each threshold moved down and up by `sensitivity_rel` (25% by default), with every other
# threshold fixed: how many cells change phase, and between which phases.
#
# Why the defaults (set on the released grid; see `PhaseThresholds`): fitted cells end with
# a train loss of 0.001-0.006 and unfitted ones at 0.013 or more, so **train_loss_high = 0.01**
# sits in that gap, and with it every phase-I cell has λmax ≥ 52 while every phase-III cell
# has λmax ≤ 35, the paper's "large / small Hessian" column. **mc_neg = mc_pos = 1** point of
# training error (500 of 50 000 CIFAR-10 images): large-width cells have |mc| ≤ 0.6, while
# widths ≤ 11 at batch ≥ 44 have mc ≤ −1.8, and at batch 16-27 every cell of width ≥ 8 has
# mc ≥ 1.1; only the transition column (width 16) lies in between. **cka_high = 0.7** is just
# above the largest CKA outside phase IV (0.67); inside phase IV the CKA is a continuum
# (0.50-0.80), so this threshold only moves cells between IV-A and IV-B, and it is the one
# that moves the most. The next cell checks these gaps on the data.

# %%
if paper is not None:
    fitted = paper.train_loss <= paper_thresholds.train_loss_high
    wide = paper.width >= 23
    print(f"paper: train loss of fitted cells up to {paper.train_loss[fitted].max():.4f}, "
          f"of unfitted cells from {paper.train_loss[~fitted].min():.4f}; "
          f"λmax in I from {paper.lambda_max[paper.phase == 'I'].min():.1f}, "
          f"in III up to {paper.lambda_max[paper.phase == 'III'].max():.1f}")
    print(f"paper: |mc| of fitted wide cells (width >= 23) up to "
          f"{paper.mc[fitted & wide].abs().max():.2f}; largest CKA outside IV "
          f"{paper.cka[~paper.phase.isin(['IV-A', 'IV-B'])].max():.3f}")
sens = {}
if paper is not None:
    sens["paper (ResNet18, CIFAR-10)"] = sensitivity(paper, paper_thresholds,
                                                     rel=sensitivity_rel)
if cells.phase.notna().any():
    sens["ours"] = sensitivity(cells, thresholds, rel=sensitivity_rel)
(pd.concat(sens, names=["grid"]).droplevel(1).reset_index()
 [["grid", "threshold", "direction", "value", "n_changed", "frac_changed", "transitions"]]
 .round(4) if sens else None)

# %% [markdown]
# ## Training to zero loss can hurt when poorly connected
#
# In phase III the models fit the training set, yet the seeds sit in separate basins. The
# paper reads this as a regime where driving the training loss further down does not help,
# and can hurt, the test accuracy, while in the well connected phase IV training longer is
# harmless. We train, at one (cold) temperature, a poorly and a well connected load for an
# increasing number of epochs (each length a separate run, with chapter 1's setup) and
# follow the test accuracy as the training loss falls.

# %%
base = grid_base_config(tables.grid) if tables.grid is not None else None
ep_results = None
if base is None or cells.empty:
    print("skipping the epochs sweep: it reuses chapter 1's setup, and its grid.csv is missing")
else:
    values = sorted(cells[temperature_axis].unique())
    coldest = values[-1] if temperature_axis == "batch_size" else values[0]
    at = sweep_temperature or coldest
    at = int(at) if temperature_axis == "batch_size" else float(at)
    if sweep_loads:
        loads = list(sweep_loads)
        print(f"loads from the parameters: {loads}")
    else:
        pick = contrast_loads(cells, load_axis, temperature_axis, at, thresholds)
        loads = [pick["poor"], pick["good"]]
        print(f"at {temperature_axis} {at}: {pick['reason']}")
    ep_configs = expand_grid({**base, temperature_axis: at},
                             {load_axis: loads, "num_epochs": [int(e) for e in sweep_epochs]},
                             seeds=range(sweep_seeds))
    ep_results = run_grid(ep_configs, workdir, device=str(dev), executor=executor,
                          data_root=data_root, download=download, **executor_options)
    here = cells[cells[temperature_axis] == at].set_index(load_axis)
    ep_results["cell"] = [
        f"{load_axis} {v}" + (f" ({here.phase[v]}, mc {here.mc[v]:.2f})"
                              if v in here.index and "mc" in here and pd.notna(here.mc[v]) else "")
        for v in ep_results[load_axis]]

# %%
ep = ep_results[ep_results.status == "ok"] if ep_results is not None else pd.DataFrame()
if len(ep):
    mean = ep.groupby(["cell", load_axis, "num_epochs"], as_index=False)[
        ["train_loss", "test_acc"]].mean()
    tips = ["cell:N", "num_epochs:Q", alt.Tooltip("train_loss:Q", format=".3g"),
            alt.Tooltip("test_acc:Q", format=".3f")]
    colour = alt.Color("cell:N", title=None, legend=alt.Legend(orient="bottom", columns=1))
    by_loss = alt.Chart(mean, width=300, height=220,
                        title="test accuracy as the train loss falls").mark_line(point=True).encode(
        x=alt.X("train_loss:Q", scale=alt.Scale(type="log", reverse=True, nice=False, padding=8),
                title="train loss (falls to the right)"),
        y=alt.Y("test_acc:Q", scale=alt.Scale(zero=False), title="test accuracy"),
        color=colour, order="num_epochs:Q", tooltip=tips)
    seeds = alt.Chart(ep).mark_point(opacity=0.4).encode(
        x=alt.X("num_epochs:Q", scale=alt.Scale(type="log", nice=False, padding=8),
                title="epochs"),
        y=alt.Y("test_acc:Q", scale=alt.Scale(zero=False), title="test accuracy"),
        color=colour, tooltip=tips + ["seed:N"])
    by_epochs = (seeds + alt.Chart(mean).mark_line().encode(
        x="num_epochs:Q", y="test_acc:Q", color=colour)).properties(
        width=300, height=220, title="test accuracy against training length")
    ep_fig = alt.hconcat(by_loss, by_epochs)
    best = mean.loc[mean.groupby("cell").test_acc.idxmax()].set_index("cell")
    last = mean.loc[mean.groupby("cell").num_epochs.idxmax()].set_index("cell")
    spread = ep.groupby(["cell", "num_epochs"]).test_acc.std().groupby("cell").mean()
    for c in best.index:
        if best.num_epochs[c] == last.num_epochs[c]:
            print(f"{c}: test accuracy highest at the longest run, {last.test_acc[c]:.3f} after "
                  f"{last.num_epochs[c]} epochs (train loss {last.train_loss[c]:.3g})")
        else:
            print(f"{c}: best test accuracy {best.test_acc[c]:.3f} after {best.num_epochs[c]} "
                  f"epochs (train loss {best.train_loss[c]:.3g}), {last.test_acc[c]:.3f} after "
                  f"{last.num_epochs[c]} (train loss {last.train_loss[c]:.3g}): "
                  f"{last.test_acc[c] - best.test_acc[c]:+.3f}")
        if pd.notna(spread.get(c)):
            print(f"    seed spread (std of test accuracy) {spread[c]:.3f}")
else:
    ep_fig = None
ep_fig

# %% [markdown]
# Read the two lines against each other: for the poorly connected load, a drop at the right
# end of the left panel (lower loss, lower accuracy) is the paper's warning; for the well
# connected load the accuracy should keep rising or level off. On a small grid and a few
# seeds the effect can be within the seed spread (the points of the right panel): treat a
# gap smaller than that spread as no effect.

# %% [markdown]
# ## Double descent with label noise
#
# Label noise is another load-like knob: a fraction `noise_level` of the training labels is
# replaced by a random other class, so there is more to fit for the same capacity. With
# noisy labels the test error classically rises where the model just barely manages to fit
# (interpolate) the training set and falls again beyond (*double descent*). We follow the
# test error along the width at a fixed temperature, and along the temperature at a fixed
# width. The training error (on the noisy labels) shows where interpolation happens.

# %%
nbase = dict(base or {}, label_noise=float(noise_level), num_epochs=int(noise_epochs),
             data_fraction=float(noise_data_fraction))
if base is None:
    print("chapter 1's grid is missing: the label-noise sweeps use RunConfig's defaults "
          "(MNIST-1D, MLP)")
temp_value = (lambda v: int(v)) if temperature_axis == "batch_size" else (lambda v: float(v))
width_configs = expand_grid({**nbase, temperature_axis: temp_value(noise_temperature)},
                            {"width": [int(w) for w in noise_widths]}, seeds=range(noise_seeds))
temp_configs = expand_grid({**nbase, "width": int(noise_width)},
                           {temperature_axis: [temp_value(v) for v in noise_temperatures]},
                           seeds=range(noise_seeds))
noise_results = run_grid(width_configs + temp_configs, workdir, device=str(dev),
                         executor=executor, data_root=data_root, download=download,
                         **executor_options)
diverged = int((noise_results.status != "ok").sum())
noise_results = noise_results[noise_results.status == "ok"].assign(
    test_err=lambda d: 1 - d.test_acc, train_err=lambda d: 1 - d.train_acc)
if len(noise_results):
    print(f"{len(noise_results)} runs at label noise {noise_level} (realized "
          f"{noise_results.noise_fraction.mean():.3f}) on {noise_results.num_train.iloc[0]} "
          f"training samples, {noise_epochs} epochs" + (f"; {diverged} diverged" if diverged else ""))
else:
    print(f"every label-noise run diverged ({diverged}): nothing to draw")

# %%
def error_panel(df: pd.DataFrame, x: str, title: str) -> alt.VConcatChart:
    """Test error (top, zoomed) and train error on the noisy labels (bottom) against ``x``
    (log scale): the mean over seeds as a line, each seed as a point."""
    xs = alt.X(f"{x}:Q", scale=alt.Scale(type="log", nice=False, padding=8),
               title=plotting.AXIS_LABELS.get(x, x))

    def panel(col: str, label: str, colour: str, height: int, zero: bool) -> alt.LayerChart:
        base = alt.Chart(df).encode(x=xs, y=alt.Y(f"{col}:Q", title=label,
                                                   scale=alt.Scale(zero=zero)))
        pts = base.mark_point(opacity=0.5, color=colour).encode(
            tooltip=[f"{x}:Q", "seed:N", alt.Tooltip(f"{col}:Q", format=".3f")])
        line = base.mark_line(color=colour).encode(y=f"mean({col}):Q")
        return (pts + line).properties(width=300, height=height)

    return alt.vconcat(panel("test_err", "test error", "#d62728", 150, False),
                       panel("train_err", "train error (noisy labels)", "#7f7f7f", 80, True),
                       spacing=5).properties(title=title)


width_ids = {run_id(c) for c in width_configs}
temp_ids = {run_id(c) for c in temp_configs}
alt.hconcat(
    error_panel(noise_results[noise_results.run_id.isin(width_ids)], "width",
                f"along the width ({temperature_axis} {temp_value(noise_temperature)})"),
    error_panel(noise_results[noise_results.run_id.isin(temp_ids)], temperature_axis,
                f"along the temperature (width {noise_width})"))

# %%
for name, ids, x in (("width", width_ids, "width"), ("temperature", temp_ids, temperature_axis)):
    m = noise_results[noise_results.run_id.isin(ids)].groupby(x)[["train_err", "test_err"]].mean()
    if len(m) < 2:
        continue
    peak = m.test_err.idxmax()
    print(f"along the {name}: test error from {m.test_err.min():.3f} to {m.test_err.max():.3f} "
          f"(highest at {x} {peak}, where the train error is {m.train_err[peak]:.3f}); "
          f"train error {m.train_err.iloc[0]:.3f} at {x} {m.index[0]} and "
          f"{m.train_err.iloc[-1]:.3f} at {x} {m.index[-1]}")

# %% [markdown]
# How to read it: the bottom panels locate interpolation, where the training error on the
# noisy labels reaches 0. Double descent is a peak of the test error at that point. Along
# the width, the models that are just large enough to memorize the noise need the most
# contorted function to do it, and wider ones interpolate more smoothly. Along the
# temperature, a colder run (a larger batch, fewer steps in the same number of epochs)
# plays the part of a smaller model: at the largest batch the noise is not fitted within
# the budget. With a couple of seeds, a peak smaller than the scatter of the points is not
# evidence.

# %% [markdown]
# ## Explore the cells
#
# Click a cell of the phase map to see its metrics and, below, what is known about it: the
# learning curves of its seeds (chapter 1), the training (solid) and test (dashed) error
# along the fitted Bezier curve and the straight line between two seeds (chapter 3), and
# the Hessian spectral density of one seed (chapter 2). Hover for the values. This works in
# the static book, without a kernel.

# %%
if len(cells) and cells.phase.notna().any():
    explore_ours = linked_explorer(cells, load_axis, temperature_axis, history=tables.history,
                                   paths=tables.paths, density=tables.density, runs=tables.grid)
elif len(cells):
    print("our cells have no phase yet (chapter 3 missing): colouring by test accuracy")
    explore_ours = linked_explorer(cells, load_axis, temperature_axis, color="test_acc",
                                   history=tables.history, paths=tables.paths,
                                   density=tables.density, runs=tables.grid)
else:
    explore_ours = None
explore_ours

# %% [markdown]
# The same for the paper's grid: the released files hold no learning curves or spectra,
# but they hold the error along the authors' Bezier curve (runs 0 and 1, five points).

# %%
if paper is not None:
    paper_paths = released_paths(paper_path)
    explore_paper = linked_explorer(paper, "width", "batch_size", paths=paper_paths)
else:
    explore_paper = None
explore_paper

# %% [markdown]
# In JupyterLab, the cell below opens the interactive version (`landscape_utils.widgets.PhaseExplorer`):
# dropdowns for the colouring metric, the axes and the cell, and the same detail charts.
# Pass it the paper's table instead to browse the release:
# `PhaseExplorer(paper, ["width", "batch_size"], paths=paper_paths)`.

# %%
# Only with a live kernel: widgets in the built book would pull their JavaScript from a CDN.
if os.environ.get("LANDSCAPE_BOOK") == "1":
    print("(the widget explorer runs in JupyterLab; the static book shows the charts above)")
elif len(cells):
    explorer = PhaseExplorer.from_tables(tables, cells)
    display(explorer)

# %% [markdown]
# ## What to take from this chapter
#
# On the authors' own numbers, a rule with four stated thresholds reproduces the paper's
# phase diagram, and it is robust: moving the loss and mc thresholds by 25% changes at most
# a few cells of the transition column; only the CKA threshold, which splits a continuum,
# moves cells, and only between IV-A and IV-B. The phases order the test accuracy, and
# among well-trained models the global metrics (mc, CKA) rank the cells better than the
# train loss does. Whether our small MNIST-1D grid shows the same structure is read off the
# tables above; `phase_cells.csv` carries its phases to chapter 5.

# %%
print(f"chapter 4 ran in {time.perf_counter() - t_start:.0f} s")
