"""The vectorized population trainer against S separate ``train_run``s with the same seeds."""
import math

import pytest
import torch

from landscape_utils.core.data import Dataset
from landscape_utils.core.models import build_model, evaluate
from landscape_utils.core.population import supports_population, train_population, train_population_vectorized
from landscape_utils.core.train import RunConfig, train_run

ATOL = 2e-5  # float32 rounding: batched kernels sum in another order than single ones


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny ops: one intra-op thread is faster, and much faster on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cfg(**kw):
    base = dict(dataset="mnist1d", width=16, batch_size=32, num_epochs=3, lr=0.05)
    return RunConfig(**{**base, **kw})


def overlapping_blobs(n_train=384, n_test=256, dim=10, k=4, seed=1) -> Dataset:
    """Blobs that overlap, so accuracy is well below 1 and depends on the weights."""
    g = torch.Generator().manual_seed(seed)
    centers = 0.6 * torch.randn(k, dim, generator=g)

    def draw(n):
        y = torch.randint(0, k, (n,), generator=g)
        return centers[y] + torch.randn(n, dim, generator=g), y

    (x_tr, y_tr), (x_te, y_te) = draw(n_train), draw(n_test)
    return Dataset(x_tr, y_tr, x_te, y_te, y_tr.clone(), k, "blobs", 0.0)


def image_blobs(n_train=160, n_test=64, shape=(1, 8, 8), k=3, seed=2) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, *shape, generator=g)

    def draw(n):
        y = torch.randint(0, k, (n,), generator=g)
        return centers[y] + 0.5 * torch.randn(n, *shape, generator=g), y

    (x_tr, y_tr), (x_te, y_te) = draw(n_train), draw(n_test)
    return Dataset(x_tr, y_tr, x_te, y_te, y_tr.clone(), k, "images", 0.0)


def assert_same_run(alone, pop, atol=ATOL):
    assert set(pop) == set(alone)
    assert set(pop["metrics"]) == set(alone["metrics"])
    assert pop["metrics"]["status"] == alone["metrics"]["status"]
    assert pop["metrics"]["epochs_run"] == alone["metrics"]["epochs_run"]
    assert pop["metrics"]["num_params"] == alone["metrics"]["num_params"]
    # initialization: bit for bit
    assert list(pop["init_state"]) == list(alone["init_state"])
    for k, v in alone["init_state"].items():
        assert torch.equal(pop["init_state"][k], v), k
    # final state: same keys, dtypes and shapes; values within float tolerance
    assert list(pop["final_state"]) == list(alone["final_state"])
    for k, v in alone["final_state"].items():
        p = pop["final_state"][k]
        assert p.dtype == v.dtype and p.shape == v.shape and p.device.type == "cpu", k
        if v.is_floating_point():
            torch.testing.assert_close(p, v, atol=atol, rtol=1e-4, equal_nan=True, msg=k)
        else:
            assert torch.equal(p, v), k
    assert len(pop["history"]) == len(alone["history"])
    for hp, ha in zip(pop["history"], alone["history"]):
        assert set(hp) == set(ha)
        assert hp["epoch"] == ha["epoch"] and hp["lr"] == ha["lr"]
        assert hp["train_acc"] == pytest.approx(ha["train_acc"], abs=2 / 1000)
        if math.isfinite(ha["train_loss"]):
            assert hp["train_loss"] == pytest.approx(ha["train_loss"], rel=1e-4, abs=1e-6)
        else:
            assert not math.isfinite(hp["train_loss"])


def run_both(configs, data, **kw):
    pop = list(train_population_vectorized(configs, data, **kw))
    assert sorted(c.seed for c, _ in pop) == sorted(c.seed for c in configs)
    return dict(pop), {c: train_run(c, data) for c in configs}


def test_short_training_matches_separate_runs(blobs):
    configs = [cfg(seed=s) for s in (0, 1, 7)]
    pop, alone = run_both(configs, blobs)
    for c in configs:
        assert_same_run(alone[c], pop[c])


def test_fuller_training_reaches_the_same_accuracy():
    data = overlapping_blobs()
    configs = [cfg(seed=s, num_epochs=15, schedule="cosine") for s in range(3)]
    pop, alone = run_both(configs, data)
    for c in configs:
        a, p = alone[c]["metrics"], pop[c]["metrics"]
        assert 0.4 < a["test_acc"] < 0.99  # a task where the weights matter
        assert p["test_acc"] == a["test_acc"] and p["train_acc"] == a["train_acc"]
        assert p["test_loss"] == pytest.approx(a["test_loss"], rel=1e-3)


def test_batch_norm_running_statistics_are_kept_per_member(blobs):
    configs = [cfg(seed=s, batch_norm=True, depth=3) for s in range(3)]
    pop, alone = run_both(configs, blobs)
    for c in configs:
        assert_same_run(alone[c], pop[c], atol=1e-4)
        st = pop[c]["final_state"]
        assert int(st["net.2.num_batches_tracked"]) == 3 * (blobs.num_train // 32)
        # the stored checkpoint evaluates in a fresh module like the model trained alone
        model = build_model("mlp", 16, blobs.in_shape, blobs.num_classes, batch_norm=True, depth=3)
        model.load_state_dict(st)
        loss, acc = evaluate(model, blobs.x_test, blobs.y_test)
        assert acc == alone[c]["metrics"]["test_acc"]
        assert loss == pytest.approx(alone[c]["metrics"]["test_loss"], rel=1e-3, abs=1e-6)
    # members really differ (own init, own data order, own statistics)
    a, b = (pop[c]["final_state"]["net.2.running_mean"] for c in configs[:2])
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_cnn_1d_matches_separate_runs(blobs, batch_norm):
    configs = [cfg(model="cnn", width=4, seed=s, batch_norm=batch_norm, num_epochs=2) for s in range(2)]
    pop, alone = run_both(configs, blobs)
    for c in configs:
        assert_same_run(alone[c], pop[c], atol=1e-4)


def test_cnn_2d_matches_separate_runs():
    data = image_blobs()
    configs = [cfg(model="cnn", width=4, seed=s, batch_norm=True, num_epochs=2) for s in range(2)]
    pop, alone = run_both(configs, data)
    for c in configs:
        assert_same_run(alone[c], pop[c], atol=1e-4)


def test_a_diverging_member_does_not_disturb_the_others(blobs):
    # one population whose members differ in lr: member 1 blows up in its first epoch
    configs = [cfg(seed=0, lr=0.01, momentum=0.99, weight_decay=0.0, num_epochs=4),
               cfg(seed=1, lr=1e6, momentum=0.99, weight_decay=0.0, num_epochs=4),
               cfg(seed=2, lr=0.02, momentum=0.99, weight_decay=0.0, num_epochs=4)]
    pop, alone = run_both(configs, blobs, vary=("lr",))
    bad = pop[configs[1]]["metrics"]
    assert bad["status"] == "diverged" and math.isnan(bad["test_acc"])
    assert bad["epochs_run"] == alone[configs[1]]["metrics"]["epochs_run"] < 4
    for c in (configs[0], configs[2]):
        assert pop[c]["metrics"]["status"] == "ok" and pop[c]["metrics"]["epochs_run"] == 4
        assert_same_run(alone[c], pop[c])


def test_a_fully_diverging_population_is_recorded_not_raised(blobs):
    configs = [cfg(seed=s, lr=1e6, momentum=0.99, weight_decay=0.0, num_epochs=5) for s in range(2)]
    pop, alone = run_both(configs, blobs)
    for c in configs:
        assert pop[c]["metrics"]["status"] == "diverged"
        assert pop[c]["metrics"]["epochs_run"] == alone[c]["metrics"]["epochs_run"]


def test_early_stopped_member_leaves_and_the_rest_go_on(blobs):
    # the lr=1e-9 member is flat and stops after 6 epochs; the other trains all 12
    configs = [cfg(seed=0, lr=1e-9, early_stop=True, num_epochs=12),
               cfg(seed=1, lr=0.05, early_stop=True, num_epochs=12)]
    results = list(train_population_vectorized(configs, blobs, vary=("lr",)))
    assert [c.seed for c, _ in results] == [0, 1]  # yielded as they leave
    pop = dict(results)
    assert pop[configs[0]]["metrics"]["epochs_run"] == 6
    for c in configs:
        assert_same_run(train_run(c, blobs), pop[c])


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_schedules_and_per_member_weight_decay(blobs, schedule):
    configs = [cfg(seed=0, schedule=schedule, num_epochs=4, weight_decay=0.0),
               cfg(seed=1, schedule=schedule, num_epochs=4, weight_decay=1e-2)]
    pop, alone = run_both(configs, blobs, vary=("weight_decay",))
    for c in configs:
        assert_same_run(alone[c], pop[c])


def test_single_member_population(blobs):
    pop, alone = run_both([cfg(seed=3)], blobs)
    assert_same_run(alone[cfg(seed=3)], pop[cfg(seed=3)])


def test_configs_must_differ_only_in_seed(blobs):
    with pytest.raises(ValueError, match="differ only in seed.*width"):
        list(train_population_vectorized([cfg(seed=0), cfg(seed=1, width=8)], blobs))
    with pytest.raises(ValueError, match="differ only in seed.*lr"):
        list(train_population_vectorized([cfg(seed=0), cfg(seed=1, lr=0.1)], blobs))
    with pytest.raises(ValueError, match="vary may only name"):
        list(train_population_vectorized([cfg(seed=0)], blobs, vary=("momentum",)))
    with pytest.raises(ValueError, match="at least one"):
        train_population_vectorized([], blobs)  # raises at the call, before iterating
    with pytest.raises(ValueError, match="larger than the training set"):
        list(train_population_vectorized([cfg(batch_size=10_000)], blobs))


def test_fallback_predicate(monkeypatch):
    import landscape_utils.core.population as population

    assert supports_population(cfg(model="mlp"))
    assert supports_population(cfg(model="mlp", batch_norm=True))
    assert supports_population(cfg(model="cnn"))
    assert supports_population(cfg(model="resnet18", batch_norm=True))
    assert supports_population(cfg(model="resnet18"))
    monkeypatch.setattr(population, "_SUPPORTED_MODELS", ("mlp",))
    assert not supports_population(cfg(model="cnn"))
    with pytest.raises(ValueError, match="not supported"):
        list(train_population_vectorized([cfg(model="cnn")], image_blobs()))


def cifar_like(n_train=64, n_test=64, k=4, seed=3) -> Dataset:
    """CIFAR-shaped inputs (3x32x32): k class templates plus noise, so accuracy depends on
    the weights after a few steps."""
    return image_blobs(n_train=n_train, n_test=n_test, shape=(3, 32, 32), k=k, seed=seed)


@pytest.fixture
def float64():
    """Build models and data in float64 for the test."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.slow  # ResNet18 in float64
@pytest.mark.parametrize("width,batch_norm", [(1, True), (2, True), (2, False)])
def test_resnet18_matches_separate_runs(width, batch_norm, float64):
    """Grouped convolutions, per-member BatchNorm statistics and the residual sums give
    each member the parameters, statistics and history of its own ``train_run``.

    In float64: tiny BatchNorm ResNets amplify rounding differences chaotically (in
    float32, ``train_run`` against itself with an init perturbed by 1e-6 drifts by 1e-3
    within 2-4 steps), so float32 rounding differences (the stacked kernels sum in another
    order) do not stay at rounding level for long. In float64 they do, and the comparison
    is tight."""
    data = cifar_like()
    assert data.x_train.dtype == torch.float64
    configs = [cfg(model="resnet18", width=width, batch_norm=batch_norm, batch_size=16, lr=0.05,
                   num_epochs=2, seed=s) for s in (0, 1, 2)]
    pop, alone = run_both(configs, data)
    for c in configs:
        assert pop[c]["final_state"]["conv1.weight"].dtype == torch.float64
        assert_same_run(alone[c], pop[c], atol=1e-9)
    if batch_norm:  # each member has its own running statistics, and they moved
        st = [pop[c]["final_state"] for c in configs]
        assert int(st[0]["bn1.num_batches_tracked"]) == 2 * (64 // 16)
        assert not torch.allclose(st[0]["layers.3.1.bn2.running_var"], st[1]["layers.3.1.bn2.running_var"])
        assert not torch.allclose(st[0]["bn1.running_mean"], alone[configs[0]]["init_state"]["bn1.running_mean"])


def test_resnet18_float32_steps_match_to_rounding():
    """In float32, after 4 steps at a small lr, still within rounding of ``train_run``."""
    data = cifar_like()
    configs = [cfg(model="resnet18", width=2, batch_norm=True, batch_size=16, lr=0.01,
                   num_epochs=1, seed=s) for s in (0, 1)]
    pop, alone = run_both(configs, data)
    for c in configs:
        assert_same_run(alone[c], pop[c], atol=1e-4)


def test_resnet18_short_training_reaches_the_same_accuracy():
    """16 steps: the parameters may drift apart by the chaotic amplification noted above,
    but what the runs learned (accuracy) is the same."""
    data = cifar_like(k=3)
    configs = [cfg(model="resnet18", width=2, batch_norm=True, batch_size=16, lr=0.01,
                   num_epochs=4, seed=s) for s in (0, 1, 2)]
    pop, alone = run_both(configs, data)
    assert max(alone[c]["metrics"]["train_acc"] for c in configs) > 0.5  # chance is 1/3
    for c in configs:
        a, p = alone[c]["metrics"], pop[c]["metrics"]
        assert p["status"] == a["status"] == "ok"
        assert p["test_acc"] == a["test_acc"] and p["train_acc"] == a["train_acc"]
        assert p["test_loss"] == pytest.approx(a["test_loss"], rel=2e-2)


def test_train_population_dispatches_and_falls_back(blobs, monkeypatch):
    """The runner's entry point: stacked for supported models with >= 2 seeds, one
    ``train_run`` per seed otherwise (unsupported model, one seed, vectorize=False)."""
    import landscape_utils.core.population as population

    calls = []
    real = population.train_population_vectorized

    def spy(configs, data, device="cpu", **kw):
        calls.append([c.seed for c in configs])
        return real(configs, data, device, **kw)

    monkeypatch.setattr(population, "train_population_vectorized", spy)
    configs = [cfg(seed=s, num_epochs=2) for s in range(2)]
    pop = dict(train_population(configs, blobs))
    assert calls == [[0, 1]]
    for c in configs:
        assert_same_run(train_run(c, blobs), pop[c])
    # ResNet18 cells are stacked too
    data = image_blobs(n_train=64, n_test=32)
    resnet = [cfg(model="resnet18", width=1, batch_norm=True, num_epochs=1, seed=s) for s in range(2)]
    assert [c.seed for c, _ in train_population(resnet, data)] == [0, 1]
    assert calls == [[0, 1], [0, 1]]
    # fallbacks: results are train_run's, bit for bit
    cases = [(configs[:1], blobs, {}), (configs, blobs, {"vectorize": False})]
    for members, d, kw in cases:
        out = list(train_population(members, d, **kw))
        assert [c for c, _ in out] == members  # in configs order
        for c, r in out:
            alone = train_run(c, d)
            assert r["metrics"]["test_loss"] == alone["metrics"]["test_loss"]
            assert all(torch.equal(r["final_state"][k], v) for k, v in alone["final_state"].items())
    monkeypatch.setattr(population, "supports_population", lambda c: False)  # a model not stacked
    assert [c for c, _ in train_population(configs, blobs)] == configs
    assert calls == [[0, 1], [0, 1]]  # none of the fallbacks used the stacked trainer


# ---- populations across the temperature axis: members differ in lr and weight decay ----
def temperature_population(**kw):
    """4 lrs x 3 seeds (the S = 12 of a grid whose temperature axis is the lr), with two
    weight decays among the lrs, under a step schedule that decays mid-training."""
    lrs, wds = (0.01, 0.03, 0.06, 0.1), (0.0, 1e-3, 0.0, 1e-2)
    return [cfg(seed=s, lr=lr, weight_decay=wd, schedule="step", decay_at=0.5, decay_factor=0.3, **kw)
            for lr, wd in zip(lrs, wds) for s in (0, 1, 2)]


@pytest.mark.parametrize("kind", ["mlp", "cnn+bn"])
def test_lr_and_weight_decay_population_matches_separate_runs(blobs, kind, monkeypatch):
    """Through the runner's entry point: the members, differing in lr, weight decay and
    seed, are stacked (one call to the vectorized trainer, told what varies), and each
    ends where its own ``train_run`` does, its per-epoch lr following its own lr down the
    schedule, within the tolerances of the seed populations."""
    import landscape_utils.core.population as population

    extra = dict(num_epochs=4) if kind == "mlp" else dict(model="cnn", width=4, batch_norm=True, num_epochs=2)
    configs = temperature_population(**extra)
    calls = []
    real = population.train_population_vectorized

    def spy(configs, data, device="cpu", **kw):
        calls.append(kw.get("vary"))
        return real(configs, data, device, **kw)

    monkeypatch.setattr(population, "train_population_vectorized", spy)
    pop = dict(train_population(configs, blobs))
    assert calls == [("lr", "weight_decay")] and len(pop) == 12
    for c in configs:
        alone = train_run(c, blobs)
        assert_same_run(alone, pop[c], atol=ATOL if kind == "mlp" else 1e-4)
        epochs = c.num_epochs
        assert [h["lr"] for h in pop[c]["history"]] == [c.lr] * (epochs // 2) + [c.lr * 0.3] * (epochs // 2)
    # the members really trained differently: same seed, different lr, different weights
    first = [pop[c]["final_state"] for c in configs if c.seed == 0]
    key = next(iter(first[0]))
    assert not torch.allclose(first[0][key], first[1][key])


def test_lr_population_with_one_member_per_lr(blobs):
    """Members differing only in lr (one seed each) keep the seed's init, bit for bit."""
    configs = [cfg(seed=0, lr=lr, num_epochs=2) for lr in (0.02, 0.05, 0.2)]
    pop, alone = run_both(configs, blobs, vary=("lr",))
    for c in configs:
        assert_same_run(alone[c], pop[c])
    inits = [pop[c]["init_state"] for c in configs]
    assert all(torch.equal(inits[0][k], i[k]) for i in inits[1:] for k in inits[0])


def test_train_population_names_fields_that_may_not_differ(blobs):
    with pytest.raises(ValueError, match=r"differ only in seed \(and lr, weight_decay\).*width"):
        list(train_population([cfg(seed=0), cfg(seed=1, lr=0.1, width=8)], blobs))
    with pytest.raises(ValueError, match="differ only in seed.*batch_size"):
        list(train_population([cfg(seed=0), cfg(seed=0, batch_size=16)], blobs))


def test_lr_population_of_an_unstacked_model_trains_each_member_alone(blobs, monkeypatch):
    import landscape_utils.core.population as population

    monkeypatch.setattr(population, "supports_population", lambda c: False)
    configs = [cfg(seed=0, lr=0.02, num_epochs=2), cfg(seed=0, lr=0.05, weight_decay=0.0, num_epochs=2)]
    out = list(train_population(configs, blobs))
    assert [c for c, _ in out] == configs
    for c, r in out:  # train_run's own result, bit for bit
        alone = train_run(c, blobs)
        assert all(torch.equal(r["final_state"][k], v) for k, v in alone["final_state"].items())
