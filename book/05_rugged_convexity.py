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
# | mode connectivity mc | the same mc (`profiles.mode_connectivity`) on $L$ along the segment between two endpoints, 33 points |
# | $L_2$ distance | $\lvert w_1 - w_2 \rvert$ |
# | CKA | similarity $e^{-d^2/2\ell^2}$, with $\ell = 1/\sqrt{\mathbb E\,\omega^2}$ the correlation length of the rugged term |
# | test accuracy | excess test loss $L_\text{test}(w) - \min L_\text{test}$ |
#
# All numerics and charts live in `landscape_utils.experiments.rugged`; this chapter orchestrates them.

# %% tags=["parameters"]
device: str = "auto"                # unused: the 1D model runs in numpy on the CPU; every chapter takes it
workdir: str = "../build/work/lab"  # shared results folder; chapter 4's phase table is read from here
seed: int = 0                       # seeds init and noise of every simulation (written into the tables)
landscape_seed: int = 1             # realization shown in the figures: a typical one, with two comparable wells at the bottom
roughness: float = 0.05             # A at load 1: std of the rugged term, relative to the envelope ½ w²
load_values: list = [0.1, 0.178, 0.316, 0.562, 1.0, 1.78, 3.16, 5.62, 10.0]  # the rugged amplitude is roughness / load
temperature_values: list = [0.001, 0.00316, 0.01, 0.0316, 0.1, 0.316, 1.0]   # Langevin T
num_runs: int = 64                  # runs per cell and landscape; pairs (0,1),(2,3),… give mc, distance, similarity
diagram_realizations: int = 4       # landscapes pooled per cell of the phase diagram (seeds landscape_seed + 0, 1, …)
num_steps: int = 1500               # steps at constant T: 15 relaxation times of the envelope at lr 0.01
anneal_steps: int = 1500            # extra steps cooling T to 0, the 1D "training on to zero loss"
lr: float = 0.01                    # step size; lr · L'' stays < 1 in the sharpest wells
init_std: float = 2.0               # init w ~ N(0, init_std²): starts high on both walls (loss ~ 2)
anneal_loads: list = [0.178, 0.316, 3.16]      # two rough loads and a smooth one
anneal_temperatures: list = [0.03, 0.1, 0.3, 1.0]  # temperatures of the annealing experiment
anneal_realizations: int = 16       # landscapes averaged over in the annealing experiment
anneal_runs: int = 64               # runs per cell and landscape in the annealing experiment
explorer_runs: int = 32             # endpoints per cell in the explorers (keeps chart data < 5000 rows)
placement_tol: float = 0.25         # heat-position difference (0 coldest, 1 hottest) up to which two grids place a phase alike
placement_init_stds: list = [0.5, 4.0]  # other init_std values at which phase III's placement is redrawn (annealed state)

# %%
import time
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd

from landscape_utils.book.widgets import Control, LiveChart, live_or_static
from landscape_utils.core import plotting
from landscape_utils.experiments import rugged
from landscape_utils.experiments.authors_grid import load_authors_grid
from landscape_utils.experiments.findings import (AUTHORS_GRID, THIS_BUILD, Finding, show_findings, write_findings)
from landscape_utils.experiments.taxonomy import PhaseThresholds, phase_summary, sensitivity
from landscape_utils.runs import tables

started = time.perf_counter()
landscape = rugged.RuggedLandscape(roughness=roughness, seed=landscape_seed)
loads, temperatures = np.asarray(load_values, float), np.asarray(temperature_values, float)
w_grid = np.linspace(-3.0, 3.0, 241)
rough_load = float(anneal_loads[0])
pd.DataFrame({"value": [f"{len(loads)} × {len(temperatures)}", diagram_realizations, num_runs,
                        f"{landscape.amplitude(loads.max()):.3g} … "
                        f"{landscape.amplitude(loads.min()):.3g}",
                        f"{landscape.correlation_length:.3f}"]},
             index=["loads × temperatures", "landscapes per cell", "runs per landscape",
                    "roughness A", "correlation length ℓ"])

# %% [markdown]
# ## The model
#
# The training landscape and the test landscape at the smallest, a middle and the largest
# load. The amplitude of the rugged term falls as $1/\text{load}$, so by construction the
# largest load is closest to the bare envelope, and at small loads the two realizations
# put their wells in different places.

# %%
show_loads = [loads.min(), float(np.sqrt(loads.min() * loads.max())), loads.max()]
rugged.landscape_chart(rugged.landscape_curves(landscape, w_grid, show_loads))

# %% [markdown]
# ## Noise smooths: the effective landscape
#
# At a rough load, the effective landscape $L_T$ loses its wells as $T$ grows: each
# cosine is damped by $e^{-\omega^2 T/2}$, so the high frequencies go first, and once
# $\omega_{\min}^2 T \gg 1$ only the convex envelope is left, lifted by $\tfrac12 a T$. The
# dots mark the global minimum of each curve. A hot walker "sees" a convex bowl: this is
# the model's reading of rugged convexity.

# %%
eff, eff_min = rugged.effective_curves(landscape, w_grid, rough_load,
                                       [0.0, 0.003, 0.01, 0.03, 0.1, 0.3])
rugged.effective_chart(eff, eff_min, f"effective landscape L_T at load {rough_load:g} "
                       f"(A = {landscape.amplitude(rough_load):.2f})")

# %% [markdown]
# ## Runs: sampled endpoints and trajectories
#
# One simulation covers the whole grid. Every (load, temperature) cell gets `num_runs` runs
# on each of `diagram_realizations` landscapes, and the cell's metrics are pooled over
# them, so the diagram does not hinge on one random draw of the rugged term. The runs start
# at $w_0 \sim N(0, \sigma_0^2)$ (`init_std`), high on both walls of the bowl, and run
# `num_steps` steps at constant $T$. The same runs then continue for `anneal_steps` steps
# while $T$ cools to 0. The phase diagram below reads the runs at both moments.
#
# First, a check of the simulator: in a warm cell, the endpoints of many runs should be
# distributed by the stationary density $e^{-L/T}/Z$.

# %%
table, sim = rugged.phase_diagram(
    loads, temperatures, num_runs, seed, landscape=landscape, n_realizations=diagram_realizations,
    n_steps=num_steps, anneal_steps=anneal_steps, lr=lr, init_std=init_std, return_simulation=True)
chk_load, chk_T, chk_runs = 1.0, 0.1, 2000   # a warm, mildly rough cell; many runs for a histogram
ends = rugged.simulate(landscape, chk_load, chk_T, chk_runs, n_steps=num_steps, lr=lr,
                       init_std=init_std, seed=seed).endpoints
w_in = w_grid[np.abs(w_grid) <= 1.5]
rugged.histogram_chart(
    rugged.endpoint_histogram(ends, np.linspace(-1.5, 1.5, 31)),
    pd.DataFrame({"w": w_in, "density": rugged.stationary_density(landscape, w_in, chk_load,
                                                                  chk_T)}),
    f"{chk_runs} endpoints at load {chk_load:g}, T = {chk_T:g}, against exp(−L/T)/Z")

# %% [markdown]
# Eight runs at a rough load, hot and then annealed (shaded). The model's hypothesis for
# phase III: a hot run can climb off the walls and wander over the bottom of the bowl, and
# when $T$ cools each run freezes in whichever well it happens to be in, so that different
# runs end in different wells with barriers between them. The chart shows what the
# simulated runs do.

# %%
traj_T = 0.3
tr = rugged.simulate(landscape, rough_load, traj_T, 8, n_steps=num_steps, anneal_steps=anneal_steps,
                     lr=lr, init_std=init_std, seed=seed, record_every=20)
rugged.trajectory_chart(rugged.trajectory_table(tr), num_steps, anneal_steps,
                        f"load {rough_load:g}, T = {traj_T:g}, then annealed to 0 (shaded)")

# %% [markdown]
# ## The 1D phase diagram
#
# The taxonomy's classifier (`landscape_utils.experiments.taxonomy.classify`) is applied unchanged.
# Only its thresholds are rescaled from the network units (cross-entropy, percentage points
# of error, softmax CKA) to this model's units. The envelope is $\tfrac12 w^2$, and a walker
# in it at temperature $T$ has excess loss $\approx T/2$, pair mc $\approx T/4$ and
# similarity $\approx 1/\sqrt{1 + 2T/\ell^2}$:

# %%
thresholds = rugged.rescaled_thresholds()
why = {"train_loss_high": "thermal excess loss at T = 0.2, or |w| ≈ 3ℓ from the bottom",
       "mc_neg": "a barrier as high as the rugged term's std at load 1",
       "mc_pos": "mc ≈ T/4 of a thermal pair at T = 0.2",
       "cka_high": "thermal pairs at T ≈ 0.018: within ~1.3 ℓ, the same well"}
pd.DataFrame({"networks": {k: getattr(PhaseThresholds(), k) for k in why},
              "1D model": {k: getattr(thresholds, k) for k in why}, "meaning in 1D": why})

# %% [markdown]
# Two diagrams from the same runs: read at the end of the constant-temperature phase
# (still at $T$), and after annealing (trained on to zero loss). Load increases to the
# right and the hottest temperature is at the top, as in every phase diagram of the book.
# What each phase means in this model, as a hypothesis the maps test:
#
# - **I**: runs slide down from their start and stop in the first well they meet, high on
#   the walls: high loss, narrow wells (large curvature), barriers between pairs.
# - **II**: runs are a thermal cloud spread across the bowl; the segment between two of
#   them dips through the valley and beats both endpoints (mc ≈ $T/4$ > 0). Annealing should
#   remove it.
# - **III**: low loss, yet pairs separated by barriers: runs that reached the bottom of the
#   bowl but froze in different wells.
# - **IV-A / IV-B**: one basin (mc ≈ 0), with the runs farther apart than the correlation
#   length (IV-A) or within it (IV-B).
#
# Below each map, where every phase lies (`load_pos`: 0 smallest load, 1 largest;
# `heat_pos`: 0 coldest, 1 hottest) and the means of its metrics.

# %%
states = {"stopped at T": table[~table.annealed], "annealed to T = 0": table[table.annealed]}
rugged.phase_maps(states)

# %%
extents = {s: rugged.phase_extent(df) for s, df in states.items()}
pd.concat({s: extents[s][["n_cells", "load_pos", "heat_pos"]].join(phase_summary(
    df, df.phase, target="test_loss")[["train_loss_mean", "test_loss_mean", "mc_mean",
                                       "cka_mean"]]) for s, df in states.items()},
          names=["state"]).round(3)

# %% [markdown]
# The metrics behind the maps, for the runs stopped at $T$, in the book's colours (dark red
# is worse: higher loss, sharper, farther apart; red mc is a barrier):

# %%
rugged.metric_panels(states["stopped at T"])

# %% [markdown]
# How sensitive are the maps to the rescaled thresholds? Each threshold moved by ±25%: the
# number of cells that change phase, per state.

# %%
pd.concat({s: sensitivity(df, thresholds) for s, df in states.items()}, names=["state"]
          ).reset_index().pivot_table(index="threshold", columns=["state", "direction"],
                                      values="n_changed", sort=False)

# %% [markdown]
# ### Next to the networks
#
# Does the model put phase III where the networks have it? The networks' phase maps come
# from chapter 4 (this build's grid, when chapter 4 has run with the same `workdir`) and
# from the authors' released metrics. Positions on the temperature axis are compared as
# `heat_pos` (0 coldest, 1 hottest, whatever the axis: a large batch is cold), with the 1D
# state fixed before the runs: annealed to T = 0, because the networks' learning rate is
# decayed at the end of training (the paper's ×0.1, ours ×0.3), which annealing stands for.
# (Choosing the state with the most phase-III cells after looking would let the verdict
# follow whichever state `init_std` happens to favour.) Placements within `placement_tol`
# agree.

# %%
table.to_csv(Path(workdir) / "tables" / "rugged_phase_cells.csv", index=False)
networks = {AUTHORS_GRID: (load_authors_grid().cells, "width", "batch_size")}
try:
    load_axis, temp_axis = tables.read_axes(workdir)
    networks[THIS_BUILD] = (tables.read_table(workdir, "phase_cells"), load_axis.name,
                              temp_axis.name)
except FileNotFoundError as err:
    print(f"this build's networks are left out ({Path(str(err).split(' not found')[0]).name} "
          "is missing: chapter 4 writes it)")
net_extents = {g: rugged.phase_extent(df, x, y) for g, (df, x, y) in networks.items()}
rugged.placement_table({**{f"1D, {s}": e for s, e in extents.items()},
                        **{f"networks, {g}": e for g, e in net_extents.items()}}).round(2)

# %%
alt.hconcat(*[plotting.phase_map(df, x=x, y=y, title=f"networks: {g}")
              for g, (df, x, y) in networks.items()])

# %% [markdown]
# How much does the 1D placement of phase III depend on where the runs start? The same
# diagram redrawn at the other `placement_init_stds` (annealed state only, the one compared
# with the networks):

# %%
by_init = {f"init_std {init_std:g}": extents["annealed to T = 0"]}
for s0 in placement_init_stds:
    t0 = rugged.phase_diagram(loads, temperatures, num_runs, seed, landscape=landscape,
                              n_realizations=diagram_realizations, n_steps=num_steps,
                              anneal_steps=anneal_steps, lr=lr, init_std=float(s0))
    by_init[f"init_std {float(s0):g}"] = rugged.phase_extent(t0[t0.annealed])
rugged.placement_table(by_init).round(2)

# %% [markdown]
# ## Does training to zero loss help? It depends on the connectivity
#
# The paper finds that in poorly connected landscapes, training to zero loss can make the
# test accuracy *worse*. The 1D version compares the same runs stopped at $T$ with the same
# runs annealed on to $T = 0$, at the loads `anneal_loads`, averaged over
# `anneal_realizations` independent landscapes. A load counts as poorly connected when the
# mean mc of its annealed runs is below $-$`mc_neg`.
#
# Each point below is one landscape at one temperature: how much annealing changed the
# train loss (x) and the test loss (y). On the diagonal, the test loss fell as much as the
# train loss did; above the dotted zero line, annealing made the test loss worse.

# %%
ann = rugged.annealing_experiment(anneal_loads, anneal_temperatures, anneal_realizations,
                                  anneal_runs, seed, landscape=landscape, n_steps=num_steps,
                                  anneal_steps=anneal_steps, lr=lr, init_std=init_std)
deltas = rugged.annealing_deltas(ann)
rugged.annealing_chart(deltas)

# %%
ann_summary = rugged.annealing_summary(deltas, mc_neg=thresholds.mc_neg)
ann_summary.round(3)

# %% [markdown]
# ## Explore
#
# **In the static book**, the two sliders under the chart pick a cell of the grid above (by
# index; the chart's label shows its load and temperature). The browser recomputes $L$ and
# the effective landscape $L_T$ from the closed form and overlays `explorer_runs` endpoints
# of that cell from the simulation above, stopped at $T$ and annealed, at their train loss.
# **In JupyterLab**, the same cell shows a live version that runs a fresh simulation for any
# load and temperature, with or without annealing.

# %%
ends_T, ends_A = (sim.before_anneal, sim.endpoints) if diagram_realizations == 1 else \
    (sim.before_anneal[0], sim.endpoints[0])   # landscape 0 of the pooled realizations
points = rugged.explorer_points(landscape, {"stopped at T": ends_T, "annealed": ends_A}, loads,
                                min(explorer_runs, num_runs))
start = (int(np.argmin(np.abs(loads - rough_load))), int(np.argmin(np.abs(temperatures - 0.1))))
live_or_static(
    rugged.static_explorer(landscape, loads, temperatures, points, w_grid, start),
    lambda: LiveChart(
        lambda load, T, anneal: rugged.live_chart(
            landscape, load, T, anneal, n_steps=num_steps, anneal_steps=anneal_steps, lr=lr,
            init_std=init_std, seed=seed, w=w_grid),
        {"load": Control("log_slider", rough_load, loads.min(), loads.max(), 0.05),
         "T": Control("log_slider", 0.1, temperatures.min(), temperatures.max(), 0.1),
         "anneal": Control("checkbox", False, description="anneal to T = 0")}))

# %% [markdown]
# ## What the model can and cannot say
#
# **What it is built to show.** Noise smooths (the closed form of $L_T$): at a temperature
# comparable to the well depth the effective landscape is the convex envelope. Less
# roughness relative to the envelope (a larger load) removes wells. In phase II the
# endpoints are samples of a thermal cloud, so annealing should turn II into IV. The
# hypothesis for III is "heat first, then cold": runs find the bottom of the bowl and then
# freeze in different wells. The findings below check these on the runs, and check whether
# that places phase III where the networks have it.
#
# **What it cannot express.**
#
# - **Anything high-dimensional.** One coordinate has no permutation symmetries and no
#   wedges or tunnels (chapter 6). Its only path between two runs is the segment, so a
#   fitted Bezier curve can do no better.
# - **Why width or data smooth a real landscape.** Here the load enters as an assumption
#   ($A \propto 1/\text{load}$). The model can reproduce consequences, not the cause.
# - **A systematic harm from training to zero loss.** The test realization is independent
#   of the training one, so fitting the training wells can only be neutral *on average*; a
#   systematic harm needs memorized structure that transfers with the wrong sign, as
#   memorized noisy labels do in a network.
# - **SGD noise as it really is.** The noise here is isotropic, constant, and independent of
#   the loss. Real SGD noise shrinks as the loss goes to zero and follows the Hessian.
# - **IV-A versus IV-B in the network sense.** The similarity here is a kernel on the
#   distance between weights, not a comparison of the functions two networks compute.
#
# ## What this grid shows

# %%
PLACEMENT_STATE = "annealed to T = 0"  # fixed before the runs (see "Next to the networks")
CLAIM_III = (f"the 1D model ({PLACEMENT_STATE}) puts phase III where the networks have it "
             "(the same end of the temperature axis)")
found = [Finding("phase_iii_placement_1d", CLAIM_III, **{k: v[k] for k in
                 ("verdict", "evidence", "n")}, grid=g)
         for g, v in ((g, rugged.placement_verdict(extents, e, tol=placement_tol,
                                                   state=PLACEMENT_STATE))
                      for g, e in net_extents.items())]
ann_v = rugged.annealing_verdicts(ann_summary)
# kind: "description" for checks that can only go one way: annealing to T = 0 removes the
# thermal cloud by construction, and the test landscape is an independent draw, so
# annealing cannot raise the test loss systematically (see "What it cannot express")
for key, claim, v, kind in (
        ("annealing_removes_phase_ii_1d", "annealing to T = 0 turns phase II into IV (a "
         "description: it removes the thermal cloud by construction)",
         rugged.phase_ii_verdict(table), "description"),
        ("zero_loss_hurts_when_poorly_connected_1d",
         "annealing raises the test loss at poorly connected loads (a description: the test "
         "landscape is an independent draw, so it cannot hold here)", ann_v["hurts"],
         "description"),
        ("zero_loss_gap_1d", "annealing lowers the test loss less, relative to the train "
         "loss, at poorly connected loads than at well connected ones", ann_v["gap"], "rule")):
    found.append(Finding(key, claim, v["verdict"], v["evidence"], v["n"], grid="1D model",
                         p_value=v.get("p_value"), kind=kind))
write_findings(workdir, "05_rugged_convexity", found)
show_findings(found)

# %%
print(f"chapter numerics took {time.perf_counter() - started:.1f} s "
      f"(seed {seed}, landscape seed {landscape_seed})")
