"""Vectorized seed population vs sequential ``train_run``: models trained per second."""
from __future__ import annotations

from dataclasses import replace

from landscape_utils.data import Dataset, load_dataset
from landscape_utils.population import supports_population
from landscape_utils.train import RunConfig, train_population

from . import Row, interleaved


def _subset(data: Dataset, n: int) -> Dataset:
    return replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n],
                   y_train_clean=data.y_train_clean[:n])


def cases(quick: bool) -> list[tuple[str, int, int, bool]]:
    """(model, S, width, batch_norm) to measure."""
    if quick:
        return [("mlp", 2, 16, False), ("cnn", 2, 4, False)]
    out = [("mlp", S, w, False) for S in (2, 5, 10) for w in (16, 64, 256)]
    out += [("mlp", 5, 64, True)]
    out += [("cnn", S, w, False) for S in (2, 5, 10) for w in (8, 32)]
    return out


def run(quick: bool = False, repeats: int = 3) -> list[Row]:
    """MNIST-1D, batch 32, SGD with momentum; full: 2 epochs of 4000 samples (250 steps
    per model, as in ALGORITHMS.md §7); quick: 1 epoch of 256 samples.

    Both contenders are the grid runner's entry point ``train.train_population``: with
    ``vectorize=True`` (its default, the stacked population trainer) and with
    ``vectorize=False`` (one ``train_run`` per seed). Each timing covers training and the
    final evaluation of every member, i.e. everything the runner waits for."""
    data = load_dataset("mnist1d")
    num_epochs = 2
    if quick:
        data, num_epochs, repeats = _subset(data, 256), 1, 1
    rows = []
    for model, S, width, bn in cases(quick):
        configs = [RunConfig(model=model, width=width, batch_norm=bn, batch_size=32,
                             num_epochs=num_epochs, seed=s) for s in range(S)]
        assert supports_population(configs[0])
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
        t = interleaved({"sequential": sequential, "vectorized": vectorized}, repeats, warmup=0)
        case = f"{model}{'+bn' if bn else ''} S={S} width={width}"
        rows.append(Row("population", case, t["sequential"] / t["vectorized"],
                        "models/s, vectorized population vs sequential train_run",
                        {"vectorized_models_per_s": S / t["vectorized"],
                         "sequential_models_per_s": S / t["sequential"],
                         "steps_per_model": num_epochs * (data.num_train // 32)}))
    return rows
