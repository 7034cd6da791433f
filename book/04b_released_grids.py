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
# # 4b. The taxonomy across released grids
#
# Chapter 4 checked the paper's claims on two grids: this build's and the authors' ResNet18 /
# CIFAR-10 release. A claim that holds on both could still be a property of one architecture
# or one dataset. A second group has released the same measurements for ten more GPU-scale
# grids, the *Phase Transition Model Zoo* (*A Model Zoo on Phase Transitions in Neural
# Networks*, arXiv 2504.18072;
# [ModelZoos/PhaseTransitionModelZoo](https://github.com/ModelZoos/PhaseTransitionModelZoo),
# dataset under CC BY 4.0): ResNet-18 and ResNet-50 on CIFAR-10, CIFAR-100, SVHN and
# TinyImageNet, and a vision transformer (ViT) on CIFAR-10 and CIFAR-100, each a width (for
# the ViT: embedding dimension) × batch-size grid with three seeds per cell. Compact tables
# derived from their files ship with this package (`landscape_utils/reference_data/zoo`,
# `landscape_utils.experiments.zoo`), so this chapter trains nothing and reads nothing from the network.
#
# **One classifier for every grid.** Every released grid goes through the same rule
# (`classify_with_confidence`, chapter 4) with the same thresholds, those set on the
# authors' grid unless the parameters below change them. The train loss is redrawn from its
# per-seed values; the zoo releases mc, CKA and the Hessian as *cell values* (one number per
# cell, the mean over its three seeds or seed pairs), so they are held fixed and every label
# is *conditional* on them (the `conditional_on` column), as the authors' single-pair mc is
# when no spread is borrowed for it (chapter 4 borrows one from neighbouring cells).
#
# **How the zoo's metrics map to ours** (read from the zoo's code): `mc` is the paper's
# formula on the train error in percent along a Bezier curve, mc < 0 a barrier, averaged over
# the three seed pairs; `cka` is linear CKA of the *logits* on test images (the authors' and
# ours: CKA of the softmax outputs on mixup training inputs), so the IV-A/IV-B split by
# `cka_high` is not comparable across sources; `lambda_max` is PyHessian's top eigenvalue on
# test images and `trace` the Hutchinson trace on training images (the zoo releases their
# natural logs). The release puts these on the last epoch's row, while the zoo's public
# scripts compute them from a checkpoint set per script (115 or 125 of 150 epochs in the two
# we read), so they may describe a slightly earlier model than the losses and accuracies.
# A run whose train accuracy ends below `failed_train_acc` is treated as
# failed, as the book treats a diverged run: left out of the cell means; a cell with no seed
# left has no phase. Some zoos lack some metrics altogether: their cells stay unlabelled and
# their other claims are still tested.
#
# **The claims**, each tested on every grid with a stated rule (`landscape_utils.experiments.zoo`,
# `landscape_utils.experiments.findings`): the best test accuracy is in IV-B (IV where the CKA does not
# split IV); the train loss and λmax of phases I and II lie above those of III and IV; a
# global metric ranks the test accuracy of well-trained cells better than the local ones;
# test accuracy rises with mc; the smallest load sits behind a barrier; the hottest
# temperature is in phase II.

# %% tags=["parameters"]
device: str = "auto"              # unused (nothing is trained); declared like every chapter's
workdir: str = "../build/work/lab"  # run store: this chapter reads chapter 4's phase_cells.csv when present and writes tables/released_cells.csv
paper_results: str = ""           # optional: the authors' results.tar.gz (relative to the repo root); empty reads the table shipped with the package
zoo_tables: str = ""              # optional: a folder of zoo tables ({zoo}.csv as the derive command writes them; relative to the repo root); empty reads the shipped ones
train_loss_high: float = 0.01     # train loss (nats) above which a poorly connected cell is I, not III (every released grid)
mc_neg: float = 1.0               # mc below minus this (points of train error) is a clear barrier
mc_pos: float = 1.0               # mc above this: the path beats its endpoints (phase II)
cka_high: float = 0.7             # CKA at or above this makes a well connected cell IV-B
confidence_level: float = 0.7     # a cell whose most likely phase is less likely than this is undetermined
failed_train_acc: float = 0.3     # a released run whose final train accuracy is below this failed (left out like a diverged run)
n_resamples: int = 2000           # draws per cell of the phase confidence
sensitivity_rel: float = 0.25     # each threshold is moved down and up by this fraction
explore: str = "cifar100_resnet18"  # the zoo shown in the explorer (a name of landscape_utils.experiments.zoo.ZOOS)

# %%
import textwrap
import time

import altair as alt
import pandas as pd
from IPython.display import Markdown, display

from landscape_utils.book.widgets import linked_explorer
from landscape_utils.core import plotting
from landscape_utils.experiments import zoo
from landscape_utils.experiments.authors_grid import load_authors_grid
from landscape_utils.experiments.findings import THIS_BUILD, read_findings, show_findings, write_findings
from landscape_utils.experiments.protocol import phase_counts
from landscape_utils.experiments.rugged import phase_extent
from landscape_utils.experiments.taxonomy import PhaseThresholds, sensitivity
from landscape_utils.runs import tables

t_start = time.perf_counter()
if explore not in zoo.ZOOS:
    raise ValueError(f"explore: {explore!r} is not a zoo; the zoos are {', '.join(zoo.ZOOS)}")
thresholds = PhaseThresholds.from_params(globals())  # each parameter fills the field of its name
folder = zoo.resolve_folder(zoo_tables, "zoo_tables")
zoos, skipped = zoo.load_zoos(folder, failed_train_acc=failed_train_acc, thresholds=thresholds,
                              level=confidence_level, n_resamples=n_resamples)
authors = zoo.authors_released_grid(load_authors_grid(paper_results, thresholds,
                                                      level=confidence_level,
                                                      n_resamples=n_resamples))
released = [authors] + zoos
for name, why in skipped.items():
    print(textwrap.fill(f"skipped {name}: {why}", 95, subsequent_indent="    "))
print(f"{len(released)} released grids read ({len(zoos)} zoos from "
      f"{'the shipped tables' if folder is None else folder}, the authors' grid from "
      f"{authors.source}); thresholds {vars(thresholds)}")

# %% [markdown]
# This build's own grid joins the comparison when chapter 4 has run with the same `workdir`:
# its phase table (`phase_cells.csv`) is read, not recomputed, so its phases are chapter 4's,
# with the thresholds of chapter 4's parameters.

# %%
build = None
if tables.table_path(workdir, "phase_cells").exists():
    load_axis, temp_axis = (a.name for a in tables.read_axes(workdir))
    own = tables.read_table(workdir, "phase_cells")
    if (load_axis, temp_axis) == (zoo.LOAD, zoo.TEMPERATURE):
        build = zoo.ReleasedGrid("build", THIS_BUILD, own, pd.DataFrame(), load_axis, workdir,
                                 iv_split=bool(own["iv_split"].iloc[0]) if "iv_split" in own else False)
        print(f"this build: {len(own)} cells of {load_axis} x {temp_axis} from chapter 4")
    else:
        print(f"this build's grid is {load_axis} x {temp_axis}, not width x batch size: it is "
              "left out of the maps and the table")
else:
    print("no phase_cells.csv in the workdir (chapter 4 has not run): the released grids only")
grids = released + ([build] if build is not None else [])

# %% [markdown]
# ## The grids
#
# One row per grid: what was trained, the grid's size, the runs that failed, which of the
# taxonomy's metrics the release holds, and how many cells the classifier could label
# (a cell needs mc; undetermined cells count as labelled).

# %%
overview = zoo.overview_table(grids)
overview

# %% [markdown]
# ## Phase maps
#
# Every grid's phase map, drawn like chapter 4's: load on x (least capacity on the left),
# batch size on y (hottest, the smallest batch, on top), one colour per phase, paler where
# the phase is less certain. Cells without a label (no mc in the release, or every seed
# failed) are left blank. For the ViT zoos the load is the embedding dimension.

# %%
print(textwrap.fill("no phase map (no cell has a label): " + (", ".join(
    g.label for g in grids if zoo.n_labelled(g) == 0) or "none"), 95))
zoo.phase_maps(grids, width=plotting.fit_width(3), height=105)

# %% [markdown]
# Cells per phase on each grid (undetermined: the seeds cannot decide at
# `confidence_level`; IV: well connected, not split by the CKA):

# %%
counts = pd.DataFrame({g.label: phase_counts(g.cells["phase"]) for g in grids}).T.fillna(0)
counts = counts.astype(int)
counts.index.name = "grid"
counts

# %% [markdown]
# How much the thresholds matter on each grid: every threshold moved down and up by
# `sensitivity_rel`, the others fixed, and the number of cells whose phase (by the rule on the
# cell values) changes, as in chapter 4. Grids without a labelled cell are left out.

# %%
moved = {g.label: sensitivity(g.cells, thresholds, rel=sensitivity_rel)
         .set_index(["threshold", "direction"])["n_changed"]
         for g in grids if zoo.n_labelled(g) and g is not build}
pd.DataFrame(moved).T.rename_axis("grid")

# %% [markdown]
# ## The paper's claims on every grid
#
# Each claim is tested on each grid with the same rule (the findings below give the rule's
# numbers). `inconclusive` means the grid cannot decide: too few labelled cells, a metric
# the release lacks, or a difference inside the spread. The best-accuracy and
# metric-ranking verdicts of this build are chapter 4's.

# %%
found = []
for g in released:
    found += zoo.grid_findings(g.cells, g.label, g.iv_split, train_loss_high=thresholds.train_loss_high)
build_found = []
if build is not None:
    ch4 = read_findings(workdir)
    ch4 = ch4[(ch4.chapter == "04_taxonomy") & (ch4.grid == THIS_BUILD)
              & ch4.key.isin(["best_accuracy_phase", "metric_ranking"])]
    build_found = zoo.grid_findings(build.cells, THIS_BUILD, build.iv_split,
                                    keys=[k for k in zoo.CLAIMS if k not in set(ch4.key)])
shown = pd.concat([zoo.findings_rows(found + build_found),
                   ch4.drop(columns="chapter") if build is not None else None], ignore_index=True)
claims = zoo.claims_table(shown, [g.label for g in grids])
zoo.style_claims(claims)

# %%
display(Markdown(zoo.contrast_text(shown, reference=authors.label)))

# %% [markdown]
# ## Where each phase sits
#
# `phase_extent` (chapter 5) places every cell on its grid: load position 0 at the least
# capacity and 1 at the most, heat position 0 at the coldest batch size and 1 at the hottest,
# by rank among the grid's own values, so grids of different sizes compare. The tables give
# each phase's mean position on every grid (blank: the grid has no cell of that phase).

# %%
extents = zoo.extent_table(grids)
extents["heat_pos"].round(2).astype(object).where(extents["heat_pos"].notna(), "").rename_axis(
    columns="heat position (0 cold, 1 hot) of phase")

# %%
extents["load_pos"].round(2).astype(object).where(extents["load_pos"].notna(), "").rename_axis(
    columns="load position (0 least, 1 most capacity) of phase")

# %% [markdown]
# ## Explore one zoo
#
# Click a cell of the phase map to see its metrics (the zoo released no learning curves,
# paths or spectra, so the explorer has no detail panels); `explore` picks the zoo.

# %%
shown_zoo = next((g for g in zoos if g.name == explore), None)
if shown_zoo is None:
    print(f"{explore} could not be read: {skipped.get(explore, 'not loaded')}")
else:
    print(f"{shown_zoo.label}: {zoo.n_labelled(shown_zoo)} of {len(shown_zoo.cells)} cells labelled")
    display(linked_explorer(shown_zoo.cells, zoo.LOAD, zoo.TEMPERATURE))

# %% [markdown]
# ## The released cells as a table
#
# `{workdir}/tables/released_cells.csv` holds one row per cell of every released grid: the
# grid, the load and batch size in the grid's own units (`load_name` says whether the load
# is a width or an embedding dimension), the cell means (accuracies as fractions; missing
# where the release has none), the phase, its probability and the reason a cell is
# unlabelled, undetermined or flagged.

# %%
cells_out = zoo.released_cells(released)
path = tables.write_table(workdir, "released_cells", cells_out)
print(f"{len(cells_out)} cells of {cells_out.grid.nunique()} grids written to "
      f"tables/{path.name}")

# %% [markdown]
# ## What these grids show
#
# Every finding of the table above, grid by grid, with its evidence and the sample it rests
# on (also in `{workdir}/tables/findings.csv`, chapter `04b_released_grids`, one `grid` per
# released grid; this build's best-accuracy and metric-ranking rows are chapter 4's).

# %%
write_findings(workdir, "04b_released_grids", found + build_found)
print(f"chapter 4b ran in {time.perf_counter() - t_start:.0f} s")
show_findings(shown)
