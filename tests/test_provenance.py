"""Versioned records and provenance: bumping one algorithm's version recomputes exactly its
records (and bumping training's retrains the runs); every record says what computed it; two
drivers computing the same tasks at once compute each record once."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from landscape_utils.core import train
from landscape_utils.runs import store as store_mod
from landscape_utils.runs.runner import expand_grid, run_grid
from landscape_utils.runs.store import Store, algorithm_version, run_id
from landscape_utils.runs.tasks import Task, run_tasks

CALLS: list[tuple[str, int]] = []


def _double(*, workdir, device, name, values):
    for v in values:
        CALLS.append((name, v))
        yield {"value": 2 * v}


def _tasks(name_a: str, name_b: str) -> list[Task]:
    return [Task(name, tuple({"v": v} for v in (1, 2)), _double, {"name": name, "values": (1, 2)}, label=name)
            for name in (name_a, name_b)]


@pytest.fixture
def versions(monkeypatch):
    """The registry, restored after the test (tests bump versions of their own metrics)."""
    monkeypatch.setattr(store_mod, "ALGORITHM_VERSIONS", dict(store_mod.ALGORITHM_VERSIONS))
    return store_mod.ALGORITHM_VERSIONS


def test_bumping_one_algorithm_version_recomputes_exactly_its_records(tmp_path, versions):
    a, b = algorithm_version("test_metric_a", 1), algorithm_version("test_metric_b", 1)
    CALLS.clear()
    first = run_tasks(_tasks(a, b), tmp_path, progress=False)
    assert first == [[{"value": 2}, {"value": 4}]] * 2 and len(CALLS) == 4
    store = Store(tmp_path)
    key = {"v": 1}
    prov = store.metric_provenance(a, key)
    assert {"package", "commit", "torch", "cuda", "device", "precision", "wall_s", "date", "cpu_kernel"} <= set(prov)
    assert prov["device"] == "cpu" and prov["precision"] == "fp32" and prov["wall_s"] >= 0
    # version 1 leaves keys as they were before versions existed
    assert store.metric_path(a, key).name == f"{store_mod.stable_hash(key)}.json"

    algorithm_version(a, 2)  # a change of a's algorithm
    assert store.stale_metric(a, key) and not store.stale_metric(b, key)
    CALLS.clear()
    again = run_tasks(_tasks(a, b), tmp_path, progress=False)
    assert again == first and sorted(CALLS) == [(a, 1), (a, 2)]  # only a's records recomputed
    assert not store.stale_metric(a, key)
    assert json.loads(store.metric_path(a, key).read_text())["key"] == {"v": 1, "algorithm_version": 2}
    assert store.metric_path(a, key, version=1).exists()  # the old record is kept, not read


def test_bumping_the_training_version_retrains_the_runs_and_keeps_the_old_ones_valid(tmp_path, monkeypatch):
    grid = expand_grid({"dataset": "digits", "model": "mlp", "num_epochs": 1, "batch_size": 128},
                       {"width": [4]}, seeds=range(2))
    first = run_grid(grid, tmp_path, device="cpu", progress=False)
    store = Store(tmp_path)
    prov = store.run_provenance(first.run_id[0])
    assert prov["training_version"] == 1 and prov["device"] == "cpu" and prov["precision"] == "fp32"
    assert "date" in prov and "torch" in prov and "_provenance" not in store.metrics(first.run_id[0])
    monkeypatch.setattr(train, "TRAINING_VERSION", 2)
    assert all(store.stale_run(c) for c in grid)
    second = run_grid(grid, tmp_path, device="cpu", progress=False)
    assert set(second.run_id).isdisjoint(first.run_id)  # new ids: everything keyed by them recomputes
    assert store.run_provenance(second.run_id[0])["training_version"] == 2
    assert not any(store.stale_run(c) for c in grid)
    # the version-1 runs stay intact (no warning about a folder whose config hashes elsewhere)
    assert all(store.is_done(r) for r in first.run_id)
    assert second.test_loss.tolist() == first.test_loss.tolist()  # same algorithm in fact: same numbers


DRIVER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from landscape_utils.runs.tasks import Task, run_tasks

    def slow(*, workdir, device, value, log):
        with open(log, "a") as fh:
            fh.write(f"{value}\\n")
        time.sleep(0.3)
        yield {"value": value}

    workdir, log, barrier = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    tasks = [Task("two_drivers", ({"v": v},), slow, {"value": v, "log": log}) for v in range(8)]
    (barrier / str(os.getpid())).touch()
    while len(list(barrier.iterdir())) < 2:
        time.sleep(0.02)
    records = run_tasks(tasks, workdir, progress=False)
    assert [r[0]["value"] for r in records] == list(range(8)), records
    print("finished", flush=True)
""")


def test_two_drivers_on_one_workdir_compute_each_record_once(tmp_path):
    script, log, barrier = tmp_path / "driver.py", tmp_path / "log", tmp_path / "barrier"
    script.write_text(DRIVER)
    barrier.mkdir()
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "work"), str(log), str(barrier)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and "finished" in out, err[-2000:]
    computed = Path(log).read_text().split()
    assert sorted(computed, key=int) == [str(v) for v in range(8)]  # each once, by one driver or the other


def test_the_plan_counts_stale_records(tmp_path, versions):
    from landscape_utils.book.plan import stale_note

    params = {"01_training_grid": {"workdir": str(tmp_path)}}
    name = algorithm_version("test_metric_plan", 1)
    run_tasks([Task(name, ({"v": 1}, {"v": 2}), _double, {"name": name, "values": (1, 2)})], tmp_path, progress=False)
    assert "none" in stale_note(params)
    algorithm_version(name, 3)
    assert Store(tmp_path).stale_records() == {name: 2}
    assert f"{name} 2" in stale_note(params)
    run_tasks([Task(name, ({"v": 1},), _double, {"name": name, "values": (1,)})], tmp_path, progress=False)
    assert Store(tmp_path).stale_records() == {name: 1}
