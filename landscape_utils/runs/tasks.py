"""Expensive work as tasks: computed once, anywhere, and cached in the run store.

Every costly measurement of the book (the Hessian of a run, the curve and CKA of a pair
of runs, an experiment of chapter 6) is a :class:`Task`: a module-level function of plain
arguments that returns one JSON-able record per store key. :func:`run_tasks` reads the
records already in the store, hands the rest to an executor from
:mod:`landscape_utils.runs.runner` (``serial``, ``process`` or ``ray``, with the same options as
training), saves each record under its full key as soon as it exists, and returns every
task's records in the order given. A killed chapter therefore loses only the records that
were not yet finished, and a rerun computes only what is missing.

A task's function has the signature ``fn(*, workdir: str, device: torch.device, **args)``
and returns (or yields, to have each record saved the moment it is done) one record per
key of the task, in the order of ``Task.keys``. It runs in full float32 precision
(:func:`landscape_utils.core.utils.full_precision`: no autocast, no TF32), whatever precision
the runs were trained in. It must be importable by name (defined at
module level) so that worker processes and Ray nodes can run it.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..core.settings import EXECUTOR_OPTIONS
from ..core.utils import full_precision, progress_bar, provenance, resolve_device
from .runner import discard_executor, kept_executor
from .store import Store, record_usage

__all__ = ["Task", "run_tasks", "run_cost", "execute_task", "EXECUTOR_OPTIONS"]



@dataclass(frozen=True)
class Task:
    """One unit of expensive work and the store keys of the records it produces.

    Attributes:
        name: the store's metric name (a folder under ``{workdir}/metrics``).
        keys: one key per record, each the full description of what is computed (run ids
            and every setting), so a changed setting never reuses a stale record.
        fn: module-level function ``fn(*, workdir, device, **args) -> records``.
        args: picklable keyword arguments of ``fn``.
        label: a short name for progress messages.
        cost: a relative estimate of the task's work; :func:`run_tasks` submits the
            costliest first, so that a pool ends on short tasks rather than one long one.
    """

    name: str
    keys: tuple[Mapping[str, Any], ...]
    fn: Callable[..., Iterable[dict[str, Any]]]
    args: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    cost: float = 0.0

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError(f"task {self.label or self.name!r} has no keys")
        object.__setattr__(self, "keys", tuple(dict(k) for k in self.keys))


def run_cost(store: Store, run_id: str) -> float:
    """A stored run's size for a :attr:`Task.cost`: its parameter count times its training
    samples (each 1 when its metrics lack them). Work on a run (a curve, a cut, a surface)
    costs about this many times the work's own count of steps or points."""
    metrics = store.metrics(run_id)
    return float(metrics.get("num_params", 1)) * float(metrics.get("num_train", 1))


def _cached(store: Store, task: Task) -> list[dict[str, Any] | None]:
    return [store.load_metric(task.name, key) for key in task.keys]


def execute_task(payload: tuple) -> tuple[int, list[dict[str, Any]] | None]:
    """Run one task where it lands (this process, a pool worker or a Ray node).

    ``payload`` is ``(index, task, workdir, device[, wait])``. The task runs under its lock
    (``Store.metric_lock`` on its first key), so two drivers on one workdir never compute
    it twice: with ``wait`` false a task locked elsewhere returns ``(index, None)`` at once,
    with ``wait`` true (the default) its lock is awaited. Records another driver finished in
    the meantime are read, not recomputed; each computed record is saved, with its
    provenance (``utils.provenance``: versions, device, precision, wall time, date), as soon
    as the task's function yields it. Returns ``(index, records)``.
    """
    index, task, workdir, device, *rest = payload
    wait = bool(rest[0]) if rest else True
    store = Store(workdir)
    records = _cached(store, task)
    if all(r is not None for r in records):
        return index, records  # type: ignore[return-value]
    with store.metric_lock(task.name, task.keys[0], timeout=-1 if wait else 0) as mine:
        if not mine:
            return index, None
        records = _cached(store, task)  # finished by another driver while we waited
        if all(r is not None for r in records):
            return index, records  # type: ignore[return-value]
        out: list[dict[str, Any]] = []
        dev = resolve_device(device)
        # Measurements are float32 whatever the training used or the process has set.
        with full_precision():
            t0 = time.perf_counter()
            produced = task.fn(workdir=workdir, device=dev, **dict(task.args))
            for key, record in zip(task.keys, produced):
                store.save_metric(task.name, key, record, provenance(dev, "fp32", time.perf_counter() - t0))
                out.append(record)
                t0 = time.perf_counter()
    if len(out) != len(task.keys):
        raise RuntimeError(f"task {task.label or task.name!r} ({task.fn.__name__}) produced {len(out)} "
                           f"record(s) for {len(task.keys)} key(s)")
    return index, out


def run_tasks(tasks: Sequence[Task], workdir: str | os.PathLike, *, executor: str | Any = "serial",
              device: str = "auto", desc: str = "tasks", progress: bool = True, log_usage: bool = True,
              **executor_options: Any) -> list[list[dict[str, Any]]]:
    """Every task's records, read from the store or computed by ``executor``.

    Args:
        tasks: the work; tasks whose records are all in the store are not submitted.
        workdir: the run store (made absolute, so workers elsewhere see the same path).
        executor: ``"serial"``, ``"process"``, ``"ray"``, a registered name (the executor is
            kept for later calls with the same options: :func:`landscape_utils.runs.runner.kept_executor`),
            or an executor object (then the caller closes it).
        device: resolved in each worker (a process worker pinned to one GPU sees ``cuda``).
        desc: the progress bar's title, and the table's name in the book's usage log
            (``store.record_usage``; ``log_usage=False`` when the caller logs it itself).
        executor_options: ``workers``, ``workers_per_gpu``, ``ray_*``, ``max_retries``
            (see :func:`landscape_utils.runs.runner.make_executor`); unknown options are an error.

    Tasks are submitted costliest first (:attr:`Task.cost`), and their records returned in
    the order of ``tasks``.

    Returns:
        One list of records per task, in the order of ``tasks`` and of each task's keys.
    """
    unknown = sorted(set(executor_options) - set(EXECUTOR_OPTIONS))
    if unknown:
        raise TypeError(f"unknown executor option(s) {unknown}; known: {', '.join(EXECUTOR_OPTIONS)}")
    workdir = str(Path(workdir).resolve())
    store = Store(workdir)
    results: list[list[dict[str, Any]] | None] = []
    todo: list[int] = []
    for i, task in enumerate(tasks):
        records = _cached(store, task)
        if all(r is not None for r in records):
            results.append(records)  # type: ignore[arg-type]
        else:
            results.append(None)
            todo.append(i)
    if progress and tasks:  # an empty list has nothing to report
        print(f"{desc}: {len(tasks) - len(todo)} of {len(tasks)} task(s) in the store, {len(todo)} to compute")
    if log_usage:  # the book's "what built it" footer (dates are read only where it is kept)
        reused = [task for task, records in zip(tasks, results) if records is not None]
        record_usage(desc, len(reused), len(todo),
                     ((store.metric_provenance(t.name, key) or {}).get("date") for t in reused for key in t.keys))
    todo.sort(key=lambda i: -tasks[i].cost)  # stable: equal costs keep the caller's order
    if todo:
        kept = isinstance(executor, str)  # named: kept for the chapter's later tables
        ex = kept_executor(executor, device=str(device), **executor_options) if kept else executor
        try:
            if hasattr(ex, "check"):
                ex.check()
            with progress_bar(total=len(todo), desc=desc, unit="task", disable=not progress) as bar:
                for wait in (False, True):  # first what no other driver holds, then wait for the rest
                    payloads = [(i, tasks[i], workdir, str(device), wait) for i in todo]
                    busy = []
                    for i, records in ex.map(execute_task, payloads):
                        if records is None:
                            busy.append(i)
                            continue
                        results[i] = records
                        bar.update()
                    todo = sorted(busy, key=lambda i: -tasks[i].cost)
                    if not todo:
                        break
        except BaseException:
            if kept:  # a failed pool is not reused: the next call starts a fresh one
                discard_executor(ex)
            raise
    return results  # type: ignore[return-value]
