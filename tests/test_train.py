import math

import pytest
import torch

from landscape_utils.core.data import load_dataset
from landscape_utils.core.population import train_population
from landscape_utils.core.train import RunConfig, lr_factor, train_run


def cfg(**kw):
    base = dict(dataset="mnist1d", width=16, batch_size=32, num_epochs=3, lr=0.05)
    return RunConfig(**{**base, **kw})


def test_training_fits_an_easy_task(blobs):
    out = train_run(cfg(num_epochs=10), blobs)
    m = out["metrics"]
    assert m["status"] == "ok" and m["train_acc"] > 0.95 and m["test_acc"] > 0.9
    assert len(out["history"]) == 10
    assert out["history"][-1]["train_loss"] < out["history"][0]["train_loss"]


def test_same_config_and_seed_give_identical_results(blobs):
    a, b = train_run(cfg(seed=1), blobs), train_run(cfg(seed=1), blobs)
    keys = ("train_loss", "train_acc", "test_loss", "test_acc")
    assert [a["metrics"][k] for k in keys] == [b["metrics"][k] for k in keys]
    assert a["history"] == b["history"]
    assert all(torch.equal(a["final_state"][k], b["final_state"][k]) for k in a["final_state"])
    c = train_run(cfg(seed=2), blobs)
    assert not torch.equal(a["init_state"]["net.1.weight"], c["init_state"]["net.1.weight"])


def test_initial_checkpoint_is_kept(blobs):
    out = train_run(cfg(), blobs)
    assert set(out["init_state"]) == set(out["final_state"])
    assert not torch.equal(out["init_state"]["net.1.weight"], out["final_state"]["net.1.weight"])


def test_divergence_is_recorded_not_raised(blobs):
    out = train_run(cfg(lr=1e6, momentum=0.99, weight_decay=0.0, num_epochs=5), blobs)
    m = out["metrics"]
    assert m["status"] == "diverged" and math.isnan(m["test_acc"])
    assert m["epochs_run"] <= 5


def test_early_stop_stops_when_the_loss_is_flat(blobs):
    # lr so small that the loss does not move: the paper's rule stops after 5 flat epochs
    out = train_run(cfg(lr=1e-9, num_epochs=50, early_stop=True), blobs)
    assert out["metrics"]["epochs_run"] == 6


def test_schedules():
    assert lr_factor("constant", 9, 10) == 1.0
    assert [lr_factor("step", e, 100) for e in (74, 75, 99)] == [1.0, 0.1, 0.1]
    assert lr_factor("cosine", 0, 10) == 1.0 and lr_factor("cosine", 5, 10) == pytest.approx(0.5)


@pytest.mark.parametrize("kw,match", [
    ({"dataset": "mnist2d"}, "unknown dataset"), ({"model": "vgg"}, "unknown model"),
    ({"optimizer": "adam"}, "unknown optimizer"), ({"schedule": "linear"}, "unknown schedule"),
    ({"width": 0}, "width must be"), ({"label_noise": 2.0}, "label_noise"),
    ({"data_fraction": 0.0}, "data_fraction"), ({"batch_size": -1}, "batch_size must be"),
    ({"lr": -0.1}, "lr must be"),
])
def test_bad_config_values_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        cfg(**kw).validate()


def test_unknown_config_key_is_named():
    with pytest.raises(ValueError, match="widht"):
        RunConfig.from_dict({"widht": 3})


def test_batch_larger_than_training_set_is_refused(blobs):
    with pytest.raises(ValueError, match="larger than the training set"):
        train_run(cfg(batch_size=10_000), blobs)


def test_population_members_equal_single_runs(blobs):
    configs = [cfg(seed=s) for s in range(2)]
    pop = dict(train_population(configs, blobs))
    for c in configs:
        alone = train_run(c, blobs)
        # stacked kernels sum in another order: equal to float rounding, not bit for bit
        assert pop[c]["metrics"]["test_loss"] == pytest.approx(alone["metrics"]["test_loss"], rel=1e-5)
    with pytest.raises(ValueError, match="differ only in seed"):
        list(train_population([cfg(seed=0), cfg(seed=1, width=8)], blobs))


def test_load_data_is_the_runs_dataset():
    c = RunConfig(dataset="digits", data_fraction=0.5, label_noise=0.2, data_seed=3)
    d = c.load_data()
    ref = load_dataset("digits", 0.5, 0.2, 3)
    assert d.num_train == ref.num_train and d.x_train.device.type == "cpu"
    assert torch.equal(d.x_train, ref.x_train) and torch.equal(d.y_train, ref.y_train)
    other = RunConfig(dataset="digits", data_fraction=0.5, label_noise=0.2, data_seed=4).load_data()
    assert not torch.equal(d.y_train, other.y_train)  # data_seed is used
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        RunConfig(dataset="cifar10", model="resnet18").load_data(data_root="/nonexistent")


def test_train_and_population_do_not_import_each_other():
    """The population trainer builds on train.py; train.py never imports it back."""
    import ast
    from pathlib import Path

    import landscape_utils.core.train as train_module

    tree = ast.parse(Path(train_module.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any("population" in m or m in ("runner", "store") for m in imported), imported


def test_sgd_steps_drops_the_last_partial_minibatch():
    import numpy as np

    from landscape_utils.core.train import sgd_steps

    assert sgd_steps(48, 2000, 512) == 48 * 3  # 2000 = 3 x 512 + 464: 464 examples dropped each epoch
    assert sgd_steps(40, 2000, 32) == 2480
    np.testing.assert_array_equal(sgd_steps(np.array([2, 3]), 100, np.array([10, 30])), [20, 9])
