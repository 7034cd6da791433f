"""The grid runner: expand a grid into run configs and train the missing ones.

Resuming is free: finished runs (see ``store.Store.is_done``) are skipped. Work is
handed to an *executor* one grid cell (a population of seeds) at a time:

    serial   in this process (default)
    process  a spawn-context process pool with ``workers`` processes

An executor is anything with ``map(fn, tasks) -> iterator of results`` (results
may come back in any order); ``register_executor`` adds one (e.g. Ray).
"""
from __future__ import annotations

import itertools
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import fields, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pandas as pd

from .store import Store, load_results, run_id
from .train import RunConfig, train_population
from .utils import progress_bar, resolve_device

CONFIG_KEYS = tuple(f.name for f in fields(RunConfig))


def expand_grid(base: dict[str, Any], axes: dict[str, list], seeds: Iterable[int]) -> list[RunConfig]:
    """All configs of a grid: ``base`` overridden by every combination of ``axes``, × seeds.

    Example: ``expand_grid({"model": "mlp"}, {"width": [8, 32], "batch_size": [16, 128]}, range(3))``
    gives 12 configs. Unknown keys raise ``ValueError`` naming them.
    """
    unknown = sorted((set(base) | set(axes)) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown run config key(s): {', '.join(unknown)}; known: {', '.join(CONFIG_KEYS)}")
    names = list(axes)
    configs = []
    for values in itertools.product(*(axes[n] for n in names)):
        for seed in seeds:
            configs.append(RunConfig.from_dict({**base, **dict(zip(names, values)), "seed": int(seed)}))
    return configs


def populations(configs: Iterable[RunConfig]) -> list[list[RunConfig]]:
    """Group configs into grid cells (same config but for the seed), in first-seen order."""
    groups: dict[RunConfig, list[RunConfig]] = {}
    for c in configs:
        groups.setdefault(c.cell(), []).append(c)
    return list(groups.values())


# ---- executors ---------------------------------------------------------------
class SerialExecutor:
    """Runs tasks one after another in this process."""

    def map(self, fn: Callable, tasks: list) -> Iterator:
        for t in tasks:
            yield fn(t)

    def close(self) -> None:
        pass


class ProcessExecutor:
    """A process pool (spawn context, so CUDA and threads are safe) of ``workers``."""

    def __init__(self, workers: int = 2):
        self.workers = int(workers)

    def map(self, fn: Callable, tasks: list) -> Iterator:
        with ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                 initializer=_init_worker, initargs=(self.workers,)) as pool:
            futures = [pool.submit(fn, t) for t in tasks]
            for f in as_completed(futures):
                yield f.result()

    def close(self) -> None:
        pass


def _init_worker(workers: int) -> None:
    import torch

    # Share the cores between workers instead of each grabbing all of them.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


EXECUTORS: dict[str, Callable[..., Any]] = {"serial": SerialExecutor, "process": ProcessExecutor}


def register_executor(name: str, factory: Callable[..., Any]) -> None:
    """Make ``executor=name`` available to ``run_grid`` and the params files."""
    EXECUTORS[name] = factory


def make_executor(executor: str | Any = "serial", **options) -> Any:
    if not isinstance(executor, str):
        return executor
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    return EXECUTORS[executor](**options)


# ---- the task and the grid ---------------------------------------------------
def train_cell_task(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Train the unfinished members of one grid cell and store them.

    ``task`` holds plain data (picklable): ``configs`` (list of dicts), ``workdir``,
    ``device``, ``data_root``, ``download``. Returns one summary dict per member.
    """
    from .data import load_dataset

    configs = [RunConfig.from_dict(c) for c in task["configs"]]
    store = Store(task["workdir"])
    todo = [c for c in configs if not store.is_done(c, warn=False)]
    out = [{"run_id": run_id(c), "status": "cached"} for c in configs if c not in todo]
    if not todo:
        return out
    c0 = todo[0]
    device = resolve_device(task.get("device", "auto"))
    data = load_dataset(c0.dataset, c0.data_fraction, c0.label_noise, c0.data_seed,
                        data_root=task.get("data_root", "data"), download=task.get("download", False),
                        device=device)
    for cfg, result in train_population(todo, data, device):
        store.save_run(cfg, result)
        out.append({"run_id": run_id(cfg), "status": result["metrics"]["status"]})
    return out


def run_grid(configs: list[RunConfig], workdir: str | os.PathLike, device: str = "auto",
             executor: str | Any = "serial", workers: int = 2, data_root: str = "data",
             download: bool = False, progress: bool = True) -> pd.DataFrame:
    """Train every config not yet finished in ``workdir``; return their results table.

    Finished runs are skipped, so an interrupted grid resumes where it stopped.
    ``executor`` is ``"serial"``, ``"process"`` (uses ``workers``) or a registered name.
    """
    for c in configs:
        c.validate()
    store = Store(workdir)
    Path(workdir).mkdir(parents=True, exist_ok=True)
    pending = [c for c in configs if not store.is_done(c)]
    tasks = [{"configs": [c.to_dict() for c in pop], "workdir": str(workdir), "device": str(device),
              "data_root": str(data_root), "download": bool(download)}
             for pop in populations(pending)]
    if tasks:
        opts = {"workers": workers} if executor == "process" else {}
        ex = make_executor(executor, **opts)
        bar = progress_bar(total=len(pending), desc=f"training {len(pending)} runs "
                           f"({len(configs) - len(pending)} cached)", disable=not progress)
        try:
            for summaries in ex.map(train_cell_task, tasks):
                bar.update(sum(s["status"] != "cached" for s in summaries))
        finally:
            bar.close()
            ex.close()
    return load_results(workdir, configs)


def with_axis(config: RunConfig, **changes) -> RunConfig:
    """A copy of ``config`` with some fields changed (validated)."""
    new = replace(config, **changes)
    new.validate()
    return new
