"""The cost plan (`--plan`): task counts against a brute-force count of the chapters'
tasks, stored tasks found with the chapters' store keys, the width scaling of the timer,
and the paper's params planned without CIFAR-10 present."""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import yaml

from landscape_utils.book import driver as book
from landscape_utils.book import plan
from landscape_utils.book.driver import BOOK_DIR, chapters, load_params
from landscape_utils.runs.runner import grid_from_params, run_grid
from landscape_utils.runs.store import Store, run_id

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]


def test_width_timer_interpolates_and_scales_with_the_measured_exponent():
    calls = []

    def measure(w):  # a small fixed cost and a width**1.5 part: slope within [1, 2]
        calls.append(w)
        return 1e-4 + 1e-3 * w ** 1.5

    t = plan.WidthTimer(measure, budget=60)
    t.prepare([1, 2, 4, 8, 16])
    assert sorted(set(calls)) == [1, 2, 4, 8, 16]
    assert t(4) == pytest.approx(measure(4))
    assert t(6) == pytest.approx((measure(4) + measure(8)) / 2)  # linear between timed widths
    # past the widest: width^p from 16, p the log-log slope of the four widest, in [1, 2]
    ws = [2, 4, 8, 16]
    xs, ys = [math.log(w) for w in ws], [math.log(measure(w)) for w in ws]
    mx, my = sum(xs) / 4, sum(ys) / 4
    p = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    assert t.exponent() == pytest.approx(p)
    assert t(64) == pytest.approx(measure(16) * 4 ** p)
    assert "timed at width 1, 2, 4, 8, 16" in t.how()


def test_width_timer_stops_at_its_budget_and_clamps_the_exponent():
    t = plan.WidthTimer(lambda w: 1e-6 * w ** 3, budget=0.0)  # no time to spend: one width only
    t.prepare([2, 4, 8])
    assert list(t.timed) == [2]
    assert t.exponent() == 2.0  # one width: width²
    t2 = plan.WidthTimer(lambda w: 1e-6 * w ** 3, budget=60)
    t2.prepare([2, 4, 8])
    assert t2.exponent() == 2.0  # cubic growth is clamped to width²


def _params(tmp_path, **sections) -> dict:
    p = {"shared": {"workdir": str(tmp_path / "w"), "device": "cpu"},
         "01_training_grid": {"dataset": "digits", "model": "mlp", "load_values": [4, 8],
                              "temperature_values": [32, 64], "num_seeds": 3, "num_epochs": 1,
                              "data_fraction": 1.0},
         "02_local_metrics": {"num_samples": 64, "max_iter": 10, "max_probes": 10},
         "03_global_connectivity": {"max_pairs": 2, "curve_epochs": 1, "cka_samples": 128, "cka_batches": 2},
         **sections}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(p))
    stems = ["01_training_grid", "02_local_metrics", "03_global_connectivity"]
    return load_params(path, [BOOK_DIR / f"{s}.py" for s in stems])


def test_plan_counts_the_tasks_and_finds_the_stored_ones(tmp_path, monkeypatch):
    from landscape_utils.runs.runner import train_size

    # deterministic timings: an SGD step costs 1 ms x width per batch of 32
    monkeypatch.setattr(plan, "time_epoch", lambda c, device, num_batches: 1e-3 * c.width * (
        train_size(c.dataset) // c.batch_size))
    monkeypatch.setattr(plan, "time_hvp", lambda c, n, device: 1e-4 * c.width)
    monkeypatch.setattr(plan, "time_curve_step", lambda c, b, device: 1e-4 * c.width)
    params = _params(tmp_path)
    rows, notes = plan.plan(params, budget=1.0)
    by = {r.kind: r for r in rows}
    # brute force: 2 widths x 2 batch sizes x 3 seeds runs; one Hessian per run; one density
    # per cell; min(3 choose 2, max_pairs=2) pairs per cell
    assert by["training runs"].total == 2 * 2 * 3 and by["training runs"].done == 0
    assert by["Hessians (λmax, trace)"].total == 12
    assert by["spectral densities"].total == 4
    assert by["seed pairs (curve, CKA)"].total == 4 * min(len(list(itertools.combinations(range(3), 2))), 2)
    assert all(r.seconds is not None and r.seconds > 0 for r in rows)
    assert any("timed at width 4, 8" in n for n in notes)
    # train two runs and store one Hessian record under the chapter's key: the plan sees them
    merged = book.merged_values("01_training_grid", params["01_training_grid"])
    grid = grid_from_params(merged)
    run_grid(grid[:2], tmp_path / "w", device="cpu", progress=False)
    from landscape_utils.experiments.local import HESSIAN_METRIC, HessianSettings

    p2 = book.merged_values("02_local_metrics", params["02_local_metrics"])
    s = HessianSettings.from_params(p2)  # as chapter 2 builds it
    Store(tmp_path / "w").save_metric(HESSIAN_METRIC, s.key(run_id(grid[0])), {"lambda_max": 1.0})
    rows2, _ = plan.plan(params, budget=1.0)
    by2 = {r.kind: r for r in rows2}
    assert by2["training runs"].done == 2
    assert by2["Hessians (λmax, trace)"].done == 1
    # only what is left is costed: the two trained runs (width 4, batch 32, one epoch of digits)
    n = train_size("digits")
    run_cost = 1e-3 * 4 / 32 * (n // 32) * 32
    assert by2["training runs"].seconds == pytest.approx(by["training runs"].seconds - 2 * run_cost)
    # and every run is costed: 3 seeds x 2 batch sizes x (width 4 + width 8)
    all_cost = 3 * sum(1e-3 * w / 32 * (n // b) * b for w in (4, 8) for b in (32, 64))
    assert by["training runs"].seconds == pytest.approx(all_cost)
    text = plan.format_plan(rows2, notes, "p.yaml")
    assert "training runs" in text and "device-hours" in text


def test_plan_of_the_paper_grid_needs_no_cifar_data(tmp_path, capsys):
    """The paper's params, planned with a tiny timing budget; CIFAR-10 is not under data/."""
    paper = yaml.safe_load((REPO / "params" / "paper_cifar10.yaml").read_text())
    paper["shared"]["workdir"] = str(tmp_path / "w")
    paper["01_training_grid"]["data_root"] = str(tmp_path / "no_data")
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(paper))
    params = load_params(path, chapters())
    book.preflight(params, path, data=False)  # the plan's pre-flight skips the dataset files
    with pytest.raises(book.ParamsError, match="dataset 'cifar10' not found"):
        book.preflight(params, path)  # a run would stop here
    rows, notes = plan.plan(params, budget=0.5)
    by = {(r.chapter, r.kind): r for r in rows}
    assert by[("01_training_grid", "training runs")].total == 14 * 13 * 5
    assert by[("02_local_metrics", "Hessians (λmax, trace)")].total == 910
    assert by[("03_global_connectivity", "seed pairs (curve, CKA)")].total == 182 * 3
    assert by[("04_taxonomy", "label-noise runs")].total == (6 + 6) * 3
    assert not (tmp_path / "w").exists()  # nothing written
    assert any("resnet18 on cifar10" in n for n in notes)
