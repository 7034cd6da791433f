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
# # 6. Large-scale structure: wedges, simplices and permutations
#
# Chapter 3 asked whether *two* seeds are connected. Fort & Jastrzebski (2019) proposed a
# picture of the whole low-loss set, the **wedge model**:
#
# - low-loss regions are high-dimensional *wedges*: many long directions and a few short
#   ones, whose width grows with the distance from the origin;
# - the wedges of different solutions intersect, so all solutions belong to one connected
#   structure.
#
# What the model predicts, and what we measure on the grid of chapter 1:
#
# | prediction | measurement |
# |---|---|
# | many barriers between seeds are only permutations of hidden units | linear barriers before and after **weight matching** (git re-basin) |
# | a set of $n \ge 3$ solutions lies in one connected low-loss structure | a trained low-loss **simplicial complex** whose corners are the solutions |
# | the short directions widen with the radius | loss and error along **random directions from points at several radii** $r\,\theta$, and along the **radial cut** $\theta(1+s)$ |
# | lr, width and L2 change that reach | the same cut from solutions of different cells and of extra runs |
# | the low-loss set has few short directions | training in a **random affine subspace** $\theta = \theta_0 + P z$ succeeds once $d$ is large enough |
# | points of one connected region are similar | the accuracy and diversity of **ensembles**: independent seeds vs points sampled from the simplex |
#
# Two cells carry the chapter: a *poorly connected* one (the most negative mc of chapter 3,
# else the smallest model) and a *well connected* one (mc closest to 0 among the cells with a
# low train loss, else the largest model). Every experiment is a task of the package
# (`landscape_utils.experiments.large_scale`), run by the executor named in the parameters and cached in
# the store under the run ids and all the settings it depends on.

# %% tags=["parameters"]
device: str = "auto"              # "auto": CUDA when present, else CPU
workdir: str = "../build/work/lab"  # run store shared by all chapters
executor: str = "process"         # serial | process | ray: where the experiments (and extra runs) run
workers: int = 0                  # process executor: worker processes; 0 means one per GPU slot, or per core
workers_per_gpu: int = 1          # process executor on GPUs: workers sharing one GPU (each worker is pinned to one)
ray_address: str = ""             # ray executor: empty starts a local Ray; "auto" joins this node's cluster; or host:port
ray_num_gpus: float = 0.0         # ray executor: GPUs per task (one experiment); a fraction shares a GPU
ray_num_cpus: float = 1.0         # ray executor: CPUs per task
max_retries: int = 3              # ray executor: retries of a task whose worker dies, or that hits an I/O error or CUDA OOM
num_threads: int = 1              # torch CPU threads in this kernel (the serial executor); 0 keeps torch's default
seed: int = 0                     # directions, projections, Dirichlet draws and data order of every fit
num_solutions: int = 3            # solutions joined by the simplex; the triangle needs 3
train_missing_seeds: bool = True  # train extra seeds of a chosen cell (cached in the store) when it has too few
low_loss_quantile: float = 0.5    # the well connected cell is picked among cells this low in train loss
num_points: int = 11              # points on every straight path, endpoints included
align_sweeps: int = 100           # cap on the coordinate-descent sweeps of weight matching
simplex_epochs: int = 30          # epochs of connector training
simplex_lr: float = 0.1           # SGD lr of the connectors; flat for half the fit, then decayed 100-fold
simplex_batch_size: int = 128     # one sub-simplex and one Dirichlet draw per minibatch
simplex_weight_decay: float = 5e-4  # L2 penalty on the sampled point, as for the Bezier curves
volume_weight: float = 1e-3       # weight of the log-volume bonus that keeps the sub-simplices open
grid_resolution: int = 8          # barycentric grid: steps along each edge of the triangle
tunnel_epochs: int = 5            # epochs of tunnel training (midpoint, gradient orthogonal to w2 - w1)
ensemble_size: int = 3            # points sampled from the simplex for its ensemble
cka_batches: int = 5              # mixup batches of 128 training inputs for the ensemble CKA
radii: list = [0.5, 0.75, 1.0, 1.25, 1.5]  # centres at r times the solution, on its ray from the origin
num_directions: int = 3           # random unit directions per centre
max_distance: float = 1.5         # cuts reach out to this multiple of the solution norm
num_distances: int = 16           # points per cut, the centre included
err_rise: float = 5.0             # escape: train error this many points above the centre
loss_rise: float = 0.5            # escape: train loss this many nats above the centre
knob_lrs: list = [0.02, 0.1]      # extra runs at these learning rates (one seed each, cached)
knob_weight_decays: list = [0.0, 0.005]  # extra runs at these L2 strengths (one seed each, cached)
subspace_dims: list = [16, 64, 256, 1024]  # dimensions d of the random subspaces
subspace_seeds: int = 2           # random projections per dimension
subspace_epochs: int = 10         # Adam epochs on z
subspace_lr: float = 0.05         # Adam lr on z
subspace_target_frac: float = 0.5  # success: train accuracy at least this fraction of the full-space run's
surface_resolution: int = 11      # points per axis of the 2D loss surface
surface_margin: float = 0.25      # the surface runs from -margin to 1 + margin along the line to the seed partner
surface_span: float = 1.0         # and from -span to +span along a filter-normalized direction

# %%
import altair as alt
import pandas as pd
import torch
from IPython.display import display

from landscape_utils.core import plotting
from landscape_utils.core.settings import executor_options
from landscape_utils.core.utils import resolve_device
from landscape_utils.experiments import large_scale as ls
from landscape_utils.experiments.findings import show_findings, write_findings
from landscape_utils.runs.runner import run_grid
from landscape_utils.runs.tasks import run_tasks

dev = resolve_device(device)
if num_threads > 0:  # tiny models run fastest on one thread of a shared machine
    torch.set_num_threads(num_threads)
settings = ls.WedgeSettings.from_params(globals())
options = executor_options(globals())  # executor, workers, ray_*: as in every chapter
study = ls.load_study(workdir, low_loss_quantile)

# %% [markdown]
# ## The two cells, and every experiment as a task
#
# With chapter 3's table (`global_cells.csv`) the cells are chosen by mc; without it, the
# poorly connected cell is the smallest load value (its worst-fitted temperature) and the
# well connected one the largest load value (its best-fitted temperature). Cells with fewer
# than `num_solutions` seeds get extra seeds, and the well connected cell's seed 0 gets
# one-seed siblings at other learning rates and weight decays; all are trained into the
# same store. Then every experiment below runs as one task.

# %%
knobs = {"lr": knob_lrs, "weight_decay": knob_weight_decays}
base_rid = study.runs_by_cell[study.cells["well connected"]][0]
extra = [c for _, _, c in ls.knob_configs(workdir, study, base_rid, knobs)]
extra += ls.extra_seed_configs(workdir, study, num_solutions) if train_missing_seeds else []
if extra:
    run_grid(extra, workdir, device=str(dev), progress=False, **options)
members = ls.cell_members(workdir, study, num_solutions)
target = subspace_target_frac * ls.run_metric(workdir, study, base_rid, "train_acc")
planned = ls.plan_tasks(members, ls.knob_runs(workdir, study, base_rid, knobs), base_rid, target, settings)
planned = ls.with_costs(planned, workdir)  # long tasks are submitted first: the pool ends on short ones
results = run_tasks([p.task for p in planned], workdir, device=str(dev),
                    desc="chapter 6 experiments", **options)
got = ls.collect(planned, results)
print(f"cells chosen by {study.source}")
display(ls.cells_table(study, members).round(3))

# %% [markdown]
# ## Barriers before and after weight matching
#
# For every pair of seeds we permute the hidden units of the second model to line up with
# the first (per-layer linear assignment on the weights, coordinate descent until a sweep
# no longer improves; BatchNorm statistics move with their units). The straight line
# between the two is then measured again: `linear mc` is chapter 3's metric on the line
# (train error in %, negative is a barrier), `loss barrier` the largest rise of the train
# loss above the straight interpolation of the endpoints' losses.

# %%
alignment = ls.alignment_table(got["alignment"])
display(alignment[["cell", "pair", "linear_before_mc", "linear_after_mc", "linear_before_loss_barrier",
                   "linear_after_loss_barrier", "l2_before", "l2_after"]].rename(columns=ls.SHORT_NAMES).round(3))
kinds = ["linear", "aligned"]
alt.Chart(ls.alignment_profiles(got["alignment"]), width=plotting.fit_width(2), height=190).mark_line(
    point=True).encode(
    x=alt.X("t:Q", title="t along the straight line"), y=alt.Y("train_loss:Q", title="train loss"),
    color=plotting.path_color("path", kinds), strokeDash=plotting.path_dash("path", kinds), detail="pair:N",
    tooltip=["pair:N", "path:N", alt.Tooltip("t:Q", format=".2f"), alt.Tooltip("train_loss:Q", format=".3f")],
).facet(column=alt.Column("cell:N", title=None, sort=list(ls.LABELS))).resolve_scale(y="independent")

# %% [markdown]
# ## A low-loss simplex through three solutions
#
# The solutions $w_1, w_2, w_3$ stay fixed. The triangle they span is cut into six
# sub-triangles around four **connectors**: one on each edge and one in the middle, each
# starting at the centroid of the solutions it joins, so the untrained complex *is* the flat
# triangle. Each minibatch draws one sub-triangle and convex weights
# $c \sim \mathrm{Dirichlet}(1,1,1)$ over its corners, and the connectors take a step on
#
# $$ \mathrm{CE}\Big(f\big(x; \textstyle\sum_j c_j v_j\big)\Big)
#    + \tfrac12\,\mathrm{wd}\,\Big\lVert \textstyle\sum_j c_j v_j \Big\rVert^2
#    - \lambda \log V^2 , $$
#
# with $V^2$ the squared area of the drawn sub-triangle from its Cayley–Menger determinant.
# After training, the edge from $w_i$ to $w_j$ is the bent path $w_i \to \theta_{ij} \to w_j$.
# Below, each hexagon is one point of a barycentric grid on the triangle, coloured by the
# train loss there (BatchNorm, when present, recomputed at every point): the flat triangle
# on the left, the trained complex on the right. The corners are the three solutions.

# %%
ls.triangle_chart(ls.simplex_grids(got["simplex"]), grid_resolution) if got["simplex"] else print(
    "no cell has 3 seeds: no simplex (set train_missing_seeds)")

# %% [markdown]
# The table compares the worst point of the straight lines between the three solutions
# (before and after weight matching, with their spread over the three pairs) with the
# worst point of the trained complex, over the whole grid and along its three bent edges.

# %%
summary = ls.simplex_summary(got["simplex"], alignment)
display(summary.set_index("cell").T.round(3) if len(summary) else "no simplex was trained")

# %% [markdown]
# ## A tunnel between two solutions
#
# A cheaper connector: start at the midpoint of seeds 0 and 1 and descend the loss with the
# gradient projected orthogonal to $w_2 - w_1$, so the point stays equidistant from both.
# The table gives the loss at the midpoint, at the tunnel point, and the worst point of the
# straight line and of the path $w_1 \to \theta \to w_2$.

# %%
display(ls.tunnel_table(got["tunnel"]).rename(columns=ls.SHORT_NAMES).round(3))

# %% [markdown]
# ## Ensembles: independent seeds against points of the simplex
#
# Independent seeds sit in different places of the landscape; points sampled uniformly
# from the trained complex lie in one connected low-loss region. `disagreement` is the
# fraction of test inputs on which two members predict different labels (averaged over
# member pairs); `cka` the mean pairwise CKA of their softmax outputs on mixup training
# inputs, as in chapter 3; `ensemble_gain` the test accuracy of the averaged softmax minus
# the mean member's.

# %%
display(ls.ensemble_table(got["simplex"])[["cell", "members", "member_acc", "ensemble_acc", "ensemble_gain",
                                           "disagreement", "cka"]].rename(columns=ls.SHORT_NAMES).round(3))

# %% [markdown]
# ## Wedges: how far can one move, against the radius?
#
# For a solution $\theta$ the **radial cut** evaluates $\theta(1+s)$ from the origin
# ($s=-1$) out to $2\theta$. The **random cuts** start at centres $r\,\theta$ on the same ray
# and walk a distance $\delta$ along isotropic random unit directions $u$ (the same
# directions at every radius). The *escape distance* is the $\delta$ at which the train
# error first rises `err_rise` points above its value at the centre (or the train loss
# `loss_rise` nats above it). The wedge model says the escape distance grows with the radius.
# For a ReLU network without biases the predictions at $r\theta + \delta u$ equal those at
# $\theta + (\delta/r)\,u$, so part of any growth in *error* is this symmetry
# (`tests/test_directions.py` checks it); the escape in *loss* does not share it.

# %%
wt = ls.wedge_tables(got["wedge"], err_rise, loss_rise)
w2 = plotting.fit_width(2)
cell_color = plotting.line_color("cell", title="cell", sort=ls.LABELS)
radial = alt.Chart(wt.radial, title="radial cut θ·(1+s)", width=plotting.fit_width(1), height=170).mark_line(
    point=True).encode(x=alt.X("s:Q", title="s (−1 is the origin, 0 the solution)"),
                       y=alt.Y("train_err:Q", title="train error (%)"), color=cell_color,
                       tooltip=["cell:N", alt.Tooltip("s:Q", format=".2f"), alt.Tooltip("train_err:Q", format=".1f")])
cuts = alt.Chart(wt.cuts, width=w2, height=170).mark_line().encode(
    x=alt.X("distance:Q", title="distance δ along a random direction"),
    y=alt.Y("train_err:Q", title="train error (%), mean over directions"),
    color=plotting.line_color("radius:O", title="radius r", scheme="viridis"),
).facet(column=alt.Column("cell:N", title=None, sort=list(ls.LABELS))).resolve_scale(x="independent")
escape = alt.Chart(wt.summary.dropna(subset=["escape"]), width=w2, height=170).mark_line(point=True).encode(
    x=alt.X("radius_norm:Q", title="radius r·‖θ‖ of the centre"), y=alt.Y("escape:Q", title="escape distance"),
    color=cell_color, tooltip=["cell:N", "radius:Q", alt.Tooltip("escape:Q", format=".3g"), "censored:Q"],
).facet(column=alt.Column("criterion:N", title="escape criterion")).resolve_scale(y="independent")
alt.vconcat(radial, cuts, escape).resolve_scale(color="independent")

# %%
display(wt.summary.pivot_table(index=["cell", "criterion"], columns="radius", values="escape").round(2))

# %% [markdown]
# ## The loss surface around a solution and its seed partner
#
# The plane through a solution $\theta_a$ (at $(0, 0)$), its seed partner $\theta_b$ (at
# $(1, 0)$) and one filter-normalized random direction $d$ (Li et al. 2018: each filter of
# $d$ rescaled to the norm of the same filter of $\theta_a$; made orthogonal to
# $\theta_b - \theta_a$): the train loss at $\theta_a + \alpha(\theta_b - \theta_a) + \beta d$.
# The $\alpha$ axis is the straight line of the barrier above; the $\beta$ axis shows how
# wide the valley of each solution is in the units of its own filters.

# %%
ls.surface_chart(ls.surface_table(got["surface"]), width=plotting.fit_width(2))

# %% [markdown]
# ### What lr, width and L2 do to the reach
#
# From the seed-0 solution of several cells, at radius 1: along the load axis (at the well
# connected cell's temperature), along the temperature axis (at its load), and from extra
# runs of that cell with other learning rates and weight decays (one seed each). Besides
# the isotropic escape distance we give the norm $\lVert\theta\rVert$ (the radius itself)
# and the escape along **filter-normalized** directions, in units of the filters' own
# norms, which removes the effect of the scale. Each knob run is a single seed.

# %%
knob_table = ls.knob_table(got["reach"])
display(knob_table.drop(columns="run_id").rename(columns=ls.SHORT_NAMES).round(3))
measures = {"norm": "norm ‖θ‖", "escape_isotropic": "escape (isotropic)", "escape_filter": "escape (filter-norm.)"}
long = knob_table.melt(id_vars=["knob", "value"], value_vars=list(measures), var_name="measure", value_name="v")
long["measure"] = long.measure.map(measures)
alt.Chart(long, width=plotting.fit_width(3) - 20, height=110).mark_line(point=True).encode(
    x=alt.X("value:O", title="knob value"),
    y=alt.Y("v:Q", title=None, scale=alt.Scale(zero=False), axis=alt.Axis(format=plotting.NUMBER_FORMAT)),
    tooltip=["knob:N", "value:Q", "measure:N", alt.Tooltip("v:Q", format=".3g")],
).facet(row=alt.Row("knob:N", title=None), column=alt.Column("measure:N", title=None, sort=list(measures.values()))
        ).resolve_scale(
    x="independent", y="independent")

# %% [markdown]
# ## Training in a random subspace
#
# Only $z \in \mathbb R^d$ is trained in $\theta = \theta_0 + P z$, where $\theta_0$ is the
# well connected cell's seed-0 initialization and $P$ a fixed random $D \times d$ matrix with
# unit columns. A run succeeds when its train accuracy reaches `subspace_target_frac` of
# the accuracy the full-space run reached (the dashed line).

# %%
sweep, curve = ls.subspace_tables(got["subspace"])
display(curve.assign(D=int(sweep.num_params.iloc[0]), target=target).rename(columns=ls.SHORT_NAMES).round(3))
w = plotting.fit_width(2)
acc = alt.Chart(sweep, width=w, height=170).mark_point(filled=True).encode(
    x=alt.X("dim:Q", scale=alt.Scale(type="log"), title="subspace dimension d"),
    y=alt.Y("train_acc:Q", title="train accuracy"), tooltip=["dim:Q", "seed:Q", alt.Tooltip("train_acc:Q", format=".3f")])
rule = alt.Chart(pd.DataFrame({"target": [target]})).mark_rule(strokeDash=[4, 4], color="gray").encode(y="target:Q")
rate = alt.Chart(curve, width=w, height=170).mark_line(point=True).encode(
    x=alt.X("dim:Q", scale=alt.Scale(type="log"), title="subspace dimension d"),
    y=alt.Y("success_rate:Q", title="success rate", scale=alt.Scale(domain=[0, 1])))
alt.hconcat(acc + rule, rate)

# %% [markdown]
# ## What this grid shows
#
# Each row tests one prediction of the wedge picture on the tables above: the claim, the
# verdict (`holds`, `fails`, or `inconclusive` when the difference lies within the seed
# spread or the sample is too small), the numbers behind it and the sample it rests on.
# The rows are also written to `tables/findings.csv`.
#
# Two caveats belong to the method, whatever the verdicts. The cells are "poorly" and
# "well" connected *relative to the rest of this grid*; a well connected cell may still
# have a barrier. And the escape distance in train error inherits the scale symmetry of
# ReLU networks described above, so a wedge that widens in error but not in loss is
# mostly that symmetry.

# %%
findings = ls.chapter_findings(alignment, summary, wt, ls.cut_lengths(got["wedge"], max_distance))
write_findings(workdir, "06_large_scale_structure", findings)
show_findings(findings)
