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
width: int = 32                   # used when width is not the load axis
depth: int = 2                    # hidden layers of the MLP
batch_norm: bool = False          # BatchNorm after each layer
lr: float = 0.1                   # SGD learning rate (constant unless schedule says otherwise)
momentum: float = 0.9
weight_decay: float = 5e-4
batch_size: int = 64              # used when batch size is not the temperature axis
num_epochs: int = 100
schedule: str = "constant"        # constant | step | cosine
label_noise: float = 0.0          # fraction of training labels replaced by another class
data_fraction: float = 0.25       # fraction of the training set used (a quarter of MNIST-1D fits in 100 epochs)
early_stop: bool = False          # the paper's rule: |Δ train loss| < 1e-4 for 5 epochs
optimizer: str = "sgd"            # sgd: SGD with momentum, the paper's optimizer
precision: str = "fp32"           # training steps: fp32 | tf32 | bf16 (the last two on CUDA); metrics stay float32
executor: str = "serial"          # serial | process | ray (see the README on GPU servers)
workers: int = 2                  # process executor: worker processes; 0 means one per GPU slot, or per core
workers_per_gpu: int = 1          # process executor on GPUs: workers sharing one GPU (each worker is pinned to one)
ray_address: str = ""             # ray executor: empty starts a local Ray; "auto" joins this node's cluster; or host:port
ray_num_gpus: float = 0.0         # ray executor: GPUs per task (one grid cell); a fraction shares a GPU, 0.5 runs two per GPU
ray_num_cpus: float = 1.0         # ray executor: CPUs per task
max_retries: int = 3              # ray executor: retries of a task whose worker dies, or that hits an I/O error or CUDA OOM
num_threads: int = 1              # torch CPU threads in this kernel (the serial executor); 0 keeps torch's default

# %%
from pathlib import Path

import altair as alt
import pandas as pd
import torch

from landscape_utils import plotting
from landscape_utils.runner import expand_grid, run_grid
from landscape_utils.store import load_history
from landscape_utils.taxonomy import cell_table
from landscape_utils.utils import resolve_device

dev = resolve_device(device)
if num_threads > 0:  # tiny models train fastest on one thread of a shared machine
    torch.set_num_threads(num_threads)
base = dict(dataset=dataset, model=model, width=width, depth=depth, batch_norm=batch_norm, optimizer=optimizer,
            lr=lr, momentum=momentum, weight_decay=weight_decay, batch_size=batch_size, num_epochs=num_epochs,
            schedule=schedule, label_noise=label_noise, data_fraction=data_fraction, early_stop=early_stop,
            precision=precision)
axes = {load_axis: list(load_values), temperature_axis: list(temperature_values)}
configs = expand_grid(base, axes, seeds=range(num_seeds))
executor_options = dict(workers=workers, workers_per_gpu=workers_per_gpu, ray_address=ray_address,
                        ray_num_gpus=ray_num_gpus, ray_num_cpus=ray_num_cpus, max_retries=max_retries)
print(f"{len(configs)} runs: {len(load_values)} {load_axis} x {len(temperature_values)} "
      f"{temperature_axis} x {num_seeds} seeds, on {dev}")

# %% [markdown]
# ## Train (or resume)

# %%
results = run_grid(configs, workdir, device=str(dev), executor=executor, data_root=data_root,
                   download=download, **executor_options)
tables = Path(workdir) / "tables"
tables.mkdir(parents=True, exist_ok=True)
results.to_csv(tables / "grid.csv", index=False)
pd.Series({"load_axis": load_axis, "temperature_axis": temperature_axis}).to_json(tables / "grid_axes.json")
diverged = results[results.status == "diverged"]
if len(diverged):
    print(f"{len(diverged)} run(s) diverged and are left out of the panels:")
    print(diverged[["run_id", load_axis, temperature_axis, "seed"]].to_string(index=False))
print(f"training took {results.train_time_s.sum():.0f} s in total; "
      f"{results.num_params.min()}-{results.num_params.max()} parameters per model")

# %% [markdown]
# ## Accuracy and loss over the grid
#
# Each panel is a phase diagram: load on x, temperature on y with the hottest setting on top.
# Hover over a cell for the mean and the spread over seeds.

# %%
cells = cell_table(results, load_axis, temperature_axis,
                   metrics=("train_loss", "train_acc", "test_loss", "test_acc"))
cells.to_csv(tables / "grid_cells.csv", index=False)
plotting.phase_panels(cells, ["test_acc", "train_acc", "train_loss", "test_loss"],
                      x=load_axis, y=temperature_axis, columns=2)

# %%
best = cells.test_acc.idxmax()
print(f"test accuracy ranges from {cells.test_acc.min():.3f} to {cells.test_acc.max():.3f}; "
      f"best at {load_axis}={cells.at[best, load_axis]}, {temperature_axis}={cells.at[best, temperature_axis]}")

# %% [markdown]
# ## Learning curves
#
# Training loss per epoch (running average in train mode), one line per seed, for every
# cell. Columns are the load and rows the temperature, as in the panels above.

# %%
hist = load_history(workdir, results.run_id).merge(
    results[["run_id", load_axis, temperature_axis, "seed"]], on="run_id")
alt.Chart(hist, width=130, height=90).mark_line(strokeWidth=1).encode(
    x=alt.X("epoch:Q"),
    y=alt.Y("train_loss:Q", scale=alt.Scale(type="log"), title="train loss"),
    color=alt.Color("seed:N"),
    detail="run_id:N",
).facet(column=alt.Column(f"{load_axis}:O", sort=sorted(load_values)),
        row=alt.Row(f"{temperature_axis}:O", sort=sorted(temperature_values)))

# %% [markdown]
# ## What to take from this chapter
#
# Small models at any temperature cannot fit the training set: their train loss stays high.
# Wide models fit it, and the temperature then decides *which* of the many zero-loss
# solutions they land in. Whether those solutions differ in sharpness (chapter 2) and in how
# they connect to each other (chapter 3) is what separates the phases (chapter 4).
