import json
import shutil
import warnings

import pytest

from landscape_utils import runner
from landscape_utils.runner import expand_grid, populations, run_grid
from landscape_utils.store import Store, load_history, load_results, run_id
from landscape_utils.train import RunConfig

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


def test_expand_grid_and_populations(grid):
    assert len(grid) == 8 and len({run_id(c) for c in grid}) == 8
    pops = populations(grid)
    assert len(pops) == 4 and all(len(p) == 2 for p in pops)
    with pytest.raises(ValueError, match="widht"):
        expand_grid(BASE, {"widht": [1]}, seeds=[0])


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


def test_deleting_one_run_retrains_only_that_run(tmp_path, grid, monkeypatch):
    run_grid(grid, tmp_path, device="cpu", progress=False)
    before = load_results(tmp_path).set_index("run_id")
    victim = run_id(grid[3])
    shutil.rmtree(Store(tmp_path).run_dir(victim))
    trained = count_trainings(monkeypatch)
    after = run_grid(grid, tmp_path, device="cpu", progress=False).set_index("run_id")
    assert trained == [grid[3]]
    # deterministic on CPU: the retrained run has the same metrics as before
    assert after.loc[victim, "test_loss"] == before.loc[victim, "test_loss"]


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
    from landscape_utils.store import load_model
    from landscape_utils.train import evaluate

    df = run_grid(grid[:1], tmp_path, device="cpu", progress=False)
    rid = df.run_id[0]
    model = load_model(tmp_path, rid)
    from landscape_utils.data import load_dataset
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


def test_process_executor_matches_serial(tmp_path, grid):
    serial = run_grid(grid[:4], tmp_path / "a", device="cpu", progress=False)
    procs = run_grid(grid[:4], tmp_path / "b", device="cpu", executor="process", workers=2, progress=False)
    cols = ["run_id", "test_loss", "train_loss"]
    a = serial[cols].sort_values("run_id").reset_index(drop=True)
    b = procs[cols].sort_values("run_id").reset_index(drop=True)
    assert a.equals(b)


def test_unknown_executor_is_named(tmp_path, grid):
    with pytest.raises(ValueError, match="unknown executor 'slurm'"):
        run_grid(grid[:1], tmp_path, executor="slurm", progress=False)
