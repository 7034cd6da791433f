"""Vectorized seed population vs sequential ``train_run``: models trained per second."""
from __future__ import annotations

from dataclasses import replace

import torch

from landscape_utils.core.data import Dataset, load_dataset
from landscape_utils.core.population import supports_population, train_population
from landscape_utils.core.train import RunConfig

from . import Row, interleaved


def _subset(data: Dataset, n: int) -> Dataset:
    return replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n],
                   y_train_clean=data.y_train_clean[:n])


def cifar_shaped(n_train: int, n_test: int, k: int = 10, seed: int = 0) -> Dataset:
    """Random CIFAR-10-shaped data: (n, 3, 32, 32) inputs, k classes (class templates plus
    noise). Speed does not depend on the pixel values, and nothing is read from disk."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, 3, 32, 32, generator=g)

    def draw(n):
        y = torch.randint(0, k, (n,), generator=g)
        return centers[y] + torch.randn(n, 3, 32, 32, generator=g), y

    (x_tr, y_tr), (x_te, y_te) = draw(n_train), draw(n_test)
    return Dataset(x_tr, y_tr, x_te, y_te, y_tr.clone(), k, "cifar-shaped", 0.0)


def cases(quick: bool) -> list[tuple[str, int, int, bool]]:
    """(model, S, width, batch_norm) to measure."""
    if quick:
        return [("mlp", 2, 16, False), ("cnn", 2, 4, False), ("resnet18", 2, 1, True)]
    out = [("mlp", S, w, False) for S in (2, 5, 10) for w in (16, 64, 256)]
    out += [("mlp", 5, 64, True)]
    out += [("cnn", S, w, False) for S in (2, 5, 10) for w in (8, 32)]
    out += [("resnet18", 5, w, True) for w in (1, 2, 4, 8)]  # the paper's model, small widths
    return out


def _compare(configs: list[RunConfig], data: Dataset, repeats: int) -> dict[str, float]:
    """Median seconds to train ``configs`` (one cell) sequentially and as one population."""
    warm = [replace(c, num_epochs=1) for c in configs[:2]]

    def sequential():
        for _ in train_population(configs, data, vectorize=False):
            pass

    def vectorized():
        for _ in train_population(configs, data):
            pass

    # warm-up: one short run of each kind (allocator, kernels, lazy imports)
    list(train_population(warm, data, vectorize=False))
    list(train_population(warm, data))
    return interleaved({"sequential": sequential, "vectorized": vectorized}, repeats, warmup=0)


def run(quick: bool = False, repeats: int = 3, models: tuple[str, ...] | None = None) -> list[Row]:
    """MLP and CNN: MNIST-1D, batch 32, SGD with momentum; full: 2 epochs of 4000 samples
    (250 steps per model); quick: 1 epoch of 256 samples. ResNet18 (BatchNorm, the paper's
    model): CIFAR-shaped random data, batch 32; full: 1 epoch of 256 samples (8 steps per
    model) and a test set of 256; quick: 64 and 32 samples.

    Both contenders are the grid runner's entry point ``population.train_population``:
    with ``vectorize=True`` (its default, the stacked population trainer) and with
    ``vectorize=False`` (one ``train_run`` per seed). Each timing covers training and the
    final evaluation of every member, i.e. everything the runner waits for. ``models``
    keeps only the cases of those models (e.g. ``("resnet18",)``)."""
    mnist = load_dataset("mnist1d")
    images = cifar_shaped(256, 256)
    num_epochs = 2
    if quick:
        mnist, images, num_epochs, repeats = _subset(mnist, 256), cifar_shaped(64, 32), 1, 1
    rows = []
    for model, S, width, bn in cases(quick):
        if models is not None and model not in models:
            continue
        data, epochs = (images, 1) if model == "resnet18" else (mnist, num_epochs)
        configs = [RunConfig(model=model, width=width, batch_norm=bn, batch_size=32,
                             num_epochs=epochs, seed=s) for s in range(S)]
        assert supports_population(configs[0])
        t = _compare(configs, data, repeats)
        case = f"{model}{'+bn' if bn and model != 'resnet18' else ''} S={S} width={width}"
        rows.append(Row("population", case, t["sequential"] / t["vectorized"],
                        "models/s, vectorized population vs sequential train_run",
                        {"vectorized_models_per_s": S / t["vectorized"],
                         "sequential_models_per_s": S / t["sequential"],
                         "steps_per_model": epochs * (data.num_train // 32)}))
    return rows


# ------------------------------------------------------------ across the lr axis
LR_AXIS = (0.02, 0.05, 0.1, 0.2)  # 4 temperatures, around the default's lr 0.1


def lr_axis_cases(quick: bool) -> list[tuple[int, int, int]]:
    """(width, batch_size, num_epochs) of the default's model to measure."""
    if quick:
        return [(4, 32, 1)]
    return [(w, 32, 1) for w in (8, 16, 32)] + [(w, 128, 2) for w in (8, 16, 32)]


def lr_axis(quick: bool = False, repeats: int = 3) -> list[Row]:
    """Populations across the lr axis: one cell's worth of a grid whose temperature axis is
    the lr, S = 12 (4 lrs x 3 seeds), trained three ways side by side in this process:

    * ``lr populations``: the populations ``runner.populations`` now makes of the 12 (one
      stack of 12 where a step's layer outputs stay under its budget, else stacks of
      whole lr cells), each trained by ``population.train_population``;
    * ``one stack of 12``: all 12 members as one stacked population, whatever the size;
    * ``seed populations``: four populations of 3 seeds, one per lr (what the runner did before);
    * ``one at a time``: 12 ``train_run`` (``train_population(..., vectorize=False)``).

    The default's model (params/default.yaml: SmallCNN with BatchNorm on half of MNIST-1D,
    2000 samples, momentum 0.9, weight decay 5e-4, step decay x0.3 at 90 %), widths 8-32,
    batch 32 (1 epoch, 62 steps per model) and 128 (2 epochs, 30 steps). Quick: width 4,
    4 members (2 lrs x 2 seeds), 256 samples. Times include every member's final
    evaluation. Ratio: one at a time / lr populations."""
    from landscape_utils.runs.runner import populations

    lrs, seeds = (LR_AXIS[1:3], range(2)) if quick else (LR_AXIS, range(3))
    base = RunConfig(dataset="mnist1d", data_fraction=0.5, model="cnn", batch_norm=True,
                     momentum=0.9, weight_decay=5e-4, schedule="step", decay_at=0.9, decay_factor=0.3)
    data = base.load_data()
    if quick:
        data, repeats = _subset(data, 256), 1
    rows = []
    for width, batch, epochs in lr_axis_cases(quick):
        cell = replace(base, width=width, batch_size=batch, num_epochs=epochs)
        configs = [replace(cell, lr=lr, seed=s) for lr in lrs for s in seeds]
        by_lr = [[c for c in configs if c.lr == lr] for lr in lrs]
        assert supports_population(cell)

        def drain(members, **kw):
            for _ in train_population(members, data, **kw):
                pass

        pops = populations(configs)
        t = interleaved({"one_at_a_time": lambda: drain(configs, vectorize=False),
                         "seed_populations": lambda: [drain(m) for m in by_lr],
                         "lr_populations": lambda: [drain(p) for p in pops],
                         "one_stack": lambda: drain(configs)},
                        repeats, warmup=1)
        S = len(configs)
        rows.append(Row(
            "population_lr",
            f"cnn+bn width={width} batch={batch} S={S} ({len(lrs)} lrs x {len(seeds)} seeds)",
            t["one_at_a_time"] / t["lr_populations"],
            "models/s, the runner's populations across the lr axis vs one train_run at a time",
            {"population_sizes": "+".join(str(len(p)) for p in pops),
             "vs_seed_populations": t["seed_populations"] / t["lr_populations"],
             "one_stack_vs_one_at_a_time": t["one_at_a_time"] / t["one_stack"],
             "lr_populations_s": t["lr_populations"], "one_stack_s": t["one_stack"],
             "seed_populations_s": t["seed_populations"], "one_at_a_time_s": t["one_at_a_time"],
             "steps_per_model": epochs * (data.num_train // batch)}))
    return rows
