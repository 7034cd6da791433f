import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from landscape_utils.core.train import RunConfig
from landscape_utils.runs import runner
from landscape_utils.runs.runner import (ProcessExecutor, check_configs, expand_grid, gpu_assignment, populations,
                                         run_grid, train_cell_task, train_size)
from landscape_utils.runs.store import Store, load_history, load_results, run_id

BASE = {"dataset": "digits", "model": "mlp", "num_epochs": 2, "batch_size": 64}


@pytest.fixture
def grid():
    return expand_grid(BASE, {"width": [4, 8], "lr": [0.01, 0.1]}, seeds=range(2))


def count_trainings(monkeypatch):
    trained = []
    real = runner.train_population

    def spy(configs, data, device):
        for c, r in real(configs, data, device):
            trained.append(c)
            yield c, r

    monkeypatch.setattr(runner, "train_population", spy)
    return trained


def count_saves(monkeypatch):
    """The configs whose runs are written to the store from now on."""
    saved = []
    real = Store.save_run

    def spy(self, config, result, *args, **kwargs):
        saved.append(config)
        return real(self, config, result, *args, **kwargs)

    monkeypatch.setattr(Store, "save_run", spy)
    return saved


def test_expand_grid_and_populations(grid):
    assert len(grid) == 8 and len({run_id(c) for c in grid}) == 8
    pops = populations(grid)
    # the lr axis is a temperature axis the stacked trainer takes: one population per width
    assert [[(c.width, c.lr, c.seed) for c in p] for p in pops] == [
        [(4, 0.01, 0), (4, 0.01, 1), (4, 0.1, 0), (4, 0.1, 1)],
        [(8, 0.01, 0), (8, 0.01, 1), (8, 0.1, 0), (8, 0.1, 1)]]
    with pytest.raises(ValueError, match="widht"):
        expand_grid(BASE, {"widht": [1]}, seeds=[0])


def _members(pops):
    return [[(c.width, c.batch_size, c.lr, c.weight_decay, c.seed) for c in p] for p in pops]


def test_populations_merge_lr_and_weight_decay_cells_only():
    grid = expand_grid(BASE, {"batch_size": [32, 64], "lr": [0.1, 0.01], "weight_decay": [0.0, 1e-3]},
                       seeds=[1, 0])
    pops = populations(grid)
    # one population per batch size (not a field that may differ within a population)
    assert _members(pops) == [
        [(32, 32, lr, wd, s) for lr in (0.01, 0.1) for wd in (0.0, 1e-3) for s in (0, 1)],
        [(32, 64, lr, wd, s) for lr in (0.01, 0.1) for wd in (0.0, 1e-3) for s in (0, 1)]]
    # defined by the configs alone: any order of the same configs, or repeats of them, give
    # the same populations (in the order their first member appears)
    shuffled = grid[::-1] + grid[:3]
    assert _members(populations(shuffled)) == _members(pops)[::-1]
    # a subset gives the populations of the subset
    assert _members(populations(grid[:4])) == [[(32, 32, 0.1, 0.0, 0), (32, 32, 0.1, 0.0, 1),
                                                 (32, 32, 0.1, 1e-3, 0), (32, 32, 0.1, 1e-3, 1)]]
    # the seeds of one cell always share a population, and nothing else does
    for p in pops:
        assert len({(c.batch_size, c.model, c.width) for c in p}) == 1


def test_populations_of_models_the_stacked_trainer_cannot_take_are_seed_cells(grid, monkeypatch):
    monkeypatch.setattr(runner, "supports_population", lambda c: c.width != 8)
    pops = populations(grid)
    assert [[(c.width, c.lr, c.seed) for c in p] for p in pops] == [
        [(4, 0.01, 0), (4, 0.01, 1), (4, 0.1, 0), (4, 0.1, 1)],
        [(8, 0.01, 0), (8, 0.01, 1)], [(8, 0.1, 0), (8, 0.1, 1)]]


def test_populations_split_by_memory_into_whole_cells():
    from landscape_utils.core.population import memory_estimate, step_activations

    grid = expand_grid(BASE, {"lr": [0.01, 0.02, 0.03, 0.04, 0.05]}, seeds=range(3))
    shape, k = runner.INPUT_SHAPES["digits"]
    per, step = memory_estimate(grid[0], shape, k), step_activations(grid[0], shape, k)
    assert 0 < step < per
    lrs = lambda pops: [[c.lr for c in p] for p in pops]  # noqa: E731
    all_in_one = [[0.01] * 3 + [0.02] * 3 + [0.03] * 3 + [0.04] * 3 + [0.05] * 3]
    assert lrs(populations(grid, memory_budget=15 * per, step_budget=15 * step)) == all_in_one
    # 15 members over a budget of 9: two populations of whole cells (2 and 3 cells)
    two = [[0.01] * 3 + [0.02] * 3, [0.03] * 3 + [0.04] * 3 + [0.05] * 3]
    assert lrs(populations(grid, memory_budget=9 * per, step_budget=15 * step)) == two
    assert lrs(populations(grid, memory_budget=15 * per, step_budget=9 * step)) == two
    # a budget below one cell: every cell alone, never split
    assert lrs(populations(grid, memory_budget=per)) == [[lr] * 3 for lr in (0.01, 0.02, 0.03, 0.04, 0.05)]
    # the sizes grow with the model and the batch
    wide = RunConfig.from_dict({**BASE, "width": 64})
    big_batch = RunConfig.from_dict({**BASE, "batch_size": 512})
    assert memory_estimate(wide, shape, k) > per and memory_estimate(big_batch, shape, k) > per
    assert step_activations(wide, shape, k) > step
    assert step_activations(big_batch, shape, k) == 8 * step  # linear in the batch


def test_populations_of_the_default_model_across_an_lr_axis():
    """The default's model (SmallCNN with BatchNorm, half of MNIST-1D) with 4 lrs x 3 seeds:
    one population at batch 32, split at batch 128 where a 12-member stack is slower."""
    base = {"dataset": "mnist1d", "data_fraction": 0.5, "model": "cnn", "batch_norm": True}
    for width, batch, sizes in [(16, 32, [12]), (16, 128, [3, 3, 3, 3])]:
        grid = expand_grid({**base, "width": width, "batch_size": batch},
                           {"lr": [0.02, 0.05, 0.1, 0.2]}, seeds=range(3))
        assert [len(p) for p in populations(grid)] == sizes


def test_run_id_is_stable_and_config_sensitive():
    a = RunConfig(width=8)
    assert run_id(a) == run_id(RunConfig(width=8)) == run_id(a.to_dict())
    assert run_id(a) != run_id(RunConfig(width=9))


def test_grid_trains_once_and_resumes_for_free(tmp_path, grid, monkeypatch):
    trained = count_trainings(monkeypatch)
    df = run_grid(grid, tmp_path, device="cpu", progress=False)
    assert len(df) == 8 and len(trained) == 8
    assert {"run_id", "width", "lr", "seed", "test_acc", "train_loss", "status"} <= set(df.columns)
    run_grid(grid, tmp_path, device="cpu", progress=False)
    assert len(trained) == 8  # nothing retrained


def test_deleting_one_run_retrains_its_population_and_saves_only_that_run(tmp_path, grid, monkeypatch):
    run_grid(grid, tmp_path, device="cpu", progress=False)
    before = load_results(tmp_path).set_index("run_id")
    victim, sibling = run_id(grid[3]), run_id(grid[2])  # seeds 1 and 0 of one cell
    sibling_files = {p.name: p.stat().st_mtime_ns for p in Store(tmp_path).run_dir(sibling).iterdir()}
    shutil.rmtree(Store(tmp_path).run_dir(victim))
    trained = count_trainings(monkeypatch)
    after = run_grid(grid, tmp_path, device="cpu", progress=False).set_index("run_id")
    # the victim's population is trained as the first time (here the cells of one width: the
    # lr axis merges them); only the victim is saved
    group = next(pop for pop in populations(grid) if grid[3] in pop)
    assert len(group) == 4 and sorted(trained, key=run_id) == sorted(group, key=run_id)
    assert {p.name: p.stat().st_mtime_ns for p in Store(tmp_path).run_dir(sibling).iterdir()} == sibling_files
    # same grouping, same machine and CPU kernel: bit for bit (README, "Reproducibility")
    for col in ("test_loss", "train_loss", "test_acc"):
        assert after.loc[victim, col] == before.loc[victim, col], col


def test_run_killed_midway_is_redone(tmp_path, grid, monkeypatch):
    run_grid(grid[:2], tmp_path, device="cpu", progress=False)
    store = Store(tmp_path)
    # A kill after the checkpoints but before metrics.json: the run is not finished.
    (store.run_dir(run_id(grid[0])) / "metrics.json").unlink()
    # A kill in the middle of an atomic write leaves only a temp file behind.
    (store.run_dir(run_id(grid[1])) / "metrics.json").rename(
        store.run_dir(run_id(grid[1])) / ".metrics.json.abc.tmp")
    assert not store.is_done(grid[0]) and not store.is_done(grid[1])
    trained = count_trainings(monkeypatch)
    run_grid(grid[:2], tmp_path, device="cpu", progress=False)
    assert sorted(c.seed for c in trained) == [0, 1]


def test_corrupt_or_truncated_files_are_named_and_redone(tmp_path, grid, monkeypatch):
    run_grid(grid[:2], tmp_path, device="cpu", progress=False)
    store = Store(tmp_path)
    (store.run_dir(run_id(grid[0])) / "metrics.json").write_text("{not json")
    ckpt = store.run_dir(run_id(grid[1])) / "final.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trained = count_trainings(monkeypatch)
        run_grid(grid[:2], tmp_path, device="cpu", progress=False)
    text = " ".join(str(w.message) for w in caught)
    assert "metrics.json" in text and "final.pt" in text
    assert len(trained) == 2


def test_store_round_trips_models_histories_and_metrics(tmp_path, grid):
    from landscape_utils.core.models import evaluate
    from landscape_utils.runs.store import load_model

    df = run_grid(grid[:1], tmp_path, device="cpu", progress=False)
    rid = df.run_id[0]
    model = load_model(tmp_path, rid)
    from landscape_utils.core.data import load_dataset
    d = load_dataset("digits")
    loss, acc = evaluate(model, d.x_test, d.y_test)
    assert loss == pytest.approx(df.test_loss[0], rel=1e-6) and acc == df.test_acc[0]
    assert len(load_history(tmp_path, [rid])) == 2
    store = Store(tmp_path)
    key = {"run_id": rid, "num_samples": 100}
    assert store.load_metric("hessian", key) is None
    store.save_metric("hessian", key, {"lambda_max": 3.5})
    assert store.load_metric("hessian", key) == {"lambda_max": 3.5}
    assert store.load_metric("hessian", {**key, "num_samples": 200}) is None
    table = store.metric_table("hessian")
    assert table.to_dict("records") == [{"run_id": rid, "num_samples": 100, "lambda_max": 3.5}]


def test_process_workers_ignore_ctrl_c():
    """An interrupt of the parent's process group (Ctrl-C, a kernel stopped by Jupyter)
    must not print a KeyboardInterrupt traceback from every idle worker."""
    import signal
    # A parent started in the background may already ignore SIGINT, and a spawned worker
    # would inherit that; give the parent Python's own handler, so only the initializer
    # can make the worker ignore it.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with ProcessExecutor(workers=1, device="cpu") as ex:
            handlers = list(ex.map(signal.getsignal, [signal.SIGINT]))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the parent keeps its own
    finally:
        signal.signal(signal.SIGINT, before)
    assert handlers == [signal.SIG_IGN]


def test_process_executor_matches_serial_and_pins_its_workers(tmp_path, grid):
    serial = run_grid(grid[:4], tmp_path / "a", device="cpu", progress=False)
    # No GPU here: two made-up GPU ids show the pinning (the environment each worker sets
    # before touching CUDA); training itself runs on the CPU.
    with ProcessExecutor(workers=2, gpus=["3", "5"]) as ex:
        procs = run_grid(grid[:4], tmp_path / "b", device="cpu", executor=ex, progress=False)
        reports = list(ex.map(_worker_report, [str(tmp_path / "rendezvous")] * 2))  # same workers
    cols = ["run_id", "test_loss", "train_loss"]
    a = serial[cols].sort_values("run_id").reset_index(drop=True)
    b = procs[cols].sort_values("run_id").reset_index(drop=True)
    assert a.equals(b)
    assert len({r["pid"] for r in reports}) == 2  # the rendezvous makes both workers report
    assert sorted(r["gpu"] for r in reports) == ["3", "5"]
    cores = len(os.sched_getaffinity(0))
    assert all(r["threads"] == max(1, cores // 2) for r in reports)


def test_unknown_executor_is_named(tmp_path, grid):
    with pytest.raises(ValueError, match="unknown executor 'slurm'"):
        run_grid(grid[:1], tmp_path, executor="slurm", progress=False)


# ---- executors: GPU pinning, threads ----------------------------------------------


def test_gpu_assignment_pins_one_gpu_per_worker():
    assert gpu_assignment(4, ["0", "1", "2", "3"]) == ["0", "1", "2", "3"]
    assert gpu_assignment(2, ["0", "1", "2", "3"]) == ["0", "1"]  # fewer workers than GPUs
    assert gpu_assignment(0, ["4", "7"]) == ["4", "7"]  # 0: one per slot
    # several workers per GPU: spread over the GPUs first, at most workers_per_gpu each
    assert gpu_assignment(4, ["0", "1"], workers_per_gpu=2) == ["0", "1", "0", "1"]
    assert gpu_assignment(0, ["0", "1"], workers_per_gpu=3) == ["0", "1"] * 3
    assert gpu_assignment(3, []) == [None] * 3  # CPU: environment left alone
    with pytest.raises(ValueError, match="workers=3 is more than 2 GPU"):
        gpu_assignment(3, ["0", "1"])
    with pytest.raises(ValueError, match="workers_per_gpu must be a positive integer, got 0"):
        gpu_assignment(2, ["0"], workers_per_gpu=0)


def _worker_report(rendezvous: str) -> dict:
    """Task for the pinning test: wait until both workers hold a task, then report."""
    import os
    import time
    from pathlib import Path

    import torch

    Path(rendezvous).mkdir(exist_ok=True)
    Path(rendezvous, str(os.getpid())).touch()
    deadline = time.time() + 120
    while len(list(Path(rendezvous).iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.05)
    return {"pid": os.getpid(), "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "threads": torch.get_num_threads()}


def test_process_executor_on_the_cpu_does_not_pin():
    ex = ProcessExecutor(workers=3, device="cpu")
    assert ex.assignment == [None] * 3 and ex.threads == max(1, len(os.sched_getaffinity(0)) // 3)


# ---- checks before training ---------------------------------------------------------
def test_train_sizes_match_the_loaders():
    from mnist1d.data import get_dataset_args

    from landscape_utils.core.data import load_dataset

    args = get_dataset_args()
    assert train_size("mnist1d") == int(args.num_samples * args.train_split)
    assert train_size("digits") == load_dataset("digits").num_train
    assert train_size("digits", 0.1) == load_dataset("digits", 0.1).num_train


def test_grid_is_checked_before_any_training(tmp_path, monkeypatch):
    trained = count_trainings(monkeypatch)
    good = RunConfig.from_dict({**BASE, "width": 4})
    too_big = RunConfig.from_dict({**BASE, "batch_size": 2000})  # digits has 1437 training samples
    with pytest.raises(ValueError, match="batch_size=2000 is larger than the training set of 'digits'"):
        run_grid([good, too_big], tmp_path, device="cpu", progress=False)
    assert trained == [] and not Store(tmp_path).run_ids()
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py/data_batch_1"):
        check_configs([RunConfig(dataset="cifar10", model="resnet18")], tmp_path / "nothing")


# ---- locks, resumes, grids that change --------------------------------------------
def test_cell_members_locked_elsewhere_are_skipped_then_awaited(tmp_path, grid):
    store = Store(tmp_path)
    members = populations(grid)[0][:2]  # one cell: width 4, lr 0.01, seeds 0 and 1
    task = {"configs": [c.to_dict() for c in members], "workdir": str(tmp_path), "device": "cpu"}
    with store.lock(run_id(members[1])) as got:  # another driver holds member 1
        assert got
        first = train_cell_task({**task, "wait": False})
    assert [s["status"] for s in first] == ["ok", "busy"]
    assert store.is_done(members[0]) and not store.is_done(members[1])
    second = train_cell_task({**task, "wait": True})  # the holder died without finishing it
    assert [s["status"] for s in second] == ["cached", "ok"] and store.is_done(members[1])


def test_changed_grid_reuses_old_cells_trains_new_ones_and_shows_only_its_own(tmp_path, monkeypatch):
    old = expand_grid(BASE, {"width": [4, 8]}, seeds=range(1))
    new = expand_grid(BASE, {"width": [8, 16]}, seeds=range(1))
    run_grid(old, tmp_path, device="cpu", progress=False)
    trained = count_trainings(monkeypatch)
    df = run_grid(new, tmp_path, device="cpu", progress=False)
    assert [c.width for c in trained] == [16]  # width 8 was reused
    assert sorted(df.width) == [8, 16]  # the width-4 run is not in this grid's table ...
    assert run_id(old[0]) in Store(tmp_path).run_ids()  # ... but is kept in the store


def test_diverged_runs_are_recorded_once_and_not_retrained(tmp_path, monkeypatch):
    grid = expand_grid({**BASE, "lr": 1e8}, {}, seeds=range(2))
    df = run_grid(grid, tmp_path, device="cpu", progress=False)
    assert list(df.status) == ["diverged", "diverged"]
    trained = count_trainings(monkeypatch)
    run_grid(grid, tmp_path, device="cpu", progress=False)
    assert trained == []



def test_runs_no_better_than_chance_are_failed_like_diverged_ones():
    import pandas as pd
    results = pd.DataFrame({"run_id": list("abcde"), "dataset": ["mnist1d"] * 4 + ["cifar100"],
                            "train_acc": [0.10, 0.149, 0.151, float("nan"), 0.011],
                            "status": ["ok", "ok", "ok", "diverged", "ok"]})
    out = runner.mark_collapsed(results)
    # 10 classes: chance 0.1, failed below 0.15; 100 classes: below 0.015; a NaN run stays diverged
    assert list(out.status) == ["diverged", "diverged", "ok", "diverged", "diverged"]
    assert list(out.collapsed) == [True, True, False, False, True]
    assert list(results.status) == ["ok", "ok", "ok", "diverged", "ok"]  # the input is not changed
    assert runner.mark_collapsed(results, multiple=1.2).status.tolist() == ["diverged", "ok", "ok", "diverged", "diverged"]
    # a table without the columns (e.g. no finished run) passes through
    assert runner.mark_collapsed(pd.DataFrame()).empty

# ---- killed and concurrent drivers ----------------------------------------------------
DRIVER = r'''
import os, signal, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from landscape_utils.runs import runner
from landscape_utils.runs.runner import expand_grid, run_grid

workdir, log, kill_at_write, delay, barrier = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
real_population = runner.train_population

def logged(configs, data, device):
    for cfg, result in real_population(configs, data, device):
        with open(log, "a") as fh:  # one line per training, written with O_APPEND
            fh.write(f"{os.getpid()} {runner.run_id(cfg)}\n")
        time.sleep(delay)
        yield cfg, result

runner.train_population = logged

if kill_at_write:  # SIGKILL this process half-way through its kill_at_write-th file write
    real_fdopen, count = os.fdopen, [0]
    def fdopen(fd, *a, **k):
        fh = real_fdopen(fd, *a, **k)
        count[0] += 1
        if count[0] == kill_at_write:
            real_write = fh.write
            def write(data):
                real_write(data[: len(data) // 2]); fh.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            fh.write = write
        return fh
    os.fdopen = fdopen

if barrier != "-":  # start together with the other driver
    Path(barrier, str(os.getpid())).touch()
    while len(list(Path(barrier).iterdir())) < 2:
        time.sleep(0.02)
grid = expand_grid({"dataset": "digits", "model": "mlp", "num_epochs": 1, "batch_size": 64},
                   {"width": [4, 8], "lr": [0.01, 0.1]}, seeds=range(2))
run_grid(grid, workdir, device="cpu", progress=False)
print("finished", flush=True)
'''

KILL_GRID = expand_grid({"dataset": "digits", "model": "mlp", "num_epochs": 1, "batch_size": 64},
                        {"width": [4, 8], "lr": [0.01, 0.1]}, seeds=range(2))


def start_driver(workdir, log, kill_at_write=0, delay=0.0, barrier="-"):
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(workdir), str(log), str(kill_at_write),
                             str(delay), str(barrier)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def assert_complete(workdir):
    """Every run of the grid present exactly once, finished and loadable; no temp files."""
    store = Store(workdir)
    df = load_results(workdir, KILL_GRID)
    assert len(df) == len(KILL_GRID) == df.run_id.nunique()
    assert sorted(p.name for p in (Path(workdir) / "runs").iterdir() if p.is_dir()) == sorted(df.run_id)
    assert not list(Path(workdir).rglob("*.tmp"))
    for rid in df.run_id:
        assert store.state_dict(rid, "final") and store.state_dict(rid, "init")
        assert len(store.history(rid)) == 1


@pytest.mark.parametrize("kill", ["mid-write", "from-outside"])
def test_driver_killed_mid_grid_then_rerun_completes_the_grid(tmp_path, monkeypatch, kill):
    work, log = tmp_path / "work", tmp_path / "log"
    if kill == "mid-write":
        # writes per run: init.pt, final.pt, config.json, history.json, metrics.json;
        # the 10th is the second run's metrics.json, the file that marks a run finished
        proc = start_driver(work, log, kill_at_write=10)
        proc.wait(timeout=300)
    else:
        proc = start_driver(work, log, delay=0.5)
        deadline = time.time() + 300
        while len(Store(work).run_ids()) < 3 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
    finished = set(Store(work).run_ids())
    assert 0 < len(finished) < len(KILL_GRID)
    saved = count_saves(monkeypatch)
    run_grid(KILL_GRID, work, device="cpu", progress=False)
    assert sorted(run_id(c) for c in saved) == sorted({run_id(c) for c in KILL_GRID} - finished)
    assert_complete(work)


def test_two_drivers_on_one_workdir_train_each_run_once(tmp_path):
    work, log, barrier = tmp_path / "work", tmp_path / "log", tmp_path / "barrier"
    barrier.mkdir()
    procs = [start_driver(work, log, delay=0.2, barrier=barrier) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and "finished" in out, err[-2000:]
    lines = [line.split() for line in log.read_text().splitlines()]
    rids = [rid for _, rid in lines]
    assert sorted(rids) == sorted(run_id(c) for c in KILL_GRID)  # each run trained exactly once
    assert len({pid for pid, _ in lines}) == 2  # and both drivers did train some of them
    assert_complete(work)


def _pid(_):
    return os.getpid()


def test_a_named_executor_is_kept_for_later_calls_and_dropped_after_a_failure():
    from landscape_utils.runs.runner import discard_executor, kept_executor

    a = kept_executor("process", workers=1, device="cpu", ray_address="")  # options it does not take are ignored
    b = kept_executor("process", workers=1, device="cpu")
    assert a is b  # one pool for the chapter's later tables
    assert kept_executor("process", workers=2, device="cpu") is not a
    first = list(a.map(_pid, [0]))
    assert list(b.map(_pid, [0])) == first  # the same worker process serves the second call
    discard_executor(a)
    c = kept_executor("process", workers=1, device="cpu")
    assert c is not a
    assert list(c.map(_pid, [0])) != first
    discard_executor(c)
    discard_executor(kept_executor("process", workers=2, device="cpu"))
    with pytest.raises(ValueError, match="unknown executor"):
        kept_executor("threads")


POOL_OWNER = r'''
import os, sys, time
from landscape_utils.runs.runner import ProcessExecutor
ex = ProcessExecutor(workers=2)
for _ in ex.map(abs, [-1]):  # wait for one worker to answer; the other may still be starting
    pass
print(os.getpid(), flush=True)
time.sleep(600)
'''


def test_pool_workers_exit_when_their_owner_is_killed():
    """A kernel (or any owner of a process pool) killed outright takes its workers with it."""
    import psutil

    owner = subprocess.Popen([sys.executable, "-c", POOL_OWNER], stdout=subprocess.PIPE, text=True)
    assert int(owner.stdout.readline()) == owner.pid
    workers = psutil.Process(owner.pid).children(recursive=True)
    assert len([w for w in workers if "spawn_main" in " ".join(w.cmdline())]) >= 1
    owner.kill()
    owner.wait(timeout=30)
    from conftest import wait_gone

    alive = wait_gone(workers, timeout=30)
    assert not alive, [w.pid for w in alive]
