"""The results store: crash safety (atomic writes, detection of damaged runs), run
locks that survive their holder's death, and a full disk during a save."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from landscape_utils.core.train import RunConfig, train_run
from landscape_utils.runs.store import Store, load_results, run_id

from conftest import make_blobs


def _result(seed: int = 0, status: str = "ok"):
    """A real (tiny) training result to save."""
    cfg = RunConfig(dataset="digits", width=4, num_epochs=1, batch_size=32, seed=seed)
    res = train_run(cfg, make_blobs(n_train=64, n_test=32, dim=64, k=10))
    res["metrics"]["status"] = status
    return cfg, res


def _warned(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, " ".join(str(w.message) for w in caught)


def test_saved_run_is_done_and_round_trips(tmp_path):
    store = Store(tmp_path)
    cfg, res = _result()
    rid = store.save_run(cfg, res)
    assert store.is_done(cfg) and store.run_ids() == [rid] and store.unfinished() == []
    assert store.config(rid) == cfg
    assert store.history(rid) == res["history"]
    sd = store.state_dict(rid)
    assert all(torch.equal(sd[k], res["final_state"][k]) for k in sd)
    recorded = json.loads((store.run_dir(rid) / "metrics.json").read_text())["_files"]
    assert set(recorded) == {"init.pt", "final.pt", "config.json", "history.json"}


@pytest.mark.parametrize("damage,name", [
    (lambda d: (d / "metrics.json").write_text('{"status": "ok", "_fi'), "metrics.json"),  # truncated JSON
    (lambda d: (d / "final.pt").write_bytes((d / "final.pt").read_bytes()[:50]), "final.pt"),
    (lambda d: (d / "init.pt").unlink(), "init.pt"),
    (lambda d: (d / "history.json").write_text("[]"), "history.json"),
    (lambda d: (d / "config.json").write_text("{" + " " * ((d / "config.json").stat().st_size - 1)),
     "config.json"),  # same size, unreadable
])
def test_damaged_run_is_named_and_not_done(tmp_path, damage, name):
    store = Store(tmp_path)
    cfg, res = _result()
    rid = store.save_run(cfg, res)
    damage(store.run_dir(rid))
    done, text = _warned(lambda: store.is_done(cfg))
    assert not done
    assert str(store.run_dir(rid) / name) in text and "redone" in text
    assert rid in store.unfinished() and store.run_ids() == []


def test_config_of_another_run_in_a_folder_is_detected(tmp_path):
    store = Store(tmp_path)
    cfg, res = _result()
    rid = store.save_run(cfg, res)
    cfile = store.run_dir(rid) / "config.json"
    alien = json.dumps(RunConfig(width=5).to_dict())
    cfile.write_text(alien.ljust(cfile.stat().st_size))  # same size as recorded, another config
    done, text = _warned(lambda: store.is_done(rid))
    assert not done and "belongs to run" in text


def test_same_size_garbage_checkpoint_gives_an_error_naming_it(tmp_path):
    store = Store(tmp_path)
    cfg, res = _result()
    rid = store.save_run(cfg, res)
    ckpt = store.run_dir(rid) / "final.pt"
    ckpt.write_bytes(b"\0" * ckpt.stat().st_size)
    with pytest.raises(RuntimeError, match="cannot read checkpoint .*final.pt"):
        store.state_dict(rid)


def test_diverged_run_is_stored_as_diverged_and_counts_as_done(tmp_path):
    store = Store(tmp_path)
    cfg = RunConfig(dataset="digits", width=4, num_epochs=3, batch_size=32, lr=1e8)
    res = train_run(cfg, make_blobs(n_train=64, n_test=32, dim=64, k=10))
    assert res["metrics"]["status"] == "diverged"
    rid = store.save_run(cfg, res)
    assert store.is_done(cfg)
    row = load_results(tmp_path, [cfg]).iloc[0]
    assert row.run_id == rid and row.status == "diverged" and row.test_loss != row.test_loss  # NaN


class _FullDisk:
    """``os.fdopen`` whose files accept ``budget`` bytes in total, then fail with ENOSPC
    after writing part of the data, as a real full disk does."""

    def __init__(self, budget: int):
        self.budget = budget
        self.real = os.fdopen

    def __call__(self, fd, *args, **kwargs):
        fh = self.real(fd, *args, **kwargs)
        outer = self

        class Limited:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                fh.close()

            def write(self, data):
                if len(data) > outer.budget:
                    fh.write(data[:outer.budget])
                    fh.flush()
                    outer.budget = 0
                    raise OSError(errno.ENOSPC, "No space left on device")
                outer.budget -= len(data)
                return fh.write(data)

            def __getattr__(self, name):
                return getattr(fh, name)

        return Limited()


def test_full_disk_during_a_save_leaves_no_finished_looking_run(tmp_path, monkeypatch):
    store = Store(tmp_path)
    first, res1 = _result(seed=0)
    second, res2 = _result(seed=1)
    store.save_run(first, res1)
    before = {p: p.read_bytes() for p in store.run_dir(run_id(first)).iterdir()}
    # Room for the second run's checkpoints but not for all of its JSON files.
    budget = sum(os.path.getsize(store.run_dir(run_id(first)) / f) for f in ("init.pt", "final.pt")) + 100
    monkeypatch.setattr(os, "fdopen", _FullDisk(budget))
    with pytest.raises(OSError, match="no space left on the device while saving run") as err:
        store.save_run(second, res2)
    assert err.value.errno == errno.ENOSPC and str(store.run_dir(run_id(second))) in str(err.value)
    monkeypatch.undo()
    d2 = store.run_dir(run_id(second))
    assert not (d2 / "metrics.json").exists() and not list(d2.glob(".*.tmp"))  # no half file left
    assert not store.is_done(second) and run_id(second) in store.unfinished()
    assert store.is_done(first) and {p: p.read_bytes() for p in before} == before  # earlier run intact
    store.save_run(second, res2)  # space freed: the save completes
    assert store.is_done(second)


def test_lock_is_exclusive_and_freed_when_its_holder_is_killed(tmp_path):
    store = Store(tmp_path)
    # The holder takes the same OS lock (filelock on runs/<id>.lock) without importing torch.
    (tmp_path / "runs").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from filelock import FileLock
        lock = FileLock({str(tmp_path / "runs" / "abc.lock")!r})
        lock.acquire()
        print("locked", flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with store.lock("abc", timeout=0) as got:
            assert got is False  # held by the other process
        holder.kill()  # SIGKILL: no chance to release it
        holder.wait(timeout=30)
        assert (tmp_path / "runs" / "abc.lock").exists()  # the stale lock file stays ...
        with store.lock("abc", timeout=5) as got:
            assert got is True  # ... but does not block
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_clean_partial_removes_only_temp_files(tmp_path):
    store = Store(tmp_path)
    cfg, res = _result()
    rid = store.save_run(cfg, res)
    d = store.run_dir(rid)
    (d / ".final.pt.x1.tmp").write_bytes(b"half")
    store.clean_partial(rid)
    assert not list(d.glob(".*.tmp")) and store.is_done(cfg)


# The store's keys, recorded from the code before the package's modules moved into layer
# folders (landscape_utils/store.py, local.py ... flat): a run store written before the
# move is read after it, nothing trained or measured again. No key holds a module path.
RUN_IDS_BEFORE_THE_MOVE = ("328c706b74733d42", "61dd1094b418063c")
METRIC_FILES_BEFORE_THE_MOVE = {
    "hessian": ["metrics/hessian/4729a33964684eb3.json"],
    "density": ["metrics/hessian_density/98fc8cb2cfea9a4a.json"],
    "connectivity": ["metrics/connectivity/17573de2990939de.json"],
    "mli": ["metrics/mli/980b6e20f7d1351d.json"],
    "alignment": ["metrics/large_scale_alignment/f1863b823837efc4.json",
                  "metrics/large_scale_alignment/eabae08c209079e0.json",
                  "metrics/large_scale_alignment/b11339a353e1ae49.json"],
    "simplex": ["metrics/large_scale_simplex/de75461b85def2b2.json"],
    "tunnel": ["metrics/large_scale_tunnel/95c716e867efcff7.json"],
    "surface": ["metrics/large_scale_surface/827bf7cde409a246.json"],
    "wedge": ["metrics/large_scale_wedge/c0cbd1b32388373c.json"],
    "reach": ["metrics/large_scale_reach/4caf33e4dad5173d.json"],
    "subspace": ["metrics/large_scale_subspace/05f67fa66a1de4a1.json"],
}


def test_run_ids_and_metric_keys_are_those_of_before_the_move(tmp_path):
    from landscape_utils.experiments.global_metrics import METRIC_NAME, MLI_METRIC, GlobalSettings, MLISettings
    from landscape_utils.experiments.large_scale import WedgeSettings, plan_tasks
    from landscape_utils.experiments.local import DENSITY_METRIC, HESSIAN_METRIC, DensitySettings, HessianSettings

    a = run_id(RunConfig())
    b = run_id(RunConfig(model="cnn", width=8, lr=0.1, batch_size=32, seed=1, num_epochs=3))
    assert (a, b) == RUN_IDS_BEFORE_THE_MOVE
    store = Store(tmp_path)

    def files(name, keys):
        return [store.metric_path(name, k).relative_to(tmp_path).as_posix() for k in keys]

    got = {"hessian": files(HESSIAN_METRIC, [HessianSettings().key(a)]),
           "density": files(DENSITY_METRIC, [DensitySettings().key(a)]),
           "connectivity": files(METRIC_NAME, [GlobalSettings().key(a, b)]),
           "mli": files(MLI_METRIC, [MLISettings().key(a)])}
    for p in plan_tasks({"c": [a, b, a]}, [("width", 8.0, b)], a, 0.9, WedgeSettings()):
        got.setdefault(p.kind, []).extend(files(p.task.name, p.task.keys))
    assert got == METRIC_FILES_BEFORE_THE_MOVE
