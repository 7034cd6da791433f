"""Tests of landscape_utils.runs.tasks and the chapters' measurements as tasks: the store is read
before anything is submitted, serial and process pools give the same tables, a record is
saved the moment it exists, and a process killed in the middle of the pair measurements
loses no finished pair."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import train_tiny_digits_grid
from landscape_utils.experiments import local
from landscape_utils.experiments.global_metrics import METRIC_NAME, GlobalSettings, measure_pairs
from landscape_utils.experiments.local import DensitySettings, HessianSettings, density_table, hessian_table
from landscape_utils.runs.runner import ProcessExecutor
from landscape_utils.runs.store import Store
from landscape_utils.runs.tasks import Task, execute_task, run_tasks

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = HessianSettings(num_samples=100, tol=1e-3, rel_tol=0.1, max_probes=20, sketch_size=5)
PAIRS = GlobalSettings(curve_epochs=2, curve_batch_size=64, num_points=5, cka_samples=64, cka_batches=4)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """Four tiny digits MLPs: two widths x two seeds."""
    workdir = tmp_path_factory.mktemp("tasks")
    runs = train_tiny_digits_grid(workdir)
    pairs = [tuple(sorted(g.run_id)) for _, g in runs.groupby("width")]
    return workdir, runs, pairs


@pytest.fixture(scope="module")
def pool():
    """One process pool for the module: starting workers (each imports torch) is the slow part."""
    with ProcessExecutor(workers=2, device="cpu") as ex:
        yield ex


def _copy_runs(src: Path, dst: Path) -> Path:
    """A fresh store with the same trained runs and no cached metrics."""
    import shutil

    shutil.copytree(src / "runs", dst / "runs")
    return dst


def test_task_records_are_saved_under_their_keys_and_read_back(grid, tmp_path, monkeypatch):
    workdir, runs, _ = grid
    store_dir = _copy_runs(Path(workdir), tmp_path / "w")
    rid = runs.run_id[0]
    task = Task("hessian", (SMALL.key(rid),), local._measure_task,
                {"run_id": rid, "kind": "hessian", "settings": SMALL.__dict__, "data_root": "data"})
    [records] = run_tasks([task], store_dir, progress=False)
    assert Store(store_dir).load_metric("hessian", SMALL.key(rid)) == records[0]
    # Read back without calling the function again.
    monkeypatch.setattr(local, "measure_hessian", lambda *a, **k: pytest.fail("recomputed a stored record"))
    assert run_tasks([task], store_dir, progress=False) == [records]


def test_a_task_that_yields_the_wrong_number_of_records_is_an_error(tmp_path):
    task = Task("x", ({"a": 1}, {"a": 2}), local._measure_task, {}, label="broken")
    with pytest.raises(TypeError):  # missing arguments of the task function
        execute_task((0, task, str(tmp_path), "cpu"))
    with pytest.raises(ValueError, match="no keys"):
        Task("x", (), local._measure_task)
    with pytest.raises(TypeError, match="unknown executor option"):
        run_tasks([], tmp_path, workerz=2)


def test_local_tables_are_the_same_under_a_process_pool(grid, tmp_path, pool):
    workdir, runs, _ = grid
    serial = hessian_table(_copy_runs(Path(workdir), tmp_path / "s"), runs.run_id, SMALL, device="cpu",
                           progress=False)
    pooled_dir = _copy_runs(Path(workdir), tmp_path / "p")
    pooled = hessian_table(pooled_dir, runs.run_id, SMALL, device="cpu", progress=False,
                           executor=pool)
    cols = ["lambda_max", "trace", "trace_stderr"]
    assert pooled.run_id.tolist() == serial.run_id.tolist()
    np.testing.assert_allclose(pooled[cols].to_numpy(float), serial[cols].to_numpy(float), rtol=1e-4)
    dens = DensitySettings(num_samples=100, num_runs=1, num_steps=8, points=20)
    a = density_table(tmp_path / "s", runs.run_id[:2], dens, device="cpu", progress=False)
    b = density_table(pooled_dir, runs.run_id[:2], dens, device="cpu", progress=False,
                      executor=pool)
    np.testing.assert_allclose(b.density.to_numpy(), a.density.to_numpy(), rtol=1e-4, atol=1e-8)


def test_pair_metrics_are_the_same_under_a_process_pool(grid, tmp_path, pool):
    workdir, _, pairs = grid
    serial, n_serial = measure_pairs(str(_copy_runs(Path(workdir), tmp_path / "s")), pairs, PAIRS,
                                     device="cpu", progress=False)
    pooled, n_pooled = measure_pairs(str(_copy_runs(Path(workdir), tmp_path / "p")), pairs, PAIRS,
                                     device="cpu", progress=False, executor=pool)
    assert n_serial == n_pooled == len(pairs)
    for a, b in zip(serial, pooled):
        for k in ("mc", "linear_mc", "cka", "l2", "curve_loss"):
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), k


KILLED = textwrap.dedent("""
    import sys
    from landscape_utils.experiments.global_metrics import GlobalSettings, measure_pairs
    workdir, pairs = sys.argv[1], [tuple(p.split(",")) for p in sys.argv[2:]]
    s = GlobalSettings(curve_epochs=15, curve_batch_size=16, num_points=5, cka_samples=64, cka_batches=4)
    measure_pairs(workdir, pairs, s, device="cpu", curves_at_once=1, progress=False)
""")


def test_a_kill_in_the_middle_of_the_pairs_loses_no_finished_pair(grid, tmp_path):
    workdir, runs, pairs = grid
    store_dir = _copy_runs(Path(workdir), tmp_path / "k")
    many = [*pairs, *[(b, a) for a, b in pairs]]  # four pairs of one width each, one task each
    script = tmp_path / "measure.py"
    script.write_text(KILLED)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LANDSCAPE_PROGRESS": "off"}
    proc = subprocess.Popen([sys.executable, str(script), str(store_dir), *[",".join(p) for p in many]], env=env)
    folder = store_dir / "metrics" / METRIC_NAME
    deadline = time.time() + 240
    while time.time() < deadline and not (folder.exists() and any(folder.glob("*.json"))):
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.read_bytes() for p in folder.glob("*.json")}
    assert 1 <= len(finished), "no pair had finished before the kill"
    for raw in finished.values():
        json.loads(raw)  # every file present is a whole record
    s = GlobalSettings(curve_epochs=15, curve_batch_size=16, num_points=5, cka_samples=64, cka_batches=4)
    records, computed = measure_pairs(str(store_dir), many, s, device="cpu", curves_at_once=1, progress=False)
    assert computed == len(many) - len(finished)  # the finished pairs were not redone
    for name, raw in finished.items():
        assert (folder / name).read_bytes() == raw
    assert all(r is not None and np.isfinite(r["mc"]) for r in records)


def _report_precision(*, workdir, device):
    import torch

    yield {"autocast": torch.is_autocast_enabled("cpu")}


def test_tasks_measure_in_full_precision_whatever_the_caller_set(tmp_path):
    import torch

    task = Task("precision", ({"k": 1},), _report_precision)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")
        [[record]] = run_tasks([task], tmp_path, progress=False)
    assert record == {"autocast": False}


def test_run_tasks_with_no_tasks_says_nothing_and_returns_nothing(tmp_path, capsys):
    from landscape_utils.runs.tasks import run_tasks

    assert run_tasks([], tmp_path, desc="nothing here") == []
    assert "nothing here" not in capsys.readouterr().out


_RAN: list[str] = []


def _note_task(*, workdir, device, name):
    """A task function that records when it ran (the serial executor runs it in this process)."""
    _RAN.append(name)
    yield {"name": name}


def test_run_tasks_submits_the_costliest_first_and_returns_in_order(tmp_path):
    _RAN.clear()
    costs = {"short": 1.0, "long": 5.0, "middle": 3.0, "unknown": 0.0, "also middle": 3.0}
    tasks = [Task("order", ({"name": n},), _note_task, {"name": n}, cost=c) for n, c in costs.items()]
    results = run_tasks(tasks, tmp_path, progress=False)
    assert _RAN == ["long", "middle", "also middle", "short", "unknown"]  # ties keep their order
    assert [r[0]["name"] for r in results] == list(costs)
