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
# # 1. The training grid
#
# We train a grid of models: a **load-like** axis (here the width by default: more width,
# more capacity relative to the data) against a **temperature-like** axis (the batch size by
# default: a smaller batch means noisier SGD, a hotter optimizer), with several seeds per
# cell. Seeds differ in initialization and data order; every seed of a cell sees the same
# training set.
#
# Each run is stored in its own folder under `workdir`, named by a hash of its full
# configuration, so rerunning this chapter only trains what is missing. The results table
# it leaves behind is what every later chapter reads.

# %% tags=["parameters"]
device: str = "auto"              # "auto": CUDA when present, else CPU
workdir: str = "../build/work/lab"  # run store shared by all chapters
dataset: str = "mnist1d"          # mnist1d (offline default) | digits | cifar10 | cifar100 | svhn
data_root: str = "../data"        # where torchvision datasets live (cifar/svhn only)
download: bool = False            # allow torchvision to download a missing dataset
model: str = "mlp"                # mlp | cnn | resnet18
load_axis: str = "width"          # width | data_fraction | label_noise
load_values: list = [4, 16, 64, 256]         # left to right: more capacity per sample
temperature_axis: str = "batch_size"         # batch_size | lr | weight_decay
temperature_values: list = [16, 32, 64, 256]  # small batch is hot
num_seeds: int = 3                # at least 2: connectivity and CKA compare seeds
first_seed: int = 0               # seeds first_seed, first_seed + 1, ...: a held-out build uses fresh ones
width: int = 32                   # used when width is not the load axis
depth: int = 2                    # hidden layers of the MLP
batch_norm: bool = False          # BatchNorm after each layer
lr: float = 0.1                   # SGD learning rate (constant unless schedule says otherwise)
momentum: float = 0.9
weight_decay: float = 5e-4
batch_size: int = 64              # used when batch size is not the temperature axis
num_epochs: int = 100
schedule: str = "constant"        # constant | step | cosine
decay_at: float = 0.75            # step schedule: fraction of training after which the lr drops (the paper: epoch 75 of 100)
decay_factor: float = 0.1         # step schedule: the lr is multiplied by this at decay_at
label_noise: float = 0.0          # fraction of training labels replaced by another class
data_fraction: float = 0.25       # fraction of the training set used (a quarter of MNIST-1D fits in 100 epochs)
early_stop: bool = False          # the paper's rule: |Δ train loss| < 1e-4 for 5 epochs
optimizer: str = "sgd"            # sgd: SGD with momentum, the paper's optimizer
precision: str = "fp32"           # training steps: fp32 | tf32 | bf16 (the last two on CUDA); metrics stay float32
fit_acc: float = 0.99             # train accuracy at which a model counts as fitting its training set
executor: str = "process"         # serial | process | ray (see the README on GPU servers)
workers: int = 0                  # process executor: worker processes; 0 means one per GPU slot, or per core
workers_per_gpu: int = 1          # process executor on GPUs: workers sharing one GPU (each worker is pinned to one)
ray_address: str = ""             # ray executor: empty starts a local Ray; "auto" joins this node's cluster; or host:port
ray_num_gpus: float = 0.0         # ray executor: GPUs per task (one grid cell); a fraction shares a GPU, 0.5 runs two per GPU
ray_num_cpus: float = 1.0         # ray executor: CPUs per task
max_retries: int = 3              # ray executor: retries of a task whose worker dies, or that hits an I/O error or CUDA OOM
num_threads: int = 1              # torch CPU threads in this kernel (the serial executor); 0 keeps torch's default

# %%
from dataclasses import replace

import altair as alt
import torch

from landscape_utils.core import plotting
from landscape_utils.core.axes import axis_info, hot_order, load_order
from landscape_utils.core.settings import executor_options
from landscape_utils.core.utils import resolve_device
from landscape_utils.experiments.findings import majority_verdict, show_findings, spearman_verdict, write_findings
from landscape_utils.experiments.protocol import cold_end_converges
from landscape_utils.experiments.taxonomy import cell_table
from landscape_utils.runs.runner import COLLAPSED_CHANCE_MULTIPLE, grid_from_params, mark_collapsed, run_grid
from landscape_utils.runs.store import load_history
from landscape_utils.runs.tables import write_grid, write_table

dev = resolve_device(device)
if num_threads > 0:  # tiny models train fastest on one thread of a shared machine
    torch.set_num_threads(num_threads)
configs = grid_from_params(globals())  # the same grid the book driver checks before it runs
options = executor_options(globals())  # executor, workers, ray_*: as in every chapter
print(f"{len(configs)} runs: {len(load_values)} {load_axis} x {len(temperature_values)} "
      f"{temperature_axis} x {num_seeds} seeds ({first_seed} to {first_seed + num_seeds - 1}), on {dev}, "
      f"executor {executor}")

# %% [markdown]
# ## Train (or resume)

# %%
results = run_grid(configs, workdir, device=str(dev), data_root=data_root, download=download, **options)
write_grid(workdir, results, load_axis, temperature_axis)
diverged = results[results.status == "diverged"]
if len(diverged):
    print(f"{len(diverged)} run(s) diverged and are left out of the panels:")
    print(diverged[["run_id", load_axis, temperature_axis, "seed"]].to_string(index=False))
chance = mark_collapsed(results).query("collapsed")  # kept in the tables: early, or collapsed?
if len(chance):
    print(f"{len(chance)} run(s) ended no better than chance (train accuracy below "
          f"{COLLAPSED_CHANCE_MULTIPLE:g} / classes): too early in training, or collapsed by too hot a "
          "setting; they stay in the tables, and their cells' labels say nothing about a landscape:")
    print(chance[["run_id", load_axis, temperature_axis, "seed", "train_acc", "train_loss"]].to_string(index=False))
print(f"training took {results.train_time_s.sum():.0f} s in total; "
      f"{results.num_params.min()}-{results.num_params.max()} parameters per model")

# %% [markdown]
# ## Accuracy and loss over the grid
#
# Each panel is a phase diagram: load on x, temperature on y with the hottest setting on top.
# Hover over a cell for the mean and the spread over seeds. On every panel the darker end of
# the colour scale is the worse one (lower accuracy, higher loss).

# %%
cells = cell_table(results, load_axis, temperature_axis,
                   metrics=("train_loss", "train_acc", "test_loss", "test_acc"))
write_table(workdir, "grid_cells", cells, axes=[load_axis, temperature_axis])
plotting.phase_panels(cells, ["test_acc", "train_acc", "train_loss", "test_loss"],
                      x=load_axis, y=temperature_axis)

# %%
best = cells.loc[cells.test_acc.idxmax()]
print(f"test accuracy over the cells: {cells.test_acc.min():.3f} to {cells.test_acc.max():.3f}")
print(f"best cell: {load_axis} {best[load_axis]:g}, {temperature_axis} {best[temperature_axis]:g}, "
      f"{best.test_acc:.3f} ± {best.test_acc_std:.3f} (sd over {best.n_seeds:.0f} seeds)")

# %% [markdown]
# ## Learning curves
#
# Training loss per epoch (running average in train mode), one panel per temperature
# (hottest first) and one line per run, coloured by the load.

# %%
hist = load_history(workdir, results.run_id).merge(
    results[["run_id", load_axis, temperature_axis, "seed"]], on="run_id")
temps = hot_order(temperature_axis, temperature_values)
panels = min(len(temps), 2)
alt.Chart(hist, width=plotting.fit_width(panels), height=140).mark_line(
    strokeWidth=1, opacity=0.8).encode(
    x=alt.X("epoch:Q"),
    y=alt.Y("train_loss:Q", scale=alt.Scale(type="log"), title="train loss"),
    color=plotting.line_color(f"{load_axis}:O", axis_info(load_axis).title,
                              sort=load_order(load_axis, load_values), scheme="viridis"),
    detail="run_id:N",
).facet(facet=alt.Facet(f"{temperature_axis}:O", sort=temps, title=axis_info(temperature_axis).title),
        columns=panels)

# %% [markdown]
# ## What this grid shows
#
# Yang et al. place phase I at the small loads, where the model cannot fit the training set
# at any temperature, and phases III and IV at the large loads, where it fits. These
# findings test the fitting half of that picture on this build's grid: a cell *fits* when
# its mean train accuracy over seeds reaches `fit_acc`. Whether the fitted solutions differ
# in sharpness (chapter 2) and in how they connect to each other (chapter 3) is what
# separates the phases (chapter 4).
#
# One control comes first: **the cold end converges**. In the paper's grids the train loss
# falls toward the cold end, where runs converge, while noise keeps the hot ones from it. A
# cold column whose runs trained for fewer steps (a large batch on a small training set
# takes few steps per epoch) ends with a higher train loss instead, and its phase labels
# then have another cause than the paper's. The finding compares, at every load, the
# per-seed train losses of the coldest and the hottest temperature.

# %%
by_load = load_order(load_axis, cells[load_axis])  # least capacity first
findings = []
for key, value, fits in (("widest_load_fits", by_load[-1], True),
                         ("smallest_load_underfits", by_load[0], False)):
    at = cells[cells[load_axis] == value].set_index(temperature_axis).loc[temps]
    v = majority_verdict(list((at.train_acc >= fit_acc) == fits), threshold=0.999, min_n=1,
                         what=f"{temperature_axis} values")
    accs = "; ".join(f"{t:g}: {a:.3f}" + (f" ± {s:.3f}" if s == s else "")  # no sd from one seed
                     for t, a, s in zip(at.index, at.train_acc, at.train_acc_std))
    claim = (f"At the {'largest' if fits else 'smallest'} load ({load_axis} {value:g}) "
             f"{'every' if fits else 'no'} temperature fits the training set "
             f"(train accuracy {'≥' if fits else '<'} {fit_acc:g} in every cell)")
    findings.append(replace(v.finding(key, claim), evidence=(
        f"{v.evidence}; train accuracy ± sd over seeds by {temperature_axis}: {accs}")))
findings.append(spearman_verdict(
    cells[load_axis].map(by_load.index), cells.train_loss, expect="negative",
    names=("load rank", "train loss")).finding(
    "train_loss_falls_with_load", "The train loss falls as the load gives more capacity per sample"))
findings.insert(0, cold_end_converges(results, load_axis, temperature_axis))
write_findings(workdir, "01_training_grid", findings)
show_findings(findings)
