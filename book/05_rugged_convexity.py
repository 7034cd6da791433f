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
# # 5. A one-dimensional model: rugged convexity
#
# The first arXiv version of Yang et al. (2021) explains its phases with a one-dimensional
# model that has a load-like and a temperature-like parameter, an *effective loss landscape*
# that depends on both, and the reading of well-connected landscapes as **rugged
# convexity**: globally convex, locally rough. Its exact formula is not available to us.
# **The model in this chapter is our own construction in that spirit**, not the paper's.
#
# One weight $w$, and a training loss made of a convex envelope plus a rugged term:
#
# $$ L(w) = \tfrac12 a w^2 + A(\text{load}) \sum_{k=1}^{K} c_k \cos(\omega_k w + \varphi_k),
#    \qquad A(\text{load}) = \frac{A_1}{\text{load}} . $$
#
# - The **envelope** $\tfrac12 a w^2$ is the part every data set agrees on.
# - The **rugged term** has $K = 16$ cosines with random frequencies
#   $\omega_k \sim U(3, 9)$ and phases, and $c_k = \sqrt{2/K}$, so it has unit standard
#   deviation. Its amplitude $A$ is set by the **load**: less data or a smaller model
#   (small load) gives a rougher landscape relative to the envelope.
# - A **test landscape** has the same envelope and an independent second realization of
#   the rugged term. Fitting the rugged detail of the training landscape does not transfer.
#
# The **temperature** $T$ drives Langevin dynamics, our stand-in for SGD noise:
#
# $$ w \leftarrow w - \eta L'(w) + \sqrt{2 \eta T}\, \xi, \qquad \xi \sim N(0, 1), $$
#
# whose stationary density is $\propto e^{-L/T}$. Noise acts as smoothing. The *effective
# landscape* $L_T(w) = \mathbb E\, L(w + \xi)$ with $\xi \sim N(0, T)$ has a closed form: the
# quadratic gains $\tfrac12 a T$, and each cosine is damped by $e^{-\omega_k^2 T/2}$. At
# $a = 1$ the smoothing variance $T$ equals the thermal variance $T/a$ of a walker in the
# envelope.
#
# Each metric of the network chapters has a one-dimensional analogue. Runs are paired as
# (0, 1), (2, 3), …, and every metric is averaged per cell:
#
# | network | 1D analogue |
# |---|---|
# | train loss | excess train loss $L(w) - \min L$ |
# | Hessian $\lambda_{\max}$ | curvature $L''(w)$ at the endpoint |
# | mode connectivity mc | the same mc (`mode_connectivity`) on $L$ along the segment between two endpoints, 33 points |
# | $L_2$ distance | $\lvert w_1 - w_2 \rvert$ |
# | CKA | similarity $e^{-d^2/2\ell^2}$, with $\ell = 1/\sqrt{\mathbb E\,\omega^2}$ the correlation length of the rugged term |
# | test accuracy | excess test loss $L_\text{test}(w) - \min L_\text{test}$ |
#
# All numerics live in `landscape_utils.rugged`. This chapter only orchestrates them and
# plots the results.

# %% tags=["parameters"]
device: str = "auto"                # unused: the 1D model runs in numpy on the CPU; every chapter takes it
workdir: str = "../build/work/lab"  # shared results folder; chapter 4's phase table is read from here
seed: int = 0                       # seeds init and noise of every simulation (written into the tables)
landscape_seed: int = 1             # realization shown in the figures: a typical one, with two comparable wells at the bottom
roughness: float = 0.05             # A at load 1: std of the rugged term, relative to the envelope ½ w²
load_values: list = [0.1, 0.178, 0.316, 0.562, 1.0, 1.78, 3.16, 5.62, 10.0]  # A = roughness / load
temperature_values: list = [0.001, 0.00316, 0.01, 0.0316, 0.1, 0.316, 1.0]   # Langevin T
n_runs: int = 64                    # runs per cell and landscape; pairs (0,1),(2,3),… give mc, distance, similarity
diagram_realizations: int = 4       # landscapes pooled per cell of the phase diagram (seeds landscape_seed + 0, 1, …)
n_steps: int = 1500                 # steps at constant T: 15 relaxation times of the envelope at lr 0.01
anneal_steps: int = 1500            # extra steps cooling T to 0, the 1D "training on to zero loss"
lr: float = 0.01                    # step size; lr · L'' stays < 1 in the sharpest wells
init_std: float = 2.0               # init w ~ N(0, init_std²): starts high on both walls (loss ~ 2)
anneal_loads: list = [0.178, 0.316, 3.16]      # two poorly connected loads and a well connected one
anneal_temperatures: list = [0.03, 0.1, 0.3, 1.0]  # temperatures of the annealing experiment
anneal_realizations: int = 16       # landscapes averaged over in the annealing experiment
anneal_runs: int = 64               # runs per cell and landscape in the annealing experiment
explorer_runs: int = 32             # endpoints per cell in the explorers (keeps chart data < 5000 rows)

# %%
import json
import time
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
from IPython.display import display

from landscape_utils import rugged

try:  # the book's shared altair theme and phase colours, when present
    from landscape_utils import plotting
    PHASE_COLORS = plotting.PHASE_COLORS
except ImportError:
    plotting = None
    PHASE_COLORS = {"I": "#d62728", "II": "#ff7f0e", "III": "#9467bd", "IV-A": "#1f77b4",
                    "IV-B": "#2ca02c"}
try:
    from landscape_utils import taxonomy
except ImportError:
    taxonomy = None

landscape = rugged.RuggedLandscape(roughness=roughness, seed=landscape_seed)
loads = np.asarray(load_values, dtype=float)
temperatures = np.asarray(temperature_values, dtype=float)
tables = Path(workdir) / "tables"
ell = landscape.correlation_length
w_grid = np.linspace(-3.0, 3.0, 241)
print(f"{len(loads)} loads × {len(temperatures)} temperatures × {diagram_realizations} landscapes "
      f"× {n_runs} runs; "
      f"A = {landscape.amplitude(loads.max()):.3g} … {landscape.amplitude(loads.min()):.3g}; "
      f"correlation length ℓ = {ell:.3f}")
started = time.perf_counter()

# %% [markdown]
# ## The model
#
# The training landscape (solid) and the test landscape (dashed) at three loads. At
# load 10 both are the envelope with a faint ripple. At load 0.1 wells reach far up the
# walls of the bowl, and the two realizations disagree on where the wells are.

# %%
show_loads = [loads.min(), float(np.sqrt(loads.min() * loads.max())), loads.max()]
curves = pd.concat([
    pd.DataFrame({"w": w_grid, "loss": landscape.loss(w_grid, ld, 0.0, which),
                  "landscape": which, "load": f"load {ld:.3g}  (A = {landscape.amplitude(ld):.3g})"})
    for ld in show_loads for which in ("train", "test")])
alt.Chart(curves, width=230, height=180).mark_line(strokeWidth=1.4).encode(
    x=alt.X("w:Q", title="w"),
    y=alt.Y("loss:Q", title="L(w)"),
    color=alt.Color("landscape:N", title="realization"),
    strokeDash=alt.StrokeDash("landscape:N", legend=None),
).facet(column=alt.Column("load:N", title=None, sort=None))

# %% [markdown]
# ## Noise smooths: the effective landscape
#
# At a rough load, the effective landscape $L_T$ seen by a walker at temperature $T$ loses
# its wells one by one as $T$ grows. The high frequencies go first, since they are damped by
# $e^{-\omega^2 T/2}$. By $T \approx 0.1$–$0.3$ only the convex envelope is left, lifted by
# $\tfrac12 a T$. The dots mark the minimum of each curve. A hot walker "sees" a convex
# bowl, and that is rugged convexity.

# %%
rough_load = float(anneal_loads[0])
eff_T = [0.0, 0.003, 0.01, 0.03, 0.1, 0.3]
eff = pd.concat([pd.DataFrame({"w": w_grid, "loss": landscape.loss(w_grid, rough_load, T),
                               "T": T}) for T in eff_T])
w_min, l_min = landscape.minimum(rough_load, np.array(eff_T))
mins = pd.DataFrame({"w": w_min, "loss": l_min, "T": eff_T})
color_T = alt.Color("T:O", title="temperature T", scale=alt.Scale(scheme="plasma"))
(alt.Chart(eff, width=420, height=260,
           title=f"effective landscape L_T at load {rough_load:g} (A = {landscape.amplitude(rough_load):.2f})")
 .mark_line(strokeWidth=1.3).encode(x=alt.X("w:Q"), y=alt.Y("loss:Q", title="L_T(w)"), color=color_T)
 + alt.Chart(mins).mark_point(filled=True, size=50).encode(x="w:Q", y="loss:Q", color=color_T))

# %% [markdown]
# ## Runs: sampled endpoints and trajectories
#
# One simulation covers the whole grid. Every (load, temperature) cell gets `n_runs` runs
# on each of `diagram_realizations` landscapes, and the cell's metrics are pooled over
# them, so the diagram does not hinge on one random draw of the rugged term. The runs start
# at $w_0 \sim N(0, 2^2)$, high on both walls of the bowl, and run `n_steps` steps at
# constant $T$. The same runs then continue for `anneal_steps` steps while $T$ cools to 0.
# The phase diagram below reads the runs at both moments.
#
# First, a check of the simulator. In a warm cell, the endpoints of many runs should be
# distributed by the stationary density $e^{-L/T}/Z$ (the line).

# %%
table, sim = rugged.phase_diagram(
    loads, temperatures, n_runs, seed, landscape=landscape, n_realizations=diagram_realizations,
    n_steps=n_steps, anneal_steps=anneal_steps, lr=lr, init_std=init_std, return_simulation=True)
ends_at_T = sim.before_anneal[0] if diagram_realizations > 1 else sim.before_anneal  # landscape 0
ends_annealed = sim.endpoints[0] if diagram_realizations > 1 else sim.endpoints
chk_load, chk_T, chk_runs = 1.0, 0.1, 2000   # a warm, mildly rough cell; many runs for a histogram
ends = rugged.simulate(landscape, chk_load, chk_T, chk_runs, n_steps=n_steps, lr=lr,
                       init_std=init_std, seed=seed).endpoints
edges = np.linspace(-1.5, 1.5, 31)
counts, _ = np.histogram(ends, bins=edges)
hist = pd.DataFrame({"w0": edges[:-1], "w1": edges[1:],
                     "density": counts / (ends.size * np.diff(edges))})
dens = pd.DataFrame({"w": w_grid[np.abs(w_grid) <= 1.5]})
dens["density"] = rugged.stationary_density(landscape, dens.w.to_numpy(), chk_load, chk_T)
(alt.Chart(hist, width=420, height=200,
           title=f"{chk_runs} endpoints at load {chk_load:g}, T = {chk_T:g} vs exp(−L/T)/Z")
 .mark_rect(opacity=0.5).encode(x=alt.X("w0:Q", title="w"), x2="w1:Q", y=alt.Y("density:Q"))
 + alt.Chart(dens).mark_line(color="black").encode(x="w:Q", y="density:Q"))

# %% [markdown]
# Now eight runs at the rough load, hot and then annealed. At $T = 0.3$ they hop between
# wells all over the bottom of the bowl. While $T$ cools (shaded) each one freezes in
# whichever well it happens to be in, so different runs end in different wells with
# barriers between them. That is how phase III arises in this model.

# %%
traj_T = 0.3
tr = rugged.simulate(landscape, rough_load, traj_T, 8, n_steps=n_steps, anneal_steps=anneal_steps,
                     lr=lr, init_std=init_std, seed=seed, record_every=20)
traj = pd.DataFrame(tr.trajectory, columns=[f"run {r}" for r in range(8)]).assign(step=tr.steps)
traj = traj.melt("step", var_name="run", value_name="w")
shade = pd.DataFrame({"start": [n_steps], "end": [n_steps + anneal_steps]})
(alt.Chart(shade, width=560, height=220,
           title=f"trajectories at load {rough_load:g}, T = {traj_T:g}, then annealed to 0 (shaded)")
 .mark_rect(color="#eeeeee").encode(x=alt.X("start:Q", title="step"), x2="end:Q")
 + alt.Chart(traj).mark_line(strokeWidth=1).encode(
     x=alt.X("step:Q", title="step"), y=alt.Y("w:Q"), color=alt.Color("run:N", legend=None)))

# %% [markdown]
# ## The 1D phase diagram
#
# The taxonomy's classifier (`landscape_utils.taxonomy.classify`) is applied unchanged.
# Only its thresholds are rescaled from the network units (cross-entropy, percentage points
# of error, softmax CKA) to this model's units. The envelope is $\tfrac12 w^2$, and a walker
# in it at temperature $T$ has excess loss $\approx T/2$, pair mc $\approx T/4$ and
# similarity $\approx 1/\sqrt{1 + 2T/\ell^2}$:

# %%
thresholds = rugged.rescaled_thresholds()
why = {
    "train_loss_high": "thermal excess loss at T = 0.2, or a run stopped |w| ≈ 0.45 (≈ 3ℓ) from the bottom",
    "mc_neg": "a barrier as high as the rugged term's std at load 1",
    "mc_pos": "mc ≈ T/4 of a thermal pair at T = 0.2: the hot cells whose loss is also high",
    "cka_high": "thermal pairs at T ≈ 0.018: typically within ~1.3 ℓ, i.e. the same well",
}
network = taxonomy.PhaseThresholds() if taxonomy is not None else None
pd.DataFrame({"network default": {k: getattr(network, k) for k in why} if network else None,
              "1D model": {k: getattr(thresholds, k) for k in why},
              "meaning in 1D": why})

# %% [markdown]
# Two diagrams from the same runs. The left one reads each run at the end of the
# constant-temperature phase, with the runs still at $T$. The right one reads them after
# annealing, trained on to zero loss. Load increases to the right, and the hottest
# temperature is at the top. Hover for the values.

# %%
def phase_map_1d(df: pd.DataFrame, title: str) -> alt.Chart:
    """Categorical phase map: load on x (left to right), temperature on y (hot on top)."""
    return alt.Chart(df, title=title, width=260, height=200).mark_rect().encode(
        x=alt.X("load:O", title="load (A = roughness / load)", sort="ascending",
                axis=alt.Axis(labelExpr="format(datum.value, '.2~g')")),
        y=alt.Y("temperature:O", title="temperature T", sort="descending",
                axis=alt.Axis(labelExpr="format(datum.value, '.1~e')")),
        color=alt.Color("phase:N", title="phase", scale=alt.Scale(
            domain=list(PHASE_COLORS), range=list(PHASE_COLORS.values()))),
        tooltip=[alt.Tooltip("load:Q", format=".3g"), alt.Tooltip("temperature:Q", format=".3g"),
                 "phase:N", alt.Tooltip("train_loss:Q", format=".3g"), alt.Tooltip("mc:Q", format=".3g"),
                 alt.Tooltip("cka:Q", format=".2f"), alt.Tooltip("test_loss:Q", format=".3g")])


at_T = table[~table.annealed]
annealed = table[table.annealed]
phase_1d = alt.hconcat(phase_map_1d(at_T, "1D model: stopped at temperature T"),
                       phase_map_1d(annealed, "1D model: annealed to T = 0"))
phase_1d

# %%
def phase_regions(df: pd.DataFrame) -> pd.DataFrame:
    """Where each phase lies: its cells' load and temperature ranges and mean metrics."""
    g = df.groupby("phase")
    return pd.DataFrame({
        "cells": g.size(),
        "loads": g.load.agg(lambda s: f"{s.min():.3g} – {s.max():.3g}"),
        "temperatures": g.temperature.agg(lambda s: f"{s.min():.3g} – {s.max():.3g}"),
        "train loss": g.train_loss.mean(), "mc": g.mc.mean(), "similarity": g.cka.mean(),
        "curvature": g.curvature.mean(), "test loss": g.test_loss.mean(),
    }).reindex([p for p in PHASE_COLORS if p in set(df.phase)])


for name, df in (("stopped at T", at_T), ("annealed to T = 0", annealed)):
    print(name)
    display(phase_regions(df).round(3))

# %% [markdown]
# **The regions, read off the two maps.** These are for the default parameters. The tables
# above give the exact ranges.
#
# - **I, rough and not hot enough** (load ≲ 0.3, $T$ ≲ 0.1). Runs slide down from their
#   start and stop in the first well they meet, high on the walls of the bowl. The train
#   loss is high, the curvature is large (narrow wells), and pairs of runs are separated by
#   barriers (mc < 0). Annealing changes nothing, because the runs are already in minima.
# - **II, hot** ($T$ ≳ 0.3 at load ≳ 0.2, stopped at $T$). The runs are a thermal cloud
#   spread across the bowl. The segment between two of them dips through the valley, so it
#   beats both endpoints (mc ≈ $T/4$ > 0), and the train loss ≈ $T/2$ is high. In the
#   paper's words, the endpoints have not converged. Annealing removes phase II entirely.
# - **III, rough but hot, then annealed** (load ≈ 0.1–0.3, $T$ ≳ 0.03–0.3, annealed). The
#   heat let the runs climb off the walls and find the bottom of the bowl, where the
#   effective landscape is convex. Cooling then froze the runs in different wells, as in
#   the trajectories above. The train loss is low, yet the runs are poorly connected.
#   Stopped at $T$, III shows up only in a transition cell.
# - **IV-A, well connected but dissimilar.** When the runs are stopped at a warm $T$
#   (≈ 0.03–0.1) on a smooth landscape, there is one basin (mc ≈ 0), but the thermal spread
#   exceeds the correlation length. At the intermediate load ≈ 0.56 and low $T$, runs stop
#   in *different* wells near the bottom whose barriers are too low to count. That is
#   rugged convexity at its plainest.
# - **IV-B, smooth and cold, or annealed** (load ≳ 1 with $T$ ≲ 0.01 when stopped at $T$;
#   load ≳ 0.56 at every $T$ once annealed). Every run ends at the same minimum: zero
#   barrier, similarity ≈ 1, and the lowest test loss of the grid.
#
# The metrics behind the maps, for the runs stopped at $T$:

# %%
PANEL_LABELS = {  # 1D units differ from the networks'; colour styles come from plotting.METRICS
    "train_loss": ("train_loss", "excess train loss"),
    "test_loss": ("test_loss", "excess test loss"),
    "mc": ("mc", "mc (loss units)"),
    "cka": ("cka", "similarity exp(−d²/2ℓ²)"),
    "curvature": ("lambda_max", "curvature L″ at the endpoint"),
    "distance": ("l2", "distance |w₁ − w₂|"),
}


def metric_panel(df: pd.DataFrame, metric: str) -> alt.Chart:
    style_key, label = PANEL_LABELS[metric]
    scale = {}
    if plotting is not None and style_key in plotting.METRICS:
        st = plotting.METRICS[style_key]
        scale = {"scheme": st.scheme, "reverse": st.reverse}
        if st.log:
            scale["type"] = "log"
        if st.diverging:
            scale["domainMid"] = 0
    data = df[["load", "temperature", metric]].copy()
    if scale.get("type") == "log":  # a log colour scale cannot show 0: floor at 1e-6
        data[metric] = data[metric].clip(lower=1e-6)
    return alt.Chart(data, title=label, width=200, height=150).mark_rect().encode(
        x=alt.X("load:O", sort="ascending", title="load",
                axis=alt.Axis(labelExpr="format(datum.value, '.2~g')")),
        y=alt.Y("temperature:O", sort="descending", title="T",
                axis=alt.Axis(labelExpr="format(datum.value, '.1~e')")),
        color=alt.Color(f"{metric}:Q", title=None, scale=alt.Scale(**scale),
                        legend=alt.Legend(format=".2~g")),
        tooltip=[alt.Tooltip("load:Q", format=".3g"), alt.Tooltip("temperature:Q", format=".3g"),
                 alt.Tooltip(f"{metric}:Q", format=".3g")])


alt.concat(*[metric_panel(at_T, m) for m in PANEL_LABELS], columns=3).resolve_scale(color="independent")

# %% [markdown]
# How sensitive are the maps to the rescaled thresholds? Each threshold is moved by ±25%,
# and we count the cells that change phase.

# %%
if taxonomy is not None:
    sens = pd.concat([taxonomy.sensitivity(df, thresholds).assign(state=name)
                      for name, df in (("stopped at T", at_T), ("annealed", annealed))])
    display(sens[["state", "threshold", "direction", "value", "n_changed", "transitions"]])
tables.mkdir(parents=True, exist_ok=True)
table.to_csv(tables / "rugged_phase_cells.csv", index=False)

# %% [markdown]
# ### Next to the networks
#
# If chapter 4 has run with the same `workdir`, its phase map of the trained networks is
# drawn here beside the 1D one. Both use the same classifier and colours, with load to the
# right and hot at the top.

# %%
net_path = tables / "phase_cells.csv"
net_chart = None
if net_path.exists():
    net = pd.read_csv(net_path)
    axes_file = tables / "grid_axes.json"
    axes = json.loads(axes_file.read_text()) if axes_file.exists() else {}
    x = axes.get("load_axis") or next((c for c in ("width", "data_fraction", "label_noise")
                                      if c in net.columns), None)
    y = axes.get("temperature_axis") or next((c for c in ("batch_size", "lr", "weight_decay")
                                             if c in net.columns), None)
    if "phase" in net.columns and x in net.columns and y in net.columns:
        net = net.drop_duplicates([x, y])
        if plotting is not None:
            net_chart = plotting.phase_map(net, x=x, y=y, title="networks (chapter 4)")
        else:
            net_chart = alt.Chart(net, title="networks (chapter 4)").mark_rect().encode(
                x=f"{x}:O", y=f"{y}:O", color="phase:N")
    else:
        print(f"{net_path} has no phase/{x}/{y} columns; skipping the comparison")
else:
    print(f"no network phase table at {net_path} (run chapter 4 first); showing the 1D model alone")
alt.hconcat(phase_1d, net_chart) if net_chart is not None else phase_1d

# %% [markdown]
# ## Does training to zero loss help? It depends on the connectivity
#
# The paper finds that in poorly connected landscapes, training to zero loss can make the
# test accuracy *worse*. The 1D version compares the same runs stopped at $T$ with the same
# runs annealed on to $T = 0$. It does this at two poorly connected loads and one
# well-connected load, averaged over `anneal_realizations` independent landscapes.
#
# Each point below is one landscape at one temperature. It shows how much annealing
# changed the train loss (x) and the test loss (y). On the diagonal, the test loss fell as
# much as the train loss did. Above the dotted zero line, annealing made the test loss worse.

# %%
ann = rugged.annealing_experiment(anneal_loads, anneal_temperatures, anneal_realizations, anneal_runs,
                                  seed, landscape=landscape, n_steps=n_steps,
                                  anneal_steps=anneal_steps, lr=lr, init_std=init_std)
keys = ["realization", "load", "temperature"]
wide = ann.pivot_table(index=keys, columns="annealed", values=["train_loss", "test_loss", "mc"])
delta = pd.DataFrame({
    "d_train": wide["train_loss"][True] - wide["train_loss"][False],
    "d_test": wide["test_loss"][True] - wide["test_loss"][False],
    "mc_annealed": wide["mc"][True],
}).reset_index()
delta["load"] = delta["load"].map(lambda v: f"load {v:g}")
lim = float(delta[["d_train", "d_test"]].min().min()) * 1.05
diag = pd.DataFrame({"x": [lim, 0.0], "y": [lim, 0.0]})
points = alt.Chart(delta, width=380, height=320,
                   title="annealing to T = 0: change in train vs test loss").mark_point(filled=True).encode(
    x=alt.X("d_train:Q", title="Δ train loss (annealed − stopped at T)"),
    y=alt.Y("d_test:Q", title="Δ test loss"),
    color=alt.Color("load:N", title=None),
    shape=alt.Shape("temperature:O", title="T"),
    tooltip=["load:N", "temperature:Q", "realization:Q", alt.Tooltip("d_train:Q", format=".3f"),
             alt.Tooltip("d_test:Q", format=".3f"), alt.Tooltip("mc_annealed:Q", format=".3f")])
(points + alt.Chart(diag).mark_line(color="gray").encode(x="x:Q", y="y:Q")
 + alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(strokeDash=[3, 3], color="gray").encode(y="y:Q"))

# %%
summary = delta.groupby(["load", "temperature"]).agg(
    mc_annealed=("mc_annealed", "mean"), d_train=("d_train", "mean"), d_test=("d_test", "mean"),
    d_test_sem=("d_test", "sem"), frac_worse=("d_test", lambda s: float(np.mean(s > 0))))
summary["test gain / train gain"] = summary.d_test / summary.d_train
summary.round(3)

# %% [markdown]
# What the 1D model shows:
#
# - **At the well-connected load**, every annealed run reaches the same minimum, and the
#   test loss falls by as much as the train loss. The points sit on the diagonal. Training
#   to zero loss only removes the thermal excess $\approx T/2$, and it never hurts.
# - **At the poorly connected loads**, annealing drops each run into a well of the
#   *training* realization. The train loss falls a lot, but the test loss falls by only a
#   fraction of that (the ratio column), because the test realization has its wells
#   elsewhere. On some landscapes (`frac_worse`) the test loss rises. Training to zero loss
#   buys mostly generalization gap.
#
# This is a weaker statement than the paper's. On average over landscapes, annealing still
# lowers the test loss a little here, because it also removes the thermal part of the
# envelope loss. When the test realization is independent of the training one, fitting
# its wells can only be neutral *on average*. A systematic harm needs memorized structure
# that transfers with the wrong sign, as memorized noisy labels do in a network. One
# coordinate with an independent test realization cannot express that.

# %% [markdown]
# ## Explore
#
# **In the static book**, use the two sliders under the chart. They pick a cell of the
# grid above (by index; the chart's title shows its load and temperature). The
# browser recomputes $L$ (grey) and the effective landscape $L_T$ (orange) from the closed
# form, and overlays `explorer_runs` endpoints of that cell on this landscape from the
# simulation above:
# stopped at $T$ (blue) and annealed (purple), drawn at their train loss.

# %%
n_show = min(explorer_runs, n_runs)
L_, T_ = np.meshgrid(np.arange(len(loads)), np.arange(len(temperatures)), indexing="ij")
pts = []
for state, arr in (("stopped at T", ends_at_T), ("annealed", ends_annealed)):
    e = arr[..., :n_show]
    pts.append(pd.DataFrame({
        "li": np.repeat(L_.ravel(), n_show), "ti": np.repeat(T_.ravel(), n_show),
        "w": e.reshape(-1), "state": state,
        "loss": landscape.loss(e, loads[:, None, None]).reshape(-1)}))
pts = pd.concat(pts, ignore_index=True)
print(f"explorer data: {len(pts)} endpoint rows, {len(w_grid)} curve rows")

li = alt.param(name="li", value=int(np.argmin(np.abs(loads - rough_load))),
               bind=alt.binding_range(min=0, max=len(loads) - 1, step=1, name="load index "))
ti = alt.param(name="ti", value=int(np.argmin(np.abs(temperatures - 0.1))),
               bind=alt.binding_range(min=0, max=len(temperatures) - 1, step=1,
                                      name="temperature index "))
loads_js, temps_js = json.dumps([float(v) for v in loads]), json.dumps([float(v) for v in temperatures])
amp_expr = f"{landscape.roughness!r} * pow({loads_js}[li], {-landscape.load_exponent!r})"
curve = (alt.Chart(pd.DataFrame({"w": w_grid}), width=520, height=300)
         .transform_calculate(A=amp_expr, T=f"{temps_js}[ti]")
         .transform_calculate(
             L=rugged.vega_loss_expression(landscape, amplitude="datum.A", temperature="0"),
             L_T=rugged.vega_loss_expression(landscape, amplitude="datum.A", temperature="datum.T"))
         .transform_fold(["L", "L_T"], as_=["curve", "loss"]))
y_scale = alt.Scale(domain=[-1.5, 4.5], clamp=True)
lines = curve.mark_line(strokeWidth=1.5, clip=True).encode(
    x=alt.X("w:Q", scale=alt.Scale(domain=[-3, 3])),
    y=alt.Y("loss:Q", scale=y_scale, title="loss"),
    color=alt.Color("curve:N", scale=alt.Scale(domain=["L", "L_T"], range=["#999999", "#ff7f0e"]),
                    title=None))
dots = alt.Chart(pts).transform_filter("datum.li == li && datum.ti == ti").mark_point(
    filled=True, size=45, opacity=0.7, clip=True).encode(
    x="w:Q", y=alt.Y("loss:Q", scale=y_scale),
    color=alt.Color("state:N", scale=alt.Scale(domain=["stopped at T", "annealed"],
                                               range=["#1f77b4", "#9467bd"]), title=None))
label = (alt.Chart(pd.DataFrame({"x": [0]}))
         .transform_calculate(text=f"'load ' + format({loads_js}[li], '.3g') + ',  T = ' + "
                                   f"format({temps_js}[ti], '.3g')")
         .mark_text(align="left", baseline="top", fontSize=13, x=5, y=5)
         .encode(text="text:N"))
alt.layer(lines, dots, label).add_params(li, ti).resolve_scale(color="independent")

# %% [markdown]
# **In JupyterLab**, the widget below runs a fresh simulation for any load and temperature,
# with or without annealing, and redraws $L$, $L_T$ and the endpoints. It needs a live
# kernel. In the static book it shows only its initial state, or nothing.

# %%
try:
    import ipywidgets as widgets
except ImportError:  # the chapter must run without it
    widgets = None


def explorer_chart(load: float, T: float, anneal: bool) -> alt.LayerChart:
    run = rugged.simulate(landscape, load, T, 64, n_steps=n_steps,
                          anneal_steps=anneal_steps if anneal else 0, lr=lr, init_std=init_std,
                          seed=seed)
    cur = pd.concat([pd.DataFrame({"w": w_grid, "loss": landscape.loss(w_grid, load, t), "curve": c})
                     for c, t in (("L", 0.0), ("L_T", T))])
    dot = pd.DataFrame({"w": run.endpoints, "loss": landscape.loss(run.endpoints, load)})
    title = f"load {load:.3g} (A = {landscape.amplitude(load):.3g}), T = {T:.3g}" + \
        (", annealed" if anneal else "")
    return (alt.Chart(cur, width=520, height=280, title=title).mark_line().encode(
                x="w:Q", y=alt.Y("loss:Q", scale=alt.Scale(domain=[-1.5, 4.5], clamp=True)),
                color=alt.Color("curve:N", scale=alt.Scale(domain=["L", "L_T"],
                                                           range=["#999999", "#ff7f0e"])))
            + alt.Chart(dot).mark_point(filled=True, color="#1f77b4", size=45, clip=True).encode(
                x="w:Q", y="loss:Q"))


if widgets is not None:
    load_w = widgets.FloatLogSlider(value=rough_load, base=10, min=np.log10(loads.min()),
                                    max=np.log10(loads.max()), step=0.05, description="load",
                                    continuous_update=False)
    temp_w = widgets.FloatLogSlider(value=0.1, base=10, min=np.log10(temperatures.min()),
                                    max=np.log10(temperatures.max()), step=0.1,
                                    description="T", continuous_update=False)
    anneal_w = widgets.Checkbox(value=False, description="anneal to T = 0")
    out = widgets.Output()

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            display(explorer_chart(load_w.value, temp_w.value, anneal_w.value))

    for control in (load_w, temp_w, anneal_w):
        control.observe(redraw, names="value")
    redraw()
    display(widgets.VBox([widgets.HBox([load_w, temp_w, anneal_w]), out]))
else:
    print("ipywidgets is not installed: only the static explorer above is available")

# %% [markdown]
# ## What the model explains, and what it does not
#
# **It explains**
#
# - **Why temperature connects.** Noise smooths the landscape. At a temperature comparable
#   to the well depth, the effective landscape is the convex envelope, and runs gather at
#   its bottom. This is "rugged convexity": a landscape that is well connected at the
#   scale the optimizer sees, even though it is rough underneath.
# - **Why load connects.** Less roughness relative to the envelope (more data, a bigger
#   model) removes the wells, and the whole diagram moves towards IV.
# - **What mc > 0 means.** In phase II the endpoints are samples of a thermal cloud, and
#   the straight path between two of them passes below both. Annealing turns phase II into
#   phase IV, exactly as "not converged" suggests.
# - **Where phase III comes from.** Heat first, then cold: runs find the bottom of the bowl
#   and then freeze in different wells. The train loss is low, the runs are poorly
#   connected, and the test loss is worse than in IV-B.
# - **Sharpness versus connectivity.** The curvature is large in I and III (narrow wells)
#   and small in IV. It tracks the phases without defining them.
#
# **It does not explain**
#
# - **Anything high-dimensional.** One coordinate has no permutation symmetries and no
#   wedges or tunnels (chapter 6). Its only path between two runs is the segment, so a
#   fitted Bezier curve can do no better.
# - **Why width or data smooth a real landscape.** Here the load enters as an assumption
#   ($A \propto 1/\text{load}$). The model reproduces the consequences, not the cause.
# - **A systematic harm from training to zero loss.** With an independent test realization,
#   annealing at poorly connected loads only opens the generalization gap and hurts on some
#   landscapes. See the discussion above.
# - **SGD noise as it really is.** The noise here is isotropic, constant, and independent of
#   the loss. Real SGD noise shrinks as the loss goes to zero and follows the Hessian.
# - **IV-A versus IV-B in the network sense.** The similarity here is a kernel on the
#   distance between weights, not a comparison of the functions two networks compute. The
#   split depends on its threshold more than any other (see the sensitivity table).

# %%
print(f"chapter numerics took {time.perf_counter() - started:.1f} s "
      f"(seed {seed}, landscape seed {landscape_seed})")
