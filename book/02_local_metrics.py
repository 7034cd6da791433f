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
# reorthogonalization, which typically converges in fewer HVPs than the power iteration
# the authors used (the PyHessian comparison at the end measures both on one model), and
# returns the largest *algebraic* eigenvalue rather than the largest in magnitude. The
# trace comes from Hutch++: a small sketch captures the top of the spectrum exactly, and
# Rademacher probes ($\operatorname{tr} H \approx \mathbb{E}\, v^\top H v$) estimate the
# rest; it stops when the standard error falls below a set fraction of the estimate, and
# that standard error is recorded.
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
seed: int = 0                       # seeds the fixed batch and every random vector
k: int = 1                          # top eigenvalues per model; λmax is the first
tol: float = 1e-4                   # Lanczos: relative Ritz residual that counts as converged
max_iter: int = 100                 # Lanczos: most HVPs for the eigenvalues
trace_method: str = "hutchpp"       # hutchpp (exact top sketch + probes) | hutchinson
rel_tol: float = 0.02               # trace: stop once its standard error is below 2% of it
max_probes: int = 200               # trace: most Rademacher probes
sketch_size: int = 20               # trace (Hutch++): columns of the top sketch; it costs 2 x this many HVPs
num_runs: int = 3                   # spectral density: SLQ start vectors averaged
num_steps: int = 40                 # spectral density: Lanczos steps per SLQ run
points: int = 200                   # spectral density: points per curve kept in density.csv
compare_pyhessian: bool = True      # also measure one model with PyHessian, as a reference
compare_run_id: str = ""            # the model for that; empty picks the largest one
executor: str = "process"           # serial | process | ray: one task per model (see the README on GPU servers)
workers: int = 0                    # process executor: worker processes; 0 means one per GPU slot, or per core
workers_per_gpu: int = 1            # process executor on GPUs: workers sharing one GPU (each worker is pinned to one)
ray_address: str = ""               # ray executor: empty starts a local Ray; "auto" joins this node's cluster; or host:port
ray_num_gpus: float = 0.0           # ray executor: GPUs per task (one model); a fraction shares a GPU
ray_num_cpus: float = 1.0           # ray executor: CPUs per task
max_retries: int = 3                # ray executor: retries of a task whose worker dies, or that hits an I/O error or CUDA OOM
num_threads: int = 1                # torch CPU threads in this kernel (the serial executor); 0 keeps torch's default

# %%
import altair as alt
import pandas as pd
import torch

from landscape_utils.core import plotting
from landscape_utils.core.settings import executor_options
from landscape_utils.core.utils import resolve_device
from landscape_utils.experiments.findings import show_findings, spearman_verdict, write_findings
from landscape_utils.experiments.local import (DensitySettings, HessianSettings, density_table, hessian_table,
                                               hot_is_flatter, model_and_batch, one_seed_per_cell, pyhessian_comparison)
from landscape_utils.experiments.taxonomy import cell_table
from landscape_utils.runs.tables import read_grid, write_table

dev = resolve_device(device)
if dev.type == "cpu" and num_threads > 0:  # at this size, more threads only add sync (and
    torch.set_num_threads(num_threads)      # stall badly on a busy machine)
grid = read_grid(workdir)
load_axis, temperature_axis = grid.keys
settings = HessianSettings.from_params(globals())  # each parameter fills the field of its name
density_settings = DensitySettings.from_params(globals())
options = executor_options(globals())  # executor, workers, ray_*: as in every chapter
runs = grid.ok_runs
diverged = grid.runs[grid.runs.status == "diverged"]
if len(diverged):
    print(f"{len(diverged)} diverged run(s) left out (their weights are not finite):")
    print(diverged[["run_id", load_axis, temperature_axis, "seed"]].to_string(index=False))
print(f"{len(runs)} runs to measure on {dev} ({executor} executor), {runs.seed.nunique()} seed(s) "
      f"per cell;\nHessian batch of {num_samples} training samples")

# %% [markdown]
# ## λmax and trace of every model

# %%
local = hessian_table(workdir, runs.run_id, settings, device=dev, data_root=data_root, **options)
write_table(workdir, "local", local)
print(f"{local.num_hvps_eig.sum() + local.num_hvps_trace.sum():,} Hessian-vector products: "
      f"{local.num_hvps_eig.median():.0f} per λmax, {local.num_hvps_trace.median():.0f} per trace "
      f"(medians)")
print(f"λmax converged for {local.eig_converged.sum()}/{len(local)} models; the trace reached "
      f"its\n{rel_tol:.0%} relative standard error for {local.trace_converged.sum()}/{len(local)}")

# %% [markdown]
# ## Sharpness over the grid
#
# Each panel is a phase diagram, as in chapter 1: load on x, temperature on y with the
# hottest setting on top. The colours of $\lambda_{\max}$ and the trace are on a log scale,
# darker where sharper, as the train loss is darker where higher; hover over a cell for its
# mean, the spread over seeds and how many seeds it holds. Train loss and test accuracy from
# chapter 1 sit beside them for reference.

# %%
per_run = runs[["run_id", load_axis, temperature_axis, "seed", "status", "train_loss",
                "test_acc"]].merge(local[["run_id", "lambda_max", "trace", "trace_stderr"]],
                                   on="run_id")
cells = cell_table(per_run, load_axis, temperature_axis,
                   metrics=("lambda_max", "trace", "train_loss", "test_acc"))
plotting.phase_panels(cells, ["lambda_max", "trace", "train_loss", "test_acc"],
                      x=load_axis, y=temperature_axis)

# %%
print(f"λmax over the cells: {cells.lambda_max.min():.3g} to {cells.lambda_max.max():.3g}; "
      f"trace: {cells.trace.min():.3g} to {cells.trace.max():.3g}")
print(f"seed spread: the median cell's λmax sd is {(cells.lambda_max_std / cells.lambda_max).median():.0%} "
      f"of its mean")

# %% [markdown]
# The two measures of sharpness are expected to rise together: one point per model, both
# axes on a log scale.

# %%
log = alt.Scale(type="log")
alt.Chart(per_run, width=plotting.fit_width(1), height=240,
          title="trace against λmax, one point per model").mark_point(
    filled=True, size=50, opacity=0.8).encode(
    x=alt.X("lambda_max:Q", scale=log, title=plotting.style("lambda_max").label),
    y=alt.Y("trace:Q", scale=log, title=plotting.style("trace").label),
    color=plotting.line_color(f"{load_axis}:O", grid.load.title, sort=grid.load_values,
                              scheme="viridis"),
    shape=alt.Shape(f"{temperature_axis}:O", sort=grid.temperature_values,
                    legend=plotting.categorical_legend(grid.temperature.title)),
    tooltip=["run_id:N", f"{load_axis}:O", f"{temperature_axis}:O", "seed:O",
             alt.Tooltip("lambda_max:Q", format=".4g"), alt.Tooltip("trace:Q", format=".4g"),
             alt.Tooltip("trace_stderr:Q", format=".3g")])

# %% [markdown]
# Two hypotheses from the literature, and a caveat, for reading these panels (the findings
# at the end of the chapter test the first two on this grid):
#
# - **Temperature** (Keskar et al. 2017; Jastrzebski et al. 2017). Noisier SGD (small
#   batches, large learning rates) cannot stay in a minimum narrower than its noise, so
#   among comparable models the hot settings are expected to end flatter: λmax lower
#   towards the top of the panels.
# - **Fitting** (Yang et al. 2021). Phases I and II, where the model has not fitted the
#   training set, are sharp; phases III and IV, where it has, are flat. Across cells a
#   higher train loss is then expected to go with a larger λmax.
# - **The trace is a sum over all parameters.** It adds up P eigenvalues, so it grows with
#   the width even at equal curvature per direction; $\lambda_{\max}$ has no such bias.
#   When the load axis is the width, compare λmax across columns and the trace down
#   columns.

# %% [markdown]
# ## Spectral densities
#
# λmax and the trace are two numbers out of a whole spectrum. Stochastic Lanczos quadrature
# estimates the spectral density of each Hessian: a few Lanczos runs from random start
# vectors give quadrature nodes (eigenvalues of the small tridiagonal matrix) and weights.
# We compute it for one seed per cell (the lowest) and keep it in `density.csv`. The chart
# shows the sharpest and the flattest of those models, smoothed with a Gaussian kernel on
# the symmetric-log λ axis it is drawn on (linear near zero, logarithmic beyond 1).

# %%
reps = one_seed_per_cell(runs, grid.keys)
density = density_table(workdir, reps.run_id, density_settings, device=dev, data_root=data_root,
                        **options)
write_table(workdir, "density", density)
reps = reps.merge(local[["run_id", "lambda_max"]], on="run_id")
pair = pd.concat([reps.loc[[reps.lambda_max.idxmax()]].assign(which="sharpest"),
                  reps.loc[[reps.lambda_max.idxmin()]].assign(which="flattest")])
pair["model"] = [f"{w}: {load_axis} {a:g}, {temperature_axis} {b:g}, λmax {lam:.3g}"
                 for w, a, b, lam in zip(pair.which, pair[load_axis], pair[temperature_axis],
                                         pair.lambda_max)]
shown = density.merge(pair[["run_id", "model"]], on="run_id")
plotting.spectrum_chart(plotting.smooth_density_table(shown, by=["model"]), color="model",
                        title="Hessian spectral density (SLQ), sharpest and flattest model")

# %% [markdown]
# Studies of trained networks (Sagun et al. 2017; Ghorbani et al. 2019) report the same
# shape again and again: almost all the mass in a bulk near zero and a few outlier
# eigenvalues far to the right, with sharpness mostly a matter of *where the outliers are*.
# Mass below zero means the model sits near, not exactly at, a minimum: there are still
# directions in which the loss goes down.

# %% [markdown]
# ## A reference: PyHessian on the same model and batch
#
# PyHessian is the library most papers use for these numbers (the authors too). It runs
# power iteration (stopping when λ changes by less than $10^{-3}$ relatively) and plain
# Hutchinson (stopping when the running mean changes by less than $10^{-3}$ relatively).
# Below, one model is measured both ways on the same batch. A tight Lanczos run
# (relative tolerance $10^{-10}$) is the reference for both $\lambda_{\max}$ errors.
# PyHessian reports no error bar for its trace: its standard error is estimated from the
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
        model, batch = model_and_batch(workdir, compare_id, num_samples, seed,
                                       data_root=data_root, device=dev)
        side = pyhessian_comparison(model, batch, settings, device=dev)
        print(f"run {compare_id}: {load_axis} {row[load_axis]:g}, {temperature_axis} "
              f"{row[temperature_axis]:g}, seed {row.seed}")
        print(f"{side.attrs['num_params']:,} parameters, batch of {side.attrs['num_samples']}; "
              f"tight Lanczos λmax: {side.attrs['lambda_max_tight']:.6g}")
        display(side.style.format("{:.4g}"))  # noqa: F821 (IPython's display)
    except Exception as err:  # PyHessian is a reference only: report and go on
        print(f"PyHessian comparison skipped: {type(err).__name__}: {err}")
else:
    print("PyHessian comparison switched off (compare_pyhessian is False)")

# %% [markdown]
# Power iteration converges at a rate set by the gap between the top two eigenvalues, and
# its stopping rule on the *change* of λ can stop early when progress is slow, ending below
# $\lambda_{\max}$. Lanczos builds a Krylov space and typically reaches a tighter tolerance
# with fewer products. For the trace, PyHessian's rule on the change of the running mean says nothing
# about the estimate's error and can stop after a handful of probes. Ours stops on the
# standard error and reports it. Hutch++ takes the top of the spectrum exactly, which pays
# off when a few outliers carry most of the Hessian's Frobenius norm, and gains little when
# the bulk carries it: the last row shows which case this model is in.

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
# How cleanly that holds depends on the grid: a small or short-trained grid may have no
# cell that fits its data, and then all of it sits on the sharp side. Local sharpness alone
# **cannot separate phase III from phase IV**. Both are flat locally; the difference is
# *global*. In phase III the minima that different seeds find are separated by barriers:
# flat but poorly connected, and training to zero loss there can hurt. In phase IV they are
# joined by low-loss paths. Whether those paths exist is what chapter 3 measures.
#
# ## What this grid shows
#
# Each row tests one of the hypotheses above on this build's models; a verdict is
# *inconclusive* when the differences lie inside the seed spread (Welch's t per load, seeds
# as the unit) or the grid has too few cells to rank. The fitting hypothesis is tested here
# as one rank correlation over all cells (this chapter has no phases yet); chapter 4 tests
# it per phase (`high_loss_is_sharp_per_phase`: λmax of the I and II cells against the III
# and IV cells). That the trace rises with
# λmax is shown as a description: both measure the same curvature, so it can hardly fail.

# %%
findings = [
    hot_is_flatter(per_run, load_axis, temperature_axis, grid.temperature.hot_end == "large"),
    spearman_verdict(cells.train_loss, cells.lambda_max, expect="positive",
                     names=("train loss", "λmax")).finding(
        "high_loss_is_sharp", "Across all cells (one Spearman ρ, no phases), a higher train "
        "loss goes with a larger λmax"),
    spearman_verdict(per_run.lambda_max, per_run.trace, expect="positive",
                     names=("λmax", "trace")).finding(
        "trace_tracks_lambda_max", "Across models, the trace rises with λmax (a description: "
        "both measure the same curvature)", kind="description"),
]
write_findings(workdir, "02_local_metrics", findings)
show_findings(findings)
