"""The Ray executor on a local Ray with 2 CPUs: same results as the serial executor,
and a task whose worker dies is retried."""
from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (optional extra: pip install 'landscape_utils[ray]')")

from landscape_utils.runs.runner import RayExecutor, expand_grid, run_grid  # noqa: E402

pytestmark = pytest.mark.slow  # Ray: starts a server and processes

GRID = expand_grid({"dataset": "digits", "model": "mlp", "num_epochs": 2, "batch_size": 64},
                   {"width": [4, 8], "lr": [0.05]}, seeds=range(2))


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (starting one takes tens of seconds on a busy 2-core machine)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_grid_matches_serial(tmp_path, local_ray):
    cols = ["run_id", "status", "train_loss", "test_loss", "train_acc", "test_acc", "epochs_run"]
    serial = run_grid(GRID, tmp_path / "serial", device="cpu", progress=False)
    on_ray = run_grid(GRID, tmp_path / "ray", device="cpu", executor="ray", progress=False)
    a = serial[cols].sort_values("run_id").reset_index(drop=True)
    b = on_ray[cols].sort_values("run_id").reset_index(drop=True)
    assert len(b) == len(GRID) and list(a.run_id) == list(b.run_id) and list(b.status) == ["ok"] * len(GRID)
    # Same code and data on the same CPU; only the worker's thread count may differ.
    for c in ("train_loss", "test_loss"):
        assert b[c].to_numpy() == pytest.approx(a[c].to_numpy(), rel=1e-5)
    assert (a.test_acc - b.test_acc).abs().max() <= 1 / 360  # at most one test sample apart
    # A rerun on Ray finds everything finished and trains nothing.
    again = run_grid(GRID, tmp_path / "ray", device="cpu", executor="ray", progress=False)
    assert list(again.sort_values("run_id").train_time_s) == list(on_ray.sort_values("run_id").train_time_s)


def test_task_whose_worker_dies_is_retried(tmp_path, local_ray):
    marker = tmp_path / "attempts"

    def die_once(path):
        import os
        from pathlib import Path

        p = Path(path)
        attempt = len(p.read_text()) if p.exists() else 0
        p.write_text("x" * (attempt + 1))
        if attempt == 0:
            os._exit(1)  # the worker process dies, as on a lost node or the OOM killer
        return attempt

    ex = RayExecutor(max_retries=1)
    assert list(ex.map(die_once, [str(marker)])) == [1]
    assert marker.read_text() == "xx"  # two attempts


def test_measurements_on_ray_match_serial(tmp_path, local_ray):
    """Chapters 2 and 3's tasks (Hessian of a run, curve and CKA of a pair) on Ray."""
    from landscape_utils.experiments.global_metrics import GlobalSettings, measure_pairs
    from landscape_utils.experiments.local import HessianSettings, hessian_table

    runs = run_grid(GRID, tmp_path / "w", device="cpu", progress=False)
    pairs = [tuple(sorted(g.run_id)) for _, g in runs.groupby("width")]
    hs = HessianSettings(num_samples=100, tol=1e-3, rel_tol=0.1, max_probes=20, sketch_size=5)
    gs = GlobalSettings(curve_epochs=2, curve_batch_size=64, num_points=5, cka_samples=64, cka_batches=4)
    import shutil

    shutil.copytree(tmp_path / "w", tmp_path / "r")
    a = hessian_table(tmp_path / "w", runs.run_id, hs, device="cpu", progress=False)
    b = hessian_table(tmp_path / "r", runs.run_id, hs, device="cpu", progress=False, executor="ray")
    assert b.lambda_max.to_numpy() == pytest.approx(a.lambda_max.to_numpy(), rel=1e-4)
    assert b.trace.to_numpy() == pytest.approx(a.trace.to_numpy(), rel=1e-4)
    ra, _ = measure_pairs(str(tmp_path / "w"), pairs, gs, device="cpu", progress=False)
    rb, computed = measure_pairs(str(tmp_path / "r"), pairs, gs, device="cpu", progress=False, executor="ray")
    assert computed == len(pairs)
    for x, y in zip(ra, rb):
        assert y["mc"] == pytest.approx(x["mc"], rel=1e-4, abs=1e-6)
        assert y["cka"] == pytest.approx(x["cka"], rel=1e-4)
