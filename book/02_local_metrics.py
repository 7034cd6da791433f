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
# # 2. Local metrics: how sharp is each minimum?
#
# The *local* half of the taxonomy looks at the loss surface right around each trained
# model, through the Hessian $H = \nabla^2_\theta L(\theta)$ of the training loss:
#
# - the **top eigenvalue** $\lambda_{\max}$: the curvature along the sharpest direction;
# - the **trace** $\operatorname{tr} H = \sum_i \lambda_i$: the curvature summed over all
#   directions.
#
# Large values mean a sharp minimum, small ones a flat minimum. The Hessian never exists
# as a matrix here: everything is built from Hessian-vector products (HVPs), each costing
# about two to three gradients. $\lambda_{\max}$ comes from Lanczos with full
# reorthogonalization, which needs far fewer HVPs than the power iteration the authors
# used, and returns the largest *algebraic* eigenvalue rather than the largest in
# magnitude. The trace comes from Hutch++: a small sketch captures the top of the
# spectrum exactly, and Rademacher probes ($\operatorname{tr} H \approx \mathbb{E}\,
# v^\top H v$) estimate the rest; it stops when the standard error falls below a set
# fraction of the estimate, and that standard error is recorded.
#
# Every model is measured in eval mode, on the cross-entropy loss of **one fixed batch**
# of its training set: the same rows for every model that shares a training set. The
# authors used 200 samples, PyHessian's authors recommend about 4096; the batch size is a
# parameter and is written next to every result. Results are cached in the run store per
# run *and* per setting, so rerunning this chapter only computes what is missing.

# %% tags=["parameters"]
device: str = "auto"                # "auto": CUDA when present, else CPU
workdir: str = "../build/work/lab"  # run store shared by all chapters
data_root: str = "../data"          # where torchvision datasets live (cifar/svhn only)
num_samples: int = 1000             # Hessian batch size (authors 200, PyHessian's authors ~4096)
hessian_seed: int = 0               # seeds the fixed batch and every random vector
top_k: int = 1                      # top eigenvalues per model; λmax is the first
tol: float = 1e-4                   # Lanczos: relative Ritz residual that counts as converged
max_iter: int = 100                 # Lanczos: most HVPs for the eigenvalues
trace_method: str = "hutchpp"       # hutchpp (exact top sketch + probes) | hutchinson
trace_rel_tol: float = 0.02         # trace: stop once its standard error is below 2% of it
max_probes: int = 200               # trace: most Rademacher probes
density_runs: int = 3               # SLQ start vectors averaged per spectral density
density_steps: int = 40             # Lanczos steps per SLQ run
density_points: int = 200           # points per density curve kept in density.csv
compare_pyhessian: bool = True      # also measure one model with PyHessian, as a reference
compare_run_id: str = ""            # the model for that; empty picks the largest one
num_threads: int = 1                # CPU threads for torch (0 keeps its default)

# %%
from pathlib import Path

import altair as alt
import pandas as pd
import torch

from landscape_utils import plotting
from landscape_utils.local import (DensitySettings, HessianSettings, density_table,
                                   hessian_table, model_and_batch, one_seed_per_cell,
                                   pyhessian_comparison)
from landscape_utils.taxonomy import cell_table
from landscape_utils.utils import resolve_device

dev = resolve_device(device)
if dev.type == "cpu" and num_threads > 0:  # at this size, more threads only add sync (and
    torch.set_num_threads(num_threads)      # stall badly on a busy machine)
tables = Path(workdir) / "tables"
grid = pd.read_csv(tables / "grid.csv")
axes = pd.read_json(tables / "grid_axes.json", typ="series")
load_axis, temperature_axis = str(axes["load_axis"]), str(axes["temperature_axis"])
settings = HessianSettings(num_samples=num_samples, k=top_k, tol=tol, max_iter=max_iter,
                           trace_method=trace_method, rel_tol=trace_rel_tol,
                           max_probes=max_probes, seed=hessian_seed)
density_settings = DensitySettings(num_samples=num_samples, num_runs=density_runs,
                                   num_steps=density_steps, points=density_points,
                                   seed=hessian_seed)
is_diverged = grid.status.eq("diverged")
runs = grid[~is_diverged].reset_index(drop=True)
for _, r in grid[is_diverged].iterrows():
    print(f"skipping diverged run {r.run_id} ({load_axis}={r[load_axis]}, "
          f"{temperature_axis}={r[temperature_axis]}, seed={r.seed}): its weights are not finite")
print(f"{len(runs)} runs to measure on {dev}: {load_axis} x {temperature_axis}, "
      f"{runs.seed.nunique()} seed(s) per cell; Hessian batch of {num_samples} training samples")

# %% [markdown]
# ## λmax and trace of every model

# %%
local = hessian_table(workdir, runs.run_id, settings, device=dev, data_root=data_root)
local.to_csv(tables / "local.csv", index=False)
print(f"{local.num_hvps_eig.sum() + local.num_hvps_trace.sum():,} Hessian-vector products in "
      f"all: {local.num_hvps_eig.median():.0f} per λmax and {local.num_hvps_trace.median():.0f} "
      f"per trace (medians), {local.seconds_eig.sum() + local.seconds_trace.sum():.1f} s "
      f"when first computed")
print(f"λmax converged for {local.eig_converged.sum()}/{len(local)} models; the trace reached "
      f"its {trace_rel_tol:.0%} relative standard error for "
      f"{local.trace_converged.sum()}/{len(local)}")

# %% [markdown]
# ## Sharpness over the grid
#
# Each panel is a phase diagram, as in chapter 1: load on x, temperature on y with the
# hottest setting on top. The colours of $\lambda_{\max}$ and the trace are on a log scale;
# hover over a cell for its mean, the spread over seeds and how many seeds it holds. Train
# loss and test accuracy from chapter 1 sit beside them for reference.

# %%
per_run = runs[["run_id", load_axis, temperature_axis, "seed", "status", "train_loss",
                "test_acc"]].merge(local[["run_id", "lambda_max", "trace", "trace_stderr"]],
                                   on="run_id")
cells = cell_table(per_run, load_axis, temperature_axis,
                   metrics=("lambda_max", "trace", "train_loss", "test_acc"))
plotting.phase_panels(cells, ["lambda_max", "trace", "train_loss", "test_acc"],
                      x=load_axis, y=temperature_axis, columns=2)

# %%
spread = (cells.lambda_max_std / cells.lambda_max).median()
sharpest_cell = cells.loc[cells.lambda_max.idxmax()]
flattest_cell = cells.loc[cells.lambda_max.idxmin()]
print(f"λmax spans {cells.lambda_max.min():.3g} to {cells.lambda_max.max():.3g} over the cells "
      f"(x{cells.lambda_max.max() / cells.lambda_max.min():.0f}); the trace spans "
      f"{cells.trace.min():.3g} to {cells.trace.max():.3g}")
print(f"sharpest cell: {load_axis}={sharpest_cell[load_axis]:g}, "
      f"{temperature_axis}={sharpest_cell[temperature_axis]:g}; flattest: "
      f"{load_axis}={flattest_cell[load_axis]:g}, "
      f"{temperature_axis}={flattest_cell[temperature_axis]:g}")
print(f"spread over seeds: the median cell's λmax std is {spread:.0%} of its mean")

# %% [markdown]
# The two measures of sharpness should broadly agree: one point per model, both axes on a
# log scale.

# %%
log = alt.Scale(type="log")
alt.Chart(per_run, width=320, height=240,
          title="trace against λmax, one point per model").mark_point(
    filled=True, size=50, opacity=0.8).encode(
    x=alt.X("lambda_max:Q", scale=log, title=plotting.METRICS["lambda_max"].label),
    y=alt.Y("trace:Q", scale=log, title=plotting.METRICS["trace"].label),
    color=alt.Color(f"{load_axis}:O", title=load_axis, scale=alt.Scale(scheme="viridis")),
    shape=alt.Shape(f"{temperature_axis}:O", title=temperature_axis),
    tooltip=["run_id:N", f"{load_axis}:O", f"{temperature_axis}:O", "seed:O",
             alt.Tooltip("lambda_max:Q", format=".4g"), alt.Tooltip("trace:Q", format=".4g"),
             alt.Tooltip("trace_stderr:Q", format=".3g")])

# %% [markdown]
# Which way does sharpness move over the grid? Spearman rank correlations over the cells
# (+1: the two always rise together, -1: one always falls as the other rises):

# %%
cols = [load_axis, temperature_axis, "train_loss", "test_acc"]
cells[["lambda_max", "trace", *cols]].corr(method="spearman").loc[["lambda_max", "trace"], cols].round(2)

# %% [markdown]
# Two things to keep in mind when reading these panels:
#
# - **Temperature.** Noisier SGD (small batches, large learning rates) cannot stay in a
#   minimum narrower than its noise, so among comparable models the hot settings should
#   end flatter: λmax falling towards the top of the panels (the "large batches find sharp
#   minima" effect).
# - **The trace is a sum over all parameters.** It adds up P eigenvalues, so it grows with
#   the width even at equal curvature per direction; $\lambda_{\max}$ has no such bias.
#   When the load axis is the width, compare λmax across columns and the trace down
#   columns.

# %% [markdown]
# ## Spectral densities
#
# λmax and the trace are two numbers out of a whole spectrum. Stochastic Lanczos quadrature
# estimates the spectral density of each Hessian: a few Lanczos runs from random start
# vectors give quadrature nodes (eigenvalues of the small tridiagonal matrix) and weights,
# smoothed with a narrow Gaussian. We compute it for one seed per cell (the lowest) and keep
# it in `density.csv`; here are the sharpest and the flattest of those models.

# %%
reps = one_seed_per_cell(runs, [load_axis, temperature_axis])
density = density_table(workdir, reps.run_id, density_settings, device=dev, data_root=data_root)
density.to_csv(tables / "density.csv", index=False)
reps = reps.merge(local[["run_id", "lambda_max", "trace"]], on="run_id")
pair = pd.concat([reps.loc[[reps.lambda_max.idxmax()]].assign(which="sharpest"),
                  reps.loc[[reps.lambda_max.idxmin()]].assign(which="flattest")])
pair["model"] = [f"{w}: {load_axis} {a}, {temperature_axis} {b}, λmax {lam:.3g}"
                 for w, a, b, lam in zip(pair.which, pair[load_axis], pair[temperature_axis],
                                         pair.lambda_max)]
shown = density.merge(pair[["run_id", "model"]], on="run_id")
floor = 1e-5 * shown.density.max()  # a log axis cannot show zero: the gaps sit at this floor
shown["density"] = shown.density.clip(lower=floor)
alt.Chart(shown, width=520, height=260,
          title="Hessian spectral density (SLQ), sharpest and flattest model").mark_line(
    strokeWidth=1.5, interpolate="step-after").encode(
    x=alt.X("lam:Q", title="eigenvalue λ", scale=alt.Scale(type="symlog")),
    y=alt.Y("density:Q", title="density", scale=alt.Scale(type="log")),
    color=alt.Color("model:N", title=None,
                    legend=alt.Legend(orient="bottom", direction="vertical", labelLimit=0)),
    tooltip=[alt.Tooltip("lam:Q", format=".4g"), alt.Tooltip("density:Q", format=".3g"), "model:N"])

# %% [markdown]
# Trained networks usually show the same shape: almost all the mass in a bulk near zero,
# and a few outlier eigenvalues far to the right (the λ axis is symmetric-log, linear near
# zero and logarithmic beyond 1, so both show). Sharpness is mostly about *where the
# outliers are*, while the bulk looks alike. Mass below zero means the model sits near,
# not exactly at, a minimum: there are still directions in which the loss goes down.

# %% [markdown]
# ## A reference: PyHessian on the same model and batch
#
# PyHessian is the library most papers use for these numbers (the authors too). It runs
# power iteration (stopping when λ changes by less than $10^{-3}$ relatively) and plain
# Hutchinson (stopping when the running mean changes by less than $10^{-3}$ relatively).
# Below, one model is measured both ways on the same batch. A tight Lanczos run
# (relative tolerance $10^{-10}$) is the reference for both $\lambda_{\max}$ errors.
# PyHessian reports no error bar for its trace; its standard error is estimated from the
# spread of single Hutchinson probes, which also tells how many probes plain Hutchinson
# would need to match our standard error (last row). The last column is PyHessian divided
# by ours: above 1 for HVPs and seconds means ours is cheaper. PyHessian's times leave out
# its one-off gradient setup; ours include it. This cell is a reference only: if PyHessian
# fails, it prints why and the chapter goes on.

# %%
if compare_pyhessian:
    compare_id = compare_run_id or runs.sort_values(
        ["num_params", "seed"], ascending=[False, True]).run_id.iloc[0]
    try:
        row = runs.set_index("run_id").loc[compare_id]
        model, batch = model_and_batch(workdir, compare_id, num_samples, hessian_seed,
                                       data_root=data_root, device=dev)
        side = pyhessian_comparison(model, batch, settings, device=dev)
        print(f"run {compare_id}: {load_axis}={row[load_axis]}, {temperature_axis}="
              f"{row[temperature_axis]}, seed={row.seed}; {side.attrs['num_params']:,} parameters, "
              f"batch of {side.attrs['num_samples']}; tight Lanczos λmax: "
              f"{side.attrs['lambda_max_tight']:.6g}")
        display(side.style.format("{:.4g}"))  # noqa: F821 (IPython's display)
    except Exception as err:  # PyHessian is a reference only: report and go on
        print(f"PyHessian comparison skipped: {type(err).__name__}: {err}")
else:
    print("PyHessian comparison switched off (compare_pyhessian is False)")

# %% [markdown]
# Power iteration converges at a rate set by the gap between the top two eigenvalues, and
# its stopping rule on the *change* of λ stops early when progress is slow, so it tends to
# end a little below $\lambda_{\max}$. Lanczos builds a Krylov space and reaches a tighter
# tolerance with fewer products. For the trace, PyHessian's rule on the change of the
# running mean says nothing about the estimate's error, and it often stops after a handful
# of probes. Ours stops on the standard error and reports it. Hutch++ takes the top of the
# spectrum exactly, which pays off when a few outliers carry most of the Hessian's
# Frobenius norm, and gains little when the bulk carries it: the last row shows which case
# this model is in.

# %% [markdown]
# ## What the panels mean for the taxonomy
#
# In the taxonomy of Yang et al., the Hessian splits the grid in two:
#
# - **Sharp** (large $\lambda_{\max}$ and trace) goes with **phases I and II**: the model
#   has not fitted the training set, usually because the load is too small for the data, so
#   its train loss is high. I and II differ in their global structure (a barrier between
#   seeds in I; in II, hot SGD has left the endpoints unconverged), not in their sharpness.
# - **Flat** (small $\lambda_{\max}$ and trace) goes with **phases III and IV**: the model
#   fits the training set and SGD settled in a wide minimum.
#
# So read the λmax and trace panels against the train-loss panel and the correlations
# above: where the train loss is high the minima should be sharp, and where the model fits
# they should be flat. How cleanly that holds depends on the grid. A small or short-trained
# grid may have no cell that truly fits its data, and then all of it sits on the sharp side.
#
# Local sharpness alone **cannot separate phase III from phase IV**. Both are flat
# locally; the difference is *global*. In phase III the minima that different seeds find
# are separated by barriers: flat but poorly connected, and training to zero loss there can
# hurt. In phase IV they are joined by low-loss paths. Whether those paths exist is what
# chapter 3 measures, with mode connectivity along fitted Bezier curves and the similarity
# of the seeds' outputs.
