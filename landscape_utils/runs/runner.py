"""The grid runner: expand a grid into run configs and train the missing ones.

Resuming is free: finished runs (see ``store.Store.is_done``) are skipped. Work is
handed to an *executor* one grid cell (a population of seeds) at a time:

    serial   in this process (default)
    process  a spawn-context process pool of ``workers`` processes; on GPUs each
             worker is pinned to one GPU (``workers_per_gpu`` workers share one)
    ray      Ray tasks on a local Ray or a cluster (``ray_address``), with
             ``ray_num_gpus`` (fractional allowed) and ``ray_num_cpus`` per task and
             ``max_retries`` retries; needs the optional extra ``landscape_utils[ray]``

An executor is anything with ``map(fn, tasks) -> iterator of results`` (results
may come back in any order) and ``close()``; it may also have ``check()``, called
before any work is handed out (e.g. to see that a cluster is reachable).
``register_executor`` adds one; ``make_executor`` passes each factory only the
options its signature names, so one flat set of options serves every executor.

Several drivers may share a workdir: each run is trained under its own lock
(``store.Store.lock``), so no run is trained twice, and a driver that finds a run
locked moves on and comes back to it at the end.
"""
from __future__ import annotations

import atexit
import contextlib
import inspect
import itertools
import math
import os
import signal
import socket
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import fields, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import pandas as pd
import torch
import torch.nn.functional as F

from ..core.data import _HOWTO
from ..core.models import build_model
from ..core.population import (VARYING_FIELDS, memory_estimate, step_activations, supports_population, train_population)
from ..core.train import RunConfig
from ..core.utils import exit_with_parent, progress_bar, provenance, resolve_device
from .store import Store, load_results, record_usage, run_id

CONFIG_KEYS = tuple(f.name for f in fields(RunConfig))

# Training-set size and input shape of each dataset, so that a grid can be checked
# (batch size against the training set) without loading any data. Kept equal to what
# data.load_dataset returns; tests/test_runner.py compares them for the offline ones.
TRAIN_SIZES = {"mnist1d": 4000, "digits": 1437, "cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257}
INPUT_SHAPES = {"mnist1d": ((40,), 10), "digits": ((1, 8, 8), 10), "cifar10": ((3, 32, 32), 10),
                "cifar100": ((3, 32, 32), 100), "svhn": ((3, 32, 32), 10)}
# The files each torchvision dataset needs under data_root (what core/data.py's loaders read).
DATASET_FILES = {
    "cifar10": [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)] + ["cifar-10-batches-py/test_batch"],
    "cifar100": ["cifar-100-python/train", "cifar-100-python/test"],
    "svhn": ["train_32x32.mat", "test_32x32.mat"],
}


# ---- grids -----------------------------------------------------------------------
def expand_grid(base: dict[str, Any], axes: dict[str, list], seeds: Iterable[int]) -> list[RunConfig]:
    """All configs of a grid: ``base`` overridden by every combination of ``axes``, × seeds.

    Example: ``expand_grid({"model": "mlp"}, {"width": [8, 32], "batch_size": [16, 128]}, range(3))``
    gives 12 configs. Unknown keys raise ``ValueError`` naming them; so does a bad value
    (``RunConfig.validate``).
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


def grid_from_params(params: Mapping[str, Any]) -> list[RunConfig]:
    """The configs of chapter 1's grid from its parameters (a flat mapping).

    Every key that names a ``RunConfig`` field (except ``seed``) goes into the base
    config; ``load_axis``/``load_values`` and ``temperature_axis``/``temperature_values``
    span the grid and ``num_seeds`` seeds fill each cell, from ``first_seed`` on (default
    0; a held-out confirmation rebuilds a grid on fresh seeds, e.g. ``first_seed: 3``).
    Other keys are ignored. The book driver uses it to check the grid before running
    anything.
    """
    base = {k: params[k] for k in CONFIG_KEYS if k in params and k != "seed"}
    for axis in ("load", "temperature"):
        name, values = params[f"{axis}_axis"], params[f"{axis}_values"]
        if name not in CONFIG_KEYS or name == "seed":
            raise ValueError(f"{axis}_axis={name!r} is not a run config field; choose one of "
                             f"{', '.join(k for k in CONFIG_KEYS if k != 'seed')}")
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"{axis}_values must be a non-empty list, got {values!r}")
    if params["load_axis"] == params["temperature_axis"]:
        raise ValueError(f"load_axis and temperature_axis are both {params['load_axis']!r}; "
                         "a phase diagram needs two different axes")
    num_seeds = params["num_seeds"]
    if not isinstance(num_seeds, int) or isinstance(num_seeds, bool) or num_seeds < 1:
        raise ValueError(f"num_seeds must be a positive integer, got {num_seeds!r}")
    first_seed = params.get("first_seed", 0)
    if not isinstance(first_seed, int) or isinstance(first_seed, bool) or first_seed < 0:
        raise ValueError(f"first_seed must be an integer >= 0, got {first_seed!r}")
    axes = {params["load_axis"]: list(params["load_values"]),
            params["temperature_axis"]: list(params["temperature_values"])}
    return expand_grid(base, axes, seeds=range(first_seed, first_seed + num_seeds))


# A population merged from several lr / weight-decay cells is split into whole cells when
# its members' estimated training memory (population.memory_estimate) exceeds this ...
POPULATION_MEMORY_BUDGET = 4 * 2**30
# ... or when one training step's layer outputs, all members together
# (population.step_activations), exceed this. Measured on the 2-core CPU of
# benchmarks/RESULTS.md (SmallCNN with BatchNorm, per step): 12 members stacked ran 1.2-1.4x
# faster than four stacks of 3 at 6-13 MB of outputs and batch 32-64, but 1.3-1.7x slower
# at batch 128 (13-51 MB), where the stacked elementwise ops (BatchNorm, ReLU, pooling) no
# longer stay in cache. 8 MB merges the small-batch cells, where stacking pays most.
POPULATION_STEP_BUDGET = 8 * 2**20


def populations(configs: Iterable[RunConfig], memory_budget: int = POPULATION_MEMORY_BUDGET,
                step_budget: int = POPULATION_STEP_BUDGET) -> list[list[RunConfig]]:
    """Group configs into the populations the runner trains together, one task each.

    A grid cell's seeds (configs equal but for ``seed``) always share a population. When
    the stacked trainer supports the model (``population.supports_population``), cells
    that differ only in ``lr`` and ``weight_decay`` (``population.VARYING_FIELDS``, a
    temperature axis) join the same population, as long as the members' estimated
    training memory stays within ``memory_budget`` bytes and their layer outputs of one
    step within ``step_budget`` bytes (see the constants above); a larger set of such
    cells is split into the fewest populations of whole cells that fit, with near-equal
    numbers of cells. A cell is never split, whatever its size. Duplicate configs count
    once.

    Deterministic, and defined by the configs alone: members are sorted by (lr,
    weight_decay, seed), so a population's members and their order depend only on the
    set of configs given; populations come in the order in which their first config
    appears in ``configs`` (those split from one set of cells, in member order).
    """
    groups: dict[tuple, list[RunConfig]] = {}
    for c in dict.fromkeys(configs):
        merge = supports_population(c)
        free = ("seed", *VARYING_FIELDS) if merge else ("seed",)
        key = (merge, tuple((k, v) for k, v in c.to_dict().items() if k not in free))
        groups.setdefault(key, []).append(c)
    out = []
    for members in groups.values():
        members.sort(key=lambda c: (c.lr, c.weight_decay, c.seed))
        cells = [list(cell) for _, cell in itertools.groupby(members, key=lambda c: (c.lr, c.weight_decay))]
        out.extend(_split_cells(cells, memory_budget, step_budget))
    return out


def _split_cells(cells: list[list[RunConfig]], memory_budget: int,
                 step_budget: int) -> list[list[RunConfig]]:
    """Consecutive runs of whole ``cells`` (same model and batch, so the same sizes per
    member), as few as keep each within both budgets (a cell over budget stands alone),
    with near-equal numbers of cells."""
    if len(cells) == 1:
        return cells
    c0 = cells[0][0]
    shape, k = INPUT_SHAPES[c0.dataset]
    memory, step = memory_estimate(c0, shape, k), step_activations(c0, shape, k)  # per member
    n = len(cells)
    for parts in range(1, n + 1):
        chunks = [sum(cells[i * n // parts:(i + 1) * n // parts], []) for i in range(parts)]
        if all(len(ch) * memory <= memory_budget and len(ch) * step <= step_budget for ch in chunks):
            return chunks
    return cells


def train_size(dataset: str, data_fraction: float = 1.0) -> int:
    """Number of training samples ``data.load_dataset`` gives for this dataset and fraction."""
    if dataset not in TRAIN_SIZES:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(TRAIN_SIZES)}")
    n = TRAIN_SIZES[dataset]
    return n if data_fraction >= 1.0 else max(1, int(round(data_fraction * n)))


def check_dataset_files(dataset: str, data_root: str | os.PathLike, download: bool = False) -> None:
    """Raise ``FileNotFoundError`` naming the folder and the first missing file when a
    torchvision dataset is not under ``data_root`` and ``download`` is false."""
    if download or dataset not in DATASET_FILES:
        return
    root = Path(data_root)
    missing = [f for f in DATASET_FILES[dataset] if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(f"dataset {dataset!r} not found under data_root={str(root)!r} "
                                f"(missing {root / missing[0]}): {_HOWTO[dataset]}")


def check_configs(configs: Iterable[RunConfig], data_root: str | os.PathLike = "data",
                  download: bool = False) -> None:
    """Everything about a grid that can be checked before training, without loading data.

    Each config is validated (names the bad field and value), its batch size must fit
    in its training set, and each torchvision dataset must be present under
    ``data_root`` unless ``download``. Raises ``ValueError`` or ``FileNotFoundError``.
    """
    seen_datasets = set()
    for c in configs:
        c.validate()
        n = train_size(c.dataset, c.data_fraction)
        if c.batch_size > n:
            raise ValueError(f"batch_size={c.batch_size} is larger than the training set of {c.dataset!r} "
                             f"with data_fraction={c.data_fraction} ({n} samples)")
        if c.dataset not in seen_datasets:
            seen_datasets.add(c.dataset)
            check_dataset_files(c.dataset, data_root, download)


# ---- executors -------------------------------------------------------------------
def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else ``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class SerialExecutor:
    """Runs tasks one after another in this process (torch's threads as they are set)."""

    def map(self, fn: Callable, tasks: list) -> Iterator:
        for t in tasks:
            yield fn(t)

    def close(self) -> None:
        pass


def visible_gpus() -> list[str]:
    """The GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else all CUDA devices."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_assignment(workers: int, gpus: list[str], workers_per_gpu: int = 1) -> list[str | None]:
    """The ``CUDA_VISIBLE_DEVICES`` value of each process-pool worker.

    Worker ``w`` gets the single GPU ``gpus[w % len(gpus)]``, so consecutive workers
    land on different GPUs and each GPU gets at most ``workers_per_gpu`` workers. With
    no GPUs every worker gets ``None`` (its environment is left alone). ``workers=0``
    means one worker per slot (``len(gpus) * workers_per_gpu``). More workers than
    slots raise ``ValueError``.
    """
    if not isinstance(workers_per_gpu, int) or isinstance(workers_per_gpu, bool) or workers_per_gpu < 1:
        raise ValueError(f"workers_per_gpu must be a positive integer, got {workers_per_gpu!r}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise ValueError(f"workers must be a non-negative integer (0: one per GPU slot or core), got {workers!r}")
    if not gpus:
        return [None] * (workers or available_cores())
    slots = len(gpus) * workers_per_gpu
    workers = workers or slots
    if workers > slots:
        raise ValueError(f"workers={workers} is more than {len(gpus)} GPU(s) x workers_per_gpu={workers_per_gpu}; "
                         f"set workers to at most {slots} (0 means one per slot) or raise workers_per_gpu")
    return [gpus[w % len(gpus)] for w in range(workers)]


class ProcessExecutor:
    """A process pool (spawn context, so CUDA and threads are safe).

    On CUDA (``device`` "auto" with a GPU present, or "cuda") each worker is pinned to
    one GPU through ``CUDA_VISIBLE_DEVICES``, set in the worker before torch touches
    CUDA; ``workers_per_gpu`` workers may share a GPU (see :func:`gpu_assignment`). On
    the CPU each worker gets ``cores // workers`` torch threads (at least 1), so the
    workers do not oversubscribe the cores. ``workers=0``: one per GPU slot, or one
    per core on the CPU. An explicit device index (``cuda:1``) disables pinning.
    The pool starts with the first ``map`` and serves later ones until ``close()``
    (also a context manager).
    """

    def __init__(self, workers: int = 2, workers_per_gpu: int = 1, device: str = "auto",
                 gpus: list[str] | None = None):
        if gpus is None:
            dev = str(device)
            gpus = visible_gpus() if dev in ("auto", "cuda") and resolve_device(dev).type == "cuda" else []
        self.assignment = gpu_assignment(workers, list(gpus), workers_per_gpu)
        self.workers = len(self.assignment)
        self.threads = max(1, available_cores() // self.workers)
        self._pool: ProcessPoolExecutor | None = None

    def map(self, fn: Callable, tasks: list) -> Iterator:
        if self._pool is None:  # started once, kept for later maps until close()
            ctx = get_context("spawn")
            slots = ctx.Queue()
            for gpu in self.assignment:
                slots.put(gpu)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                             initargs=(slots, self.threads, os.getpid()))
        futures = [self._pool.submit(fn, t) for t in tasks]
        try:
            for f in as_completed(futures):
                yield f.result()
        except BaseException:
            # Let running tasks finish (their runs are saved), start no new ones.
            for f in futures:
                f.cancel()
            raise

    def close(self) -> None:
        """Stop the workers (after their current tasks)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _init_worker(slots, threads: int, parent: int | None = None) -> None:
    """Process-pool initializer: ignore Ctrl-C, exit with the parent, take this worker's GPU
    slot, then set torch's threads.

    A worker shares its parent's process group, so an interrupt meant for the parent (a
    Ctrl-C in the terminal, or Jupyter stopping a chapter's kernel) would also raise
    ``KeyboardInterrupt`` in every idle worker and print its traceback. The parent handles
    the interrupt and shuts the pool down; the workers leave when their queue closes.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(parent)  # a killed parent (SIGTERM, a dead kernel) leaves no orphan worker behind
    gpu = slots.get(timeout=60)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    import torch

    torch.set_num_threads(threads)


def _retryable_exceptions() -> list[type[BaseException]]:
    """Exceptions worth another attempt: I/O hiccups and CUDA running out of memory."""
    import torch

    out: list[type[BaseException]] = [OSError]
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None:
        out.append(oom)
    return out


def check_address(address: str, timeout: float = 5.0) -> None:
    """Raise ``ConnectionError`` unless a TCP connection to a Ray ``address`` opens.

    ``address`` is ``host:port`` (the head's GCS, port 6379 by default) or
    ``ray://host:port`` (Ray Client, port 10001 by default); ``"auto"`` is left to Ray.
    A refused connection fails at once, an unreachable host after ``timeout`` seconds,
    instead of Ray's own wait of a minute or more.
    """
    if not address or address == "auto":
        return
    hostport, default_port = (address[len("ray://"):], 10001) if address.startswith("ray://") else (address, 6379)
    host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", str(default_port))
    try:
        port_number = int(port)
    except ValueError:
        raise ValueError(f"ray_address={address!r} is not host:port or ray://host:port") from None
    try:
        with socket.create_connection((host.strip("[]"), port_number), timeout=timeout):
            pass
    except OSError as err:
        raise ConnectionError(
            f"cannot reach the Ray cluster at ray_address={address!r} ({err}); start it with "
            "`ray start --head` on the head node, check the host and port, or leave ray_address "
            "empty to start a local Ray") from None


def import_ray():
    """Import ray, or raise ``ImportError`` naming the optional extra that installs it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError("executor 'ray' needs Ray, which is not installed; install the optional extra: "
                          "pip install 'landscape_utils[ray]'") from err
    return ray


class RayExecutor:
    """Each task (one grid cell) is a Ray task on a local Ray or a cluster.

    ``ray_address``: ``""`` starts a local Ray (or uses one this process already
    started), ``"auto"`` joins the cluster this node belongs to, ``host:port`` or
    ``ray://host:port`` connects to that head. ``ray_num_gpus`` GPUs per task (a
    fraction shares one GPU between tasks; Ray sets ``CUDA_VISIBLE_DEVICES``),
    ``ray_num_cpus`` CPUs per task. A task whose worker or node dies, or that raises
    an I/O error or CUDA out-of-memory, is retried up to ``max_retries`` times; the
    retry finds the members already saved and trains only the rest. Every node must
    see the workdir at the same path (a shared filesystem) and have this package
    installed.
    """

    def __init__(self, ray_address: str = "", ray_num_gpus: float = 0.0, ray_num_cpus: float = 1.0,
                 max_retries: int = 3):
        for name, v in (("ray_num_gpus", ray_num_gpus), ("ray_num_cpus", ray_num_cpus)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if not isinstance(ray_address, str):
            raise ValueError(f"ray_address must be a string, got {ray_address!r}")
        self.address, self.num_gpus, self.num_cpus = ray_address, ray_num_gpus, ray_num_cpus
        self.max_retries = max_retries
        self._started = False

    def check(self) -> None:
        """Ray is importable and the cluster address answers (no ``ray.init`` yet)."""
        import_ray()
        check_address(self.address)

    def _connect(self):
        ray = import_ray()
        if not ray.is_initialized():
            self.check()
            ray.init(address=self.address or None, log_to_driver=False)
            self._started = True
        return ray

    def map(self, fn: Callable, tasks: list) -> Iterator:
        ray = self._connect()
        remote = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=self.max_retries,
                            retry_exceptions=_retryable_exceptions())(fn)
        pending = [remote.remote(t) for t in tasks]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        except BaseException:
            for ref in pending:  # nothing of theirs is saved half-way: runs are written atomically
                ray.cancel(ref)
            raise

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


EXECUTORS: dict[str, Callable[..., Any]] = {"serial": SerialExecutor, "process": ProcessExecutor,
                                            "ray": RayExecutor}


def register_executor(name: str, factory: Callable[..., Any]) -> None:
    """Make ``executor=name`` available to ``run_grid`` and the params files.

    ``factory`` is called with the options of ``make_executor`` that its signature
    names (all of them if it takes ``**kwargs``).
    """
    EXECUTORS[name] = factory


def make_executor(executor: str | Any = "serial", **options) -> Any:
    """An executor by name, given the options its factory accepts; objects pass through.

    Unknown names raise ``ValueError`` listing the known ones; bad option values raise
    ``ValueError`` naming the option (from the factory).
    """
    if not isinstance(executor, str):
        return executor
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    factory = EXECUTORS[executor]
    params = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        options = {k: v for k, v in options.items() if k in params}
    return factory(**options)


_KEPT: dict[tuple, Any] = {}


def _factory_options(executor: str, options: Mapping[str, Any]) -> dict[str, Any]:
    params = inspect.signature(EXECUTORS[executor]).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in params}


def kept_executor(executor: str, **options) -> Any:
    """:func:`make_executor`, but kept for the rest of this process and shared by later
    calls with the same effective options, so that a chapter starts its process pool (or
    connects to Ray) once, not once per table. Kept executors are closed at exit, or by
    :func:`discard_executor` (done after a failure, so the next call starts afresh)."""
    if executor not in EXECUTORS:
        return make_executor(executor, **options)  # raises, naming the known executors
    options = _factory_options(executor, options)
    key = (executor, tuple(sorted((k, repr(v)) for k, v in options.items())))
    if key not in _KEPT:
        _KEPT[key] = EXECUTORS[executor](**options)
    return _KEPT[key]


def discard_executor(ex: Any) -> None:
    """Close ``ex`` and forget it if it is a kept executor."""
    for key in [k for k, v in _KEPT.items() if v is ex]:
        del _KEPT[key]
    ex.close()


@atexit.register
def _close_kept() -> None:
    while _KEPT:
        _KEPT.popitem()[1].close()


# ---- the task and the grid -------------------------------------------------------
def train_cell_task(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Train the unfinished members of one population (a grid cell) and store them.

    ``task`` holds plain data (picklable): ``configs`` (list of dicts: every member of the
    population, finished or not), ``workdir``, ``device``, ``data_root``, ``download`` and
    ``wait``. Returns one summary dict per member (``run_id``, ``status``), status one of
    ok / diverged / cached (finished before, possibly by another driver) / busy (locked by
    another driver).

    The whole population is always trained together, also when only some members are
    missing, and only the missing members are saved. A run's numbers depend on the
    members it was stacked with (batched kernels sum in another order), so training it
    with the same members it had the first time gives it back bit for bit on the same
    machine and CPU kernel (see README, "Reproducibility"); the members already stored
    are neither rewritten nor changed.

    Each member is trained under its run lock, taken for the whole population. With
    ``wait=False`` members locked elsewhere are skipped (``busy``); with ``wait=True``
    their locks are awaited, in run-id order (one global order, so drivers waiting on
    each other cannot deadlock), and members that the other holder did not finish
    (it died) are trained here.
    """
    configs = [RunConfig.from_dict(c) for c in task["configs"]]
    wait = bool(task.get("wait", False))
    store = Store(task["workdir"])
    device = resolve_device(task.get("device", "auto"))
    out: dict[RunConfig, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        mine = set()
        for c in sorted(configs, key=run_id) if wait else configs:
            rid = run_id(c)
            if store.is_done(c, warn=False):
                out[c] = {"run_id": rid, "status": "cached"}
            elif not stack.enter_context(store.lock(rid, timeout=-1 if wait else 0)):
                out[c] = {"run_id": rid, "status": "busy"}
            elif store.is_done(c, warn=False):  # finished by another driver meanwhile
                out[c] = {"run_id": rid, "status": "cached"}
            else:
                store.clean_partial(rid)
                mine.add(c)
        if mine:
            data = configs[0].load_data(data_root=task.get("data_root", "data"),
                                        download=task.get("download", False), device=device)
            for cfg, result in train_population(configs, data, device):
                if cfg in mine:
                    store.save_run(cfg, result, provenance(device, cfg.precision, result["metrics"]["train_time_s"]))
                    out[cfg] = {"run_id": run_id(cfg), "status": result["metrics"]["status"]}
    return [out[c] for c in configs]


def run_grid(configs: list[RunConfig], workdir: str | os.PathLike, device: str = "auto",
             executor: str | Any = "serial", workers: int = 2, data_root: str = "data",
             download: bool = False, progress: bool = True, *, workers_per_gpu: int = 1,
             ray_address: str = "", ray_num_gpus: float = 0.0, ray_num_cpus: float = 1.0,
             max_retries: int = 3) -> pd.DataFrame:
    """Train every config not yet finished in ``workdir``; return their results table.

    Finished runs are skipped, so an interrupted grid resumes where it stopped, and
    runs of other grids in the same workdir are kept but not returned. Before any
    training the whole grid is checked (:func:`check_configs`) and the executor
    built and checked, so a bad value stops the grid before it starts.

    ``executor``: ``"serial"``, ``"process"`` (``workers``, ``workers_per_gpu``),
    ``"ray"`` (``ray_address``, ``ray_num_gpus``, ``ray_num_cpus``, ``max_retries``),
    a registered name, or an executor object (which the caller closes; an executor named
    here is kept for later calls with the same options, see :func:`kept_executor`). Cells locked by another driver are taken
    up again after all the others. Raises ``RuntimeError`` if runs are still missing
    at the end (e.g. Ray workers writing to a workdir the driver does not see).
    """
    configs = list(dict.fromkeys(configs))
    # Absolute paths: workers (a Ray node, say) need not share this process's cwd.
    workdir, data_root = Path(workdir).resolve(), Path(data_root).resolve()
    check_configs(configs, data_root, download)
    options = dict(workers=workers, workers_per_gpu=workers_per_gpu, device=str(device),
                   ray_address=ray_address, ray_num_gpus=ray_num_gpus, ray_num_cpus=ray_num_cpus,
                   max_retries=max_retries)
    kept = isinstance(executor, str)  # named: kept for later calls; objects: the caller's
    ex = kept_executor(executor, **options) if kept else executor
    store = Store(workdir)
    Path(workdir).mkdir(parents=True, exist_ok=True)
    pending = [c for c in configs if not store.is_done(c)]
    missing = set(pending)  # the book's "what built it" footer (dates read only where it is kept)
    done = [c for c in configs if c not in missing]
    record_usage("training runs", len(done), len(pending),
                 (store.run_provenance(run_id(c)).get("date") for c in done))
    if pending:
        if hasattr(ex, "check"):
            ex.check()
        bar = progress_bar(total=len(pending), desc=f"training {len(pending)} runs "
                           f"({len(configs) - len(pending)} cached)", disable=not progress)
        task = {"workdir": str(workdir), "device": str(device), "data_root": str(data_root),
                "download": bool(download)}
        # Whole populations of the grid, also where some members are stored: a missing run
        # is trained beside the same members as the first time (see train_cell_task).
        todo = {run_id(c) for c in pending}
        by_id = {run_id(c): c.to_dict() for c in configs}
        cells = [[c.to_dict() for c in pop] for pop in populations(configs)
                 if any(run_id(c) in todo for c in pop)]
        try:
            for wait in (False, True):  # first what nobody else holds, then wait for the rest
                tasks = [{**task, "configs": cell, "wait": wait} for cell in cells]
                busy = []
                for summaries in ex.map(train_cell_task, tasks):  # in any order
                    bar.update(sum(s["status"] in ("ok", "diverged") for s in summaries))
                    if any(s["status"] == "busy" for s in summaries):
                        busy.append([by_id[s["run_id"]] for s in summaries])
                cells = busy
                if not cells:
                    break
        except BaseException:
            if kept:  # a failed pool is not reused: the next call starts a fresh one
                discard_executor(ex)
            raise
        finally:
            bar.close()
        missing = [c for c in configs if not store.is_done(c, warn=False)]
        if missing:
            raise RuntimeError(
                f"{len(missing)} run(s) are still missing from {workdir} after training, e.g. "
                f"{run_id(missing[0])}; with Ray, every node must see the workdir at the same path")
    if progress:
        others = len(set(store.run_ids()) - {run_id(c) for c in configs})
        if others:
            print(f"note: {workdir} also holds {others} finished run(s) of other grids; they are kept "
                  "but not part of this table")
    return load_results(workdir, configs)


#: A run whose final train accuracy is below this multiple of chance (1 / classes) learned
#: nothing: too hot an lr can leave a BatchNorm net predicting one class with a finite loss
#: (on MNIST-1D, lr 3.0 at batch 32 ends at train loss ln 10). See :func:`mark_collapsed`.
COLLAPSED_CHANCE_MULTIPLE = 1.5


def mark_collapsed(results: pd.DataFrame, multiple: float = COLLAPSED_CHANCE_MULTIPLE) -> pd.DataFrame:
    """``results`` (one row per run: ``dataset``, ``train_acc``, ``status``) with the runs
    that ended no better than chance set to ``status = "diverged"`` and ``collapsed = True``.

    Tables leave diverged runs out of cell means and pairs, so a net that collapsed to one
    class is not read as a landscape (two such nets are trivially "connected": mc > 0 with
    no learning at all). The protocol study applies it to every candidate; released grids
    have their own rule (``experiments.zoo``: train accuracy below 0.3). :func:`run_grid`
    does not: a short grid (a smoke build, a few epochs) can end runs at chance that are
    merely early, not collapsed, and a run's final numbers cannot tell the two apart, so
    chapter 1 lists such runs and leaves the call to the reader.
    """
    out = results.copy()
    if out.empty or not {"dataset", "train_acc", "status"} <= set(out.columns):
        return out
    chance = out["dataset"].map(lambda d: 1.0 / INPUT_SHAPES[d][1] if d in INPUT_SHAPES else float("nan"))
    acc = pd.to_numeric(out["train_acc"], errors="coerce")
    collapsed = (acc < multiple * chance).fillna(False).astype(bool) & out["status"].eq("ok")
    out["collapsed"] = collapsed
    out.loc[collapsed, "status"] = "diverged"
    return out


def with_axis(config: RunConfig, **changes) -> RunConfig:
    """A copy of ``config`` with some fields changed (validated)."""
    new = replace(config, **changes)
    new.validate()
    return new


def time_epoch(config: RunConfig, device: str = "auto", num_batches: int = 5) -> float:
    """Seconds one training epoch of ``config`` takes on ``device``, estimated from
    ``num_batches`` timed SGD steps (after one warm-up step) on random tensors of the
    dataset's shape; no data is loaded. Scales by the number of batches per epoch."""
    config.validate()
    dev = resolve_device(device)
    shape, k = INPUT_SHAPES[config.dataset]
    model = build_model(config.model, config.width, shape, k, batch_norm=config.batch_norm,
                        depth=config.depth).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    x = torch.randn(config.batch_size, *shape, device=dev)
    y = torch.randint(0, k, (config.batch_size,), device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(num_batches):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    per_batch = (time.perf_counter() - t0) / num_batches
    return per_batch * (train_size(config.dataset, config.data_fraction) // config.batch_size)
