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
# low train loss, else the largest model). Every expensive result is cached in the store under
# the run ids and all the settings it depends on.

# %% tags=["parameters"]
device: str = "auto"              # "auto": CUDA when present, else CPU
workdir: str = "../build/work/lab"  # run store shared by all chapters
num_threads: int = 1              # CPU threads; these tiny models run fastest on one thread of a shared machine
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

# %%
import itertools
import math
import time
from dataclasses import replace
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import torch

from landscape_utils import plotting
from landscape_utils.align import aligned_barrier
from landscape_utils.data import load_dataset
from landscape_utils.directions import (escape_table, filter_normalized_direction, loss_along_direction, norm,
                                        params_of, radial_profile, subspace_sweep, success_rate, wedge_profiles)
from landscape_utils.global_metrics import example_cells, usable_runs
from landscape_utils.runner import expand_grid, run_grid
from landscape_utils.simplex import (SimplicialComplex, complex_from_models, edge_profiles, ensemble_metrics,
                                     evaluate_grid, fit_complex, fit_tunnel, models_at)
from landscape_utils.store import Store, load_model
from landscape_utils.store import run_id as config_id
from landscape_utils.taxonomy import cell_table
from landscape_utils.utils import resolve_device

t_start = time.perf_counter()
torch.set_num_threads(num_threads)
dev = resolve_device(device)
store = Store(workdir)
tables = Path(workdir) / "tables"
axes = pd.read_json(tables / "grid_axes.json", typ="series")
load_axis, temperature_axis = axes["load_axis"], axes["temperature_axis"]
grid = pd.read_csv(tables / "grid.csv")
runs_by_cell, skipped = usable_runs(grid, load_axis, temperature_axis)
train_loss = cell_table(grid, load_axis, temperature_axis, metrics=("train_loss",)).set_index(
    [load_axis, temperature_axis])["train_loss"]
distances_frac = np.linspace(0.0, max_distance, num_distances)
CACHE = {"hits": 0, "misses": 0}


def cached(name, key, compute):
    """The record stored under (name, key), or compute() saved there."""
    record = store.load_metric(name, key)
    if record is None:
        record = compute()
        store.save_metric(name, key, record)
        CACHE["misses"] += 1
    else:
        CACHE["hits"] += 1
    return record


def table(d):
    """A DataFrame from a record's {column: list} dict."""
    return pd.DataFrame(d)


def columns(df):
    """A DataFrame as a JSON-ready {column: list} dict."""
    return {c: df[c].tolist() for c in df.columns}


DATA = {}


def data_for(rid):
    cfg = store.config(rid)
    key = (cfg.dataset, cfg.data_fraction, cfg.label_noise, cfg.data_seed)
    if key not in DATA:
        DATA[key] = load_dataset(*key, device=dev)
    return DATA[key]


def model_of(rid, which="final"):
    return load_model(workdir, rid, which=which, device=dev, data=data_for(rid)).eval()


print(f"grid: {len(grid)} runs over {len(runs_by_cell)} cells of {load_axis} x {temperature_axis}; on {dev}, "
      f"{torch.get_num_threads()} thread(s)")

# %% [markdown]
# ## The two cells
#
# With chapter 3's table (`global_cells.csv`) the cells are chosen by mc; without it, the
# poorly connected cell is the smallest load value (its worst-fitted temperature) and the
# well connected one the largest load value (its best-fitted temperature). Cells with fewer
# than `num_solutions` seeds get extra seeds, trained into the same store (and cached there).

# %%
global_path = tables / "global_cells.csv"
poor = well = None
if global_path.exists():
    gc = pd.read_csv(global_path).set_index([load_axis, temperature_axis])
    poor, well = example_cells(gc, train_loss.reindex(gc.index), low_loss_quantile)
    source = "chapter 3's mc"
if poor is None or well is None or poor == well:
    loads = sorted(grid[load_axis].unique())
    poor = train_loss.xs(loads[0], level=load_axis).idxmax()
    poor = (loads[0], poor)
    well = (loads[-1], train_loss.xs(loads[-1], level=load_axis).idxmin())
    source = "fallback: smallest and largest load"
cells = {"poorly connected": tuple(poor), "well connected": tuple(well)}


def cell_runs(cell, need):
    """Usable run ids of a cell, ordered by seed; extra seeds trained when allowed."""
    ids = list(runs_by_cell.get(cell, []))
    if len(ids) >= need or not train_missing_seeds or not ids:
        return ids[:need]
    base = store.config(ids[0]).to_dict()
    base.pop("seed")
    res = run_grid(expand_grid(base, {}, seeds=range(need)), workdir, device=str(dev), progress=False)
    res = res[res.status == "ok"].sort_values("seed")
    return list(res.run_id)[:need]


members = {label: cell_runs(cell, num_solutions) for label, cell in cells.items()}
for label, cell in cells.items():
    print(f"{label}: {load_axis} {cell[0]}, {temperature_axis} {cell[1]} "
          f"(train loss {train_loss[cell]:.3f}; {len(members[label])} seeds) [{source}]")
models = {label: [model_of(r) for r in ids] for label, ids in members.items()}

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
align_rows, align_profiles = [], []
for label, ids in members.items():
    ms = models[label]
    x_tr, y_tr = data_for(ids[0]).x_train, data_for(ids[0]).y_train
    for i, j in itertools.combinations(range(len(ids)), 2):
        key = {"run_a": ids[i], "run_b": ids[j], "num_points": num_points, "max_sweeps": align_sweeps, "seed": seed}
        rec = cached("large_scale_alignment", key, lambda: aligned_barrier(
            ms[i], ms[j], x_tr, y_tr, num_points=num_points, max_sweeps=align_sweeps, seed=seed,
            device=dev).record())
        align_rows.append({"cell": label, "pair": f"{i}-{j}", **{k: v for k, v in rec.items()
                                                                  if not k.endswith("_profile")}})
        for when in ("before", "after"):
            prof = table(rec[f"linear_{when}_profile"])
            align_profiles.append(prof.assign(cell=label, pair=f"{i}-{j}", alignment=when))
alignment = pd.DataFrame(align_rows)
if len(alignment):
    print(alignment[["cell", "pair", "linear_before_mc", "linear_after_mc", "linear_before_loss_barrier",
                     "linear_after_loss_barrier", "l2_before", "l2_after", "sweeps"]].round(3).to_string(index=False))
else:
    print("no cell has 2 seeds: nothing to align")

# %%
if align_profiles:
    ap = pd.concat(align_profiles, ignore_index=True)
    ap["line"] = ap["pair"] + " " + ap["alignment"]
    chart = alt.Chart(ap, width=280, height=200).mark_line(point=True).encode(
        x=alt.X("t:Q", title="t along the straight line"),
        y=alt.Y("train_loss:Q", title="train loss"),
        color=alt.Color("alignment:N", sort=["before", "after"], title="weight matching"),
        detail="line:N",
        tooltip=["pair:N", "alignment:N", alt.Tooltip("t:Q", format=".2f"),
                 alt.Tooltip("train_loss:Q", format=".3f"), alt.Tooltip("train_err:Q", format=".1f")],
    ).facet(column=alt.Column("cell:N", title=None, sort=list(cells))).resolve_scale(y="independent")
else:
    chart = None
chart

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
def simplex_record(label):
    ids, ms = members[label], models[label]
    d = data_for(ids[0])
    cx = complex_from_models(ms, device=dev)
    flat = evaluate_grid(ms[0], cx, grid_resolution, d.x_train, d.y_train, d.x_test, d.y_test, device=dev)
    t0 = time.perf_counter()
    fit_complex(ms[0], cx, d.x_train, d.y_train, num_epochs=simplex_epochs, lr=simplex_lr,
                batch_size=simplex_batch_size, weight_decay=simplex_weight_decay, volume_weight=volume_weight,
                seed=seed, device=dev)
    seconds = time.perf_counter() - t0
    trained = evaluate_grid(ms[0], cx, grid_resolution, d.x_train, d.y_train, d.x_test, d.y_test, device=dev)
    edges = edge_profiles(ms[0], cx, num_points, d.x_train, d.y_train, device=dev)
    cka_kw = {"num_batches": cka_batches, "batch_size": 128, "seed": seed}
    independent = ensemble_metrics(ms, d.x_test, d.y_test, x_cka=d.x_train, cka_kwargs=cka_kw)
    points = cx.sample_points(ensemble_size, torch.Generator().manual_seed(seed))
    sampled = ensemble_metrics(models_at(ms[0], points, d.x_train, device=dev), d.x_test, d.y_test,
                               x_cka=d.x_train, cka_kwargs=cka_kw)
    return {"flat": columns(flat), "trained": columns(trained), "edges": columns(edges), "history": cx.history,
            "ensemble_independent": independent, "ensemble_simplex": sampled, "fit_seconds": seconds}


simplex_settings = {"epochs": simplex_epochs, "lr": simplex_lr, "batch_size": simplex_batch_size,
                    "weight_decay": simplex_weight_decay, "volume_weight": volume_weight,
                    "resolution": grid_resolution, "num_points": num_points, "ensemble_size": ensemble_size,
                    "cka_batches": cka_batches, "seed": seed}
simplices = {}
for label, ids in members.items():
    if len(ids) < 3:
        print(f"{label}: only {len(ids)} seed(s); the triangle needs 3 (set train_missing_seeds), skipped")
        continue
    simplices[label] = cached("large_scale_simplex", {"runs": ids, **simplex_settings},
                              lambda: simplex_record(label))

# %%
HEX = "M0,-1L0.866,-0.5L0.866,0.5L0,1L-0.866,0.5L-0.866,-0.5Z"  # a hexagon tiles a triangular lattice
SIDE = 210  # pixels per unit side of the triangle


def triangle_chart(df, title, domain):
    """One barycentric heatmap: a hexagon per grid point at its 2D position."""
    size = (2.0 / math.sqrt(3.0) * SIDE / grid_resolution * 1.08) ** 2
    style = plotting.METRICS["train_loss"]
    return alt.Chart(df, title=title, width=SIDE, height=SIDE * math.sqrt(3) / 2).mark_point(
        shape=HEX, filled=True, size=size, opacity=1.0).encode(
        x=alt.X("x:Q", axis=None, scale=alt.Scale(domain=[0, 1], nice=False)),
        y=alt.Y("y:Q", axis=None, scale=alt.Scale(domain=[0, math.sqrt(3) / 2], nice=False)),
        color=alt.Color("train_loss:Q", title=style.label, legend=alt.Legend(format=".3g"),
                        scale=alt.Scale(type="log", scheme=style.scheme, reverse=style.reverse, domain=domain)),
        tooltip=[alt.Tooltip("l1:Q", format=".2f"), alt.Tooltip("l2:Q", format=".2f"),
                 alt.Tooltip("l3:Q", format=".2f"), alt.Tooltip("train_loss:Q", format=".3f"),
                 alt.Tooltip("train_err:Q", format=".1f"), alt.Tooltip("test_err:Q", format=".1f")])


rows = []
for label, rec in simplices.items():
    flat, trained = table(rec["flat"]), table(rec["trained"])
    lo = float(min(flat.train_loss.min(), trained.train_loss.min()))
    hi = float(max(flat.train_loss.max(), trained.train_loss.max()))
    rows.append(alt.hconcat(triangle_chart(flat, f"{label}: flat triangle", [lo, hi]),
                            triangle_chart(trained, f"{label}: trained complex", [lo, hi])))
alt.vconcat(*rows).resolve_scale(color="independent") if rows else None

# %% [markdown]
# The table compares the worst point of the straight lines between the three solutions
# (before any alignment) with the worst point of the trained complex, over the whole grid
# and along its three bent edges. The corners are the solutions themselves.

# %%
summary = []
for label, rec in simplices.items():
    trained, flat, edges = table(rec["trained"]), table(rec["flat"]), table(rec["edges"])
    corners = trained[(trained[["l1", "l2", "l3"]] == 1.0).any(axis=1)]
    lines = alignment[alignment.cell == label]
    summary.append({"cell": label, "solutions (mean loss)": corners.train_loss.mean(),
                    "straight lines (worst)": lines.linear_before_worst_loss.max(),
                    "aligned lines (worst)": lines.linear_after_worst_loss.max(),
                    "flat triangle (worst)": flat.train_loss.max(), "flat triangle (mean)": flat.train_loss.mean(),
                    "complex edges (worst)": edges.train_loss.max(), "complex (worst)": trained.train_loss.max(),
                    "complex (mean)": trained.train_loss.mean(), "complex (worst err %)": trained.train_err.max(),
                    "fit seconds": rec["fit_seconds"]})
simplex_summary = pd.DataFrame(summary)
print(simplex_summary.round(3).T.to_string() if len(simplex_summary) else "no simplex was trained")

# %% [markdown]
# ## A tunnel between two solutions
#
# A cheaper connector: start at the midpoint of seeds 0 and 1 and descend the loss with the
# gradient projected orthogonal to $w_2 - w_1$, so the point stays equidistant from both.
# We report the loss at the midpoint, at the tunnel point, and the worst point of the path
# $w_1 \to \theta \to w_2$.

# %%
def tunnel_record(label):
    ids, ms = members[label], models[label]
    d = data_for(ids[0])
    theta, history = fit_tunnel(ms[0], ms[1], d.x_train, d.y_train, num_epochs=tunnel_epochs, lr=simplex_lr,
                                batch_size=simplex_batch_size, weight_decay=simplex_weight_decay, seed=seed,
                                device=dev)
    cx = SimplicialComplex.barycentric_subdivision([params_of(ms[0]), params_of(ms[1])], {(0, 1): theta})
    path = edge_profiles(ms[0], cx, num_points, d.x_train, d.y_train, device=dev)
    flat = SimplicialComplex.barycentric_subdivision([params_of(ms[0]), params_of(ms[1])])
    line = edge_profiles(ms[0], flat, num_points, d.x_train, d.y_train, device=dev)
    mid = num_points // 2
    return {"midpoint_loss": float(line.train_loss.iloc[mid]), "tunnel_loss": float(path.train_loss.iloc[mid]),
            "line_worst": float(line.train_loss.max()), "tunnel_path_worst": float(path.train_loss.max()),
            "moved": history[-1]["distance_from_midpoint"] if history else 0.0}


tunnels = []
for label, ids in members.items():
    if len(ids) < 2:
        continue
    key = {"run_a": ids[0], "run_b": ids[1], "epochs": tunnel_epochs, "lr": simplex_lr,
           "batch_size": simplex_batch_size, "weight_decay": simplex_weight_decay, "num_points": num_points,
           "seed": seed}
    tunnels.append({"cell": label, **cached("large_scale_tunnel", key, lambda: tunnel_record(label))})
print(pd.DataFrame(tunnels).round(3).to_string(index=False) if tunnels else "no pair to tunnel")

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
ens_rows = []
for label, rec in simplices.items():
    for source_name, key in (("independent seeds", "ensemble_independent"), ("simplex samples", "ensemble_simplex")):
        ens_rows.append({"cell": label, "members": source_name, **rec[key]})
ensembles = pd.DataFrame(ens_rows)
print(ensembles.round(3).to_string(index=False) if len(ensembles) else "no simplex, no ensemble comparison")

# %% [markdown]
# ## Wedges: how far can one move, against the radius?
#
# For a solution $\theta$ the **radial cut** evaluates $\theta(1+s)$ from the origin
# ($s=-1$) out to $2\theta$. The **random cuts** start at centres $r\,\theta$ on the same ray
# and walk a distance $\delta$ along isotropic random unit directions $u$ (the same
# directions at every radius). The *escape distance* is the $\delta$ at which the train
# error first rises `err_rise` points above its value at the centre (or the train loss
# `loss_rise` nats above it). The wedge model says the escape distance grows with the radius.

# %%
def wedge_record(rid):
    m = model_of(rid)
    d = data_for(rid)
    base = norm(params_of(m))
    prof = wedge_profiles(m, radii, distances_frac * base, d.x_train, d.y_train, num_directions=num_directions,
                          seed=seed, device=dev)
    radial = radial_profile(m, np.linspace(-1.0, 1.0, 21), d.x_train, d.y_train, device=dev)
    return {"profiles": columns(prof), "radial": columns(radial), "norm": base}


wedge_settings = {"radii": radii, "num_directions": num_directions, "max_distance": max_distance,
                  "num_distances": num_distances, "seed": seed}
wedges = {label: cached("large_scale_wedge", {"run": ids[0], **wedge_settings}, lambda: wedge_record(ids[0]))
          for label, ids in members.items() if ids}


def escapes(prof):
    """Mean escape distance per radius, for the error and the loss criteria."""
    centre = prof[prof.distance == 0].groupby("radius")[["train_err", "train_loss"]].first()
    out = []
    for metric, rise in (("train_err", err_rise), ("train_loss", loss_rise)):
        e = escape_table(prof, (centre[metric] + rise).to_dict(), metric=metric)
        g = e.groupby("radius")
        out.append(pd.DataFrame({"escape": g.escape.apply(lambda v: float(np.mean(v))),
                                 "censored": g.censored.mean()}).reset_index().assign(criterion=metric))
    return pd.concat(out, ignore_index=True)


radial_frames, cut_frames, escape_frames = [], [], []
for label, rec in wedges.items():
    radial_frames.append(table(rec["radial"]).assign(cell=label))
    prof = table(rec["profiles"])
    mean_cut = prof.groupby(["radius", "distance"], as_index=False)[["train_loss", "train_err"]].mean()
    cut_frames.append(mean_cut.assign(cell=label))
    escape_frames.append(escapes(prof).assign(cell=label, radius_norm=lambda df: df.radius * rec["norm"]))
radial_all = pd.concat(radial_frames, ignore_index=True)
cuts = pd.concat(cut_frames, ignore_index=True)
escape_all = pd.concat(escape_frames, ignore_index=True)

radial_chart = alt.Chart(radial_all, title="radial cut θ·(1+s)", width=240, height=180).mark_line(point=True).encode(
    x=alt.X("s:Q", title="s (−1 is the origin, 0 the solution)"),
    y=alt.Y("train_err:Q", title="train error (%)"),
    color=alt.Color("cell:N", sort=list(cells)),
    tooltip=["cell:N", alt.Tooltip("s:Q", format=".2f"), alt.Tooltip("train_loss:Q", format=".3f"),
             alt.Tooltip("train_err:Q", format=".1f")])
cut_chart = alt.Chart(cuts, width=240, height=180).mark_line().encode(
    x=alt.X("distance:Q", title="distance δ along a random unit direction"),
    y=alt.Y("train_err:Q", title="train error (%), mean over directions"),
    color=alt.Color("radius:O", title="radius r", scale=alt.Scale(scheme="viridis")),
    tooltip=["radius:O", alt.Tooltip("distance:Q", format=".2f"), alt.Tooltip("train_err:Q", format=".1f"),
             alt.Tooltip("train_loss:Q", format=".3f")],
).facet(column=alt.Column("cell:N", title=None, sort=list(cells))).resolve_scale(x="independent")
escape_chart = alt.Chart(escape_all[np.isfinite(escape_all.escape)], width=240, height=180).mark_line(
    point=True).encode(
    x=alt.X("radius_norm:Q", title="radius r·‖θ‖ of the centre"),
    y=alt.Y("escape:Q", title="escape distance"),
    color=alt.Color("cell:N", sort=list(cells)),
    tooltip=["cell:N", "radius:Q", alt.Tooltip("escape:Q", format=".2f"), "censored:Q"],
).facet(column=alt.Column("criterion:N", title="escape criterion")).resolve_scale(y="independent")
alt.vconcat(radial_chart, cut_chart, escape_chart).resolve_scale(color="independent")

# %%
print(escape_all.pivot_table(index=["cell", "criterion"], columns="radius", values="escape").round(2).to_string())

# %% [markdown]
# ### What lr, width and L2 do to the reach
#
# From the seed-0 solution of several cells, at radius 1: along the load axis (at the well
# connected cell's temperature), along the temperature axis (at its load), and from extra
# runs of that cell with other learning rates and weight decays (one seed each, trained
# into the store). Besides the isotropic escape distance we give the norm $\lVert\theta\rVert$
# (the radius itself) and the escape along **filter-normalized** directions (Li et al.
# 2018), in units of the filters' own norms, which removes the effect of the scale.

# %%
well_cell = cells["well connected"]
base_rid = members["well connected"][0]
knob_runs = []  # (knob, value, run id)
for lv in sorted(grid[load_axis].unique()):
    ids = runs_by_cell.get((lv, well_cell[1]), [])
    if ids:
        knob_runs.append((load_axis, lv, ids[0]))
for tv in sorted(grid[temperature_axis].unique()):
    ids = runs_by_cell.get((well_cell[0], tv), [])
    if ids:
        knob_runs.append((temperature_axis, tv, ids[0]))
base_cfg = store.config(base_rid)
extra = {"lr": knob_lrs, "weight_decay": knob_weight_decays}
extra_cfgs = []
for knob, values in extra.items():
    if knob in (load_axis, temperature_axis):
        continue  # already a grid axis
    knob_runs.append((knob, getattr(base_cfg, knob), base_rid))
    for v in values:
        extra_cfgs.append((knob, v, replace(base_cfg, **{knob: type(getattr(base_cfg, knob))(v)})))
if extra_cfgs:
    res = run_grid([c for _, _, c in extra_cfgs], workdir, device=str(dev), progress=False).set_index("run_id")
    for knob, v, c in extra_cfgs:
        rid = config_id(c)
        if rid in res.index and res.loc[rid, "status"] == "ok":
            knob_runs.append((knob, v, rid))


def reach_record(rid):
    m = model_of(rid)
    d = data_for(rid)
    base = norm(params_of(m))
    prof = wedge_profiles(m, [1.0], distances_frac * base, d.x_train, d.y_train, num_directions=num_directions,
                          seed=seed, device=dev)
    gen = torch.Generator().manual_seed(seed)
    fn = []
    for j in range(num_directions):
        cut = loss_along_direction(m, filter_normalized_direction(m, gen), distances_frac, d.x_train, d.y_train,
                                   device=dev)
        fn.append(cut.rename(columns={"alpha": "distance"}).assign(radius=1.0, direction=j))
    fn = pd.concat(fn, ignore_index=True)
    out = {"norm": base, "train_loss": float(prof.train_loss.iloc[0]), "train_err": float(prof.train_err.iloc[0])}
    for name, p in (("isotropic", prof), ("filter", fn)):
        e = escape_table(p, float(p.train_err.iloc[0]) + err_rise, metric="train_err")
        out[f"escape_{name}"] = float(e.escape.mean())
    return out


knob_rows = []
for knob, value, rid in knob_runs:
    rec = cached("large_scale_reach", {"run": rid, "num_directions": num_directions, "max_distance": max_distance,
                                       "num_distances": num_distances, "err_rise": err_rise, "seed": seed},
                 lambda: reach_record(rid))
    knob_rows.append({"knob": knob, "value": float(value), "run_id": rid, **rec})
knobs = pd.DataFrame(knob_rows)
print(knobs.drop(columns="run_id").round({c: 3 for c in knobs.columns if c != "value"}).to_string(index=False))

# %%
long = knobs.melt(id_vars=["knob", "value"], value_vars=["norm", "escape_isotropic", "escape_filter"],
                  var_name="measure", value_name="v")
alt.Chart(long, width=150, height=120).mark_line(point=True).encode(
    x=alt.X("value:O", title="knob value"),
    y=alt.Y("v:Q", title=None, scale=alt.Scale(zero=False)),
    tooltip=["knob:N", "value:Q", "measure:N", alt.Tooltip("v:Q", format=".3f")],
).facet(column=alt.Column("knob:N", title=None), row=alt.Row("measure:N", title=None)).resolve_scale(
    x="independent", y="independent")

# %% [markdown]
# ## Training in a random subspace
#
# Only $z \in \mathbb R^d$ is trained in $\theta = \theta_0 + P z$, where $\theta_0$ is the
# well connected cell's seed-0 initialization and $P$ a fixed random $D \times d$ matrix with
# unit columns. A run succeeds when its train accuracy reaches `subspace_target_frac` of
# the accuracy the full-space run reached.

# %%
full_acc = float(grid.set_index("run_id").train_acc.get(base_rid, store.metrics(base_rid)["train_acc"]))
target = subspace_target_frac * full_acc


def subspace_record():
    d = data_for(base_rid)
    sweep = subspace_sweep(model_of(base_rid, "init"), subspace_dims, d.x_train, d.y_train, d.x_test, d.y_test,
                           seeds=[seed + s for s in range(subspace_seeds)], target_acc=target,
                           num_epochs=subspace_epochs, lr=subspace_lr, batch_size=128, device=dev)
    return {"sweep": columns(sweep)}


sub = table(cached("large_scale_subspace", {"run": base_rid, "dims": subspace_dims, "seeds": subspace_seeds,
                                            "epochs": subspace_epochs, "lr": subspace_lr, "target": target,
                                            "seed": seed}, subspace_record)["sweep"])
curve = success_rate(sub)
print(f"full space: D {int(sub.num_params.iloc[0])} parameters, train accuracy {full_acc:.3f}; target {target:.3f}")
print(curve.round(3).to_string(index=False))
acc_chart = alt.Chart(sub, width=260, height=180).mark_point(filled=True).encode(
    x=alt.X("dim:Q", scale=alt.Scale(type="log"), title="subspace dimension d"),
    y=alt.Y("train_acc:Q", title="train accuracy"),
    tooltip=["dim:Q", "seed:Q", alt.Tooltip("train_acc:Q", format=".3f"), alt.Tooltip("test_acc:Q", format=".3f")])
rule = alt.Chart(pd.DataFrame({"target": [target]})).mark_rule(strokeDash=[4, 4], color="gray").encode(y="target:Q")
rate_chart = alt.Chart(curve, width=260, height=180).mark_line(point=True).encode(
    x=alt.X("dim:Q", scale=alt.Scale(type="log"), title="subspace dimension d"),
    y=alt.Y("success_rate:Q", title="success rate", scale=alt.Scale(domain=[0, 1])))
alt.hconcat(acc_chart + rule, rate_chart)

# %% [markdown]
# ## The evidence in numbers
#
# The statements below are computed from the tables above, so they follow the data when
# the grid or the parameters change.

# %%
def ratio_text(a, b):
    return f"{a:.3g} -> {b:.3g}"


for label, cell in cells.items():
    print(f"[{label}: {load_axis} {cell[0]}, {temperature_axis} {cell[1]}]")
    a = alignment[alignment.cell == label]
    if len(a):
        before, after = a.linear_before_loss_barrier.mean(), a.linear_after_loss_barrier.mean()
        removed = 1.0 - after / before if before > 0 else float("nan")
        print(f"  weight matching: mean loss barrier {ratio_text(before, after)} nats ({removed:.0%} removed), "
              f"linear mc {ratio_text(a.linear_before_mc.mean(), a.linear_after_mc.mean())} points, "
              f"L2 {ratio_text(a.l2_before.mean(), a.l2_after.mean())}")
    row = simplex_summary[simplex_summary.cell == label] if len(simplex_summary) else simplex_summary
    if len(row):
        r = row.iloc[0]
        print(f"  simplex: worst point {r['complex (worst)']:.3g} vs straight lines {r['straight lines (worst)']:.3g} "
              f"and aligned lines {r['aligned lines (worst)']:.3g}; the solutions are at {r['solutions (mean loss)']:.3g}")
    e = ensembles[ensembles.cell == label].set_index("members") if len(ensembles) else ensembles
    if len(e):
        ind, smp = e.loc["independent seeds"], e.loc["simplex samples"]
        print(f"  ensembles (independent vs simplex): disagreement {ind.disagreement:.3f} vs {smp.disagreement:.3f}, "
              f"CKA {ind.cka:.3f} vs {smp.cka:.3f}, ensemble accuracy {ind.ensemble_acc:.3f} vs {smp.ensemble_acc:.3f}")
    esc = escape_all[escape_all.cell == label].pivot_table(index="criterion", columns="radius", values="escape")
    outer = [r for r in esc.columns if r >= 1.0]
    if len(outer) >= 2:
        lo_r, hi_r = outer[0], outer[-1]
        print(f"  escape from r {lo_r:g} to r {hi_r:g}: in train error {ratio_text(esc.loc['train_err', lo_r], esc.loc['train_err', hi_r])}, "
              f"in train loss {ratio_text(esc.loc['train_loss', lo_r], esc.loc['train_loss', hi_r])}")
if len(knobs) > 2:
    c_iso = float(np.corrcoef(knobs["norm"], knobs.escape_isotropic)[0, 1])
    c_fn = float(np.corrcoef(knobs["norm"], knobs.escape_filter)[0, 1])
    print(f"across the knob runs: corr(norm, isotropic escape) {c_iso:.2f}; corr(norm, filter-normalized escape) {c_fn:.2f}")
ok = curve[curve.success_rate >= 0.5]
print(f"random subspaces: smallest d with a success rate of at least 50%: "
      f"{int(ok.dim.min()) if len(ok) else 'none tried'} of D {int(sub.num_params.iloc[0])}")

# %%
print(f"chapter 6 computed {CACHE['misses']} result(s), read {CACHE['hits']} from the store, "
      f"in {time.perf_counter() - t_start:.0f} s")

# %% [markdown]
# ## What supports the wedge picture here, and what does not
#
# Keep the default grid in mind when reading this: MNIST-1D, small MLPs, 40 epochs, and
# no model fits the training set. Chapter 3 found a barrier (mc < 0) in almost every cell,
# so "well connected" here means *better connected than the rest*, not barrier-free.
#
# **What supports it.**
# - *Much of the barrier is a permutation.* Weight matching always shortens the distance
#   between seeds and removes most of the straight-line loss barrier. What is left after
#   alignment is the part of the barrier that is not a symmetry; it is largest in the
#   wide, low-loss cells.
# - *Three solutions lie in one low-loss structure.* Four trained connectors turn the flat
#   triangle, whose edges and middle rise far above the solutions, into a complex whose
#   worst point is well below the worst point of the straight lines (in our runs also a
#   little below the worst point of the *aligned* lines). Connectivity is not only a property of pairs,
#   which is the wedge model's claim of one connected structure.
# - *In train error, the reach grows with the radius.* Beyond the solution (r ≥ 1) the
#   escape distance along random directions grows with r, roughly in proportion. That is
#   the cone shape of a wedge.
# - *A random subspace is enough once it is large enough.* The accuracy reached rises
#   steadily with d and passes the target far below the full dimension D.
#
# **What does not support it, or not on its own.**
# - *The cone is mostly a symmetry.* A ReLU network without biases computes
#   $r^L f(x;\theta)$ at $r\theta$, so its predictions at $r\theta + \delta u$ are
#   exactly those at $\theta + (\delta/r)\,u$ (tests/test_directions.py checks this); biases
#   break it only a little. Measured in *loss* instead of error, the escape distance
#   *shrinks* with the radius, because scaling up the weights sharpens the softmax.
# - *Inside the solution (r < 1) the centres are not low-loss points.* The wedge picture
#   describes the low-loss set, and these MLPs have no low loss near the origin.
# - *The complex is low only compared with the lines.* It still rises above its corners,
#   most clearly in the wide cell, whose solutions are far from converged. Training the
#   connectors longer keeps lowering it. We did not reach a flat complex, so a barrier-free
#   connected structure is not shown here.
# - *The knobs act through the norm.* Learning rate, batch size, width and L2 change the
#   isotropic escape distance mostly together with the norm of the solution, the radius of
#   the wedge picture. The filter-normalized escape, which removes the scale, varies much
#   less. Each knob run is a single seed, so small differences are noise.
# - *Ensembles.* Points sampled from the simplex disagree less and have a higher CKA than
#   independent seeds: they come from one connected region. In the wide cell their ensemble
#   gains less from averaging. In the underfit cells the points *inside* the simplex can be
#   more accurate than its corners. That is an averaging effect, as in weight averaging, and
#   not a sign of diversity.
