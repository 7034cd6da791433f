"""Training precision (``RunConfig.precision``): validation, run ids, and that it stays
inside the training steps, so every measurement on the trained model runs in float32."""
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

import landscape_utils.core.train as train
from landscape_utils.core.models import build_model, evaluate
from landscape_utils.core.population import train_population
from landscape_utils.core.train import (RunConfig, check_precision, forward_precision, step_precision, train_run)
from landscape_utils.metrics.hessian import hessian_vector_product
from landscape_utils.runs.runner import check_configs
from landscape_utils.runs.store import Store, run_id, stable_hash

pytestmark = pytest.mark.usefixtures("one_thread")

NO_CUDA = not torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device (tf32/bf16 train on CUDA only)")
cpu_only = pytest.mark.skipif(not NO_CUDA, reason="checks the refusal on a machine without CUDA")


def cfg(**kw):
    base = dict(dataset="mnist1d", width=16, batch_size=32, num_epochs=2, lr=0.05)
    return RunConfig(**{**base, **kw})


# ---------------------------------------------------------------- validation


def test_unknown_precision_is_named():
    with pytest.raises(ValueError, match="unknown precision 'fp16'.*fp32, tf32, bf16"):
        cfg(precision="fp16").validate(device=None)
    with pytest.raises(ValueError, match="unknown precision"):
        RunConfig.from_dict({"precision": "half"})


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_cpu_accepts_only_fp32(precision, blobs):
    c = cfg(precision=precision)
    with pytest.raises(ValueError, match=f"precision: '{precision}' needs a CUDA device.*cpu"):
        c.validate("cpu")
    with pytest.raises(ValueError, match="precision"):
        train_run(c, blobs, "cpu")
    with pytest.raises(ValueError, match="precision"):
        list(train_population([c, cfg(precision=precision, seed=1)], blobs, "cpu"))
    cfg(precision="fp32").validate("cpu")
    # a stored config is read anywhere (analysis on another machine): no device check
    assert RunConfig.from_dict(c.to_dict()) == c


@cpu_only
def test_default_validation_and_the_preflight_refuse_bf16_without_cuda():
    with pytest.raises(ValueError, match="precision: 'bf16' needs a CUDA device"):
        cfg(precision="bf16").validate()  # device "auto" is the CPU here
    with pytest.raises(ValueError, match="precision"):
        check_configs([cfg(precision="bf16")])


# ---------------------------------------------------------------- run ids


def test_fp32_keeps_the_run_ids_of_runs_stored_before_the_option():
    c = RunConfig()
    before = {k: v for k, v in asdict(c).items() if k != "precision"}  # the old RunConfig's dict
    assert run_id(c) == stable_hash(before)
    # the ids the code before `precision` existed gave these configs
    assert run_id(c) == "328c706b74733d42"
    assert run_id(cfg()) == "d5d64d8ca132b0d5"
    assert run_id(c.to_dict()) == run_id(before) == run_id(c)


def test_other_precisions_hash_differently():
    ids = {p: run_id(cfg(precision=p)) for p in ("fp32", "tf32", "bf16")}
    assert len(set(ids.values())) == 3
    assert run_id(cfg(precision="bf16").to_dict()) == ids["bf16"]
    assert cfg(precision="bf16").cell() != cfg(precision="fp32").cell()


def test_store_round_trips_a_bf16_config(tmp_path):
    c = cfg(precision="bf16")
    result = {"metrics": {"status": "ok"}, "history": [], "init_state": {}, "final_state": {}}
    Store(tmp_path).save_run(c, result)
    store = Store(tmp_path)
    assert store.config(run_id(c)) == c and store.is_done(c)


# ---------------------------------------------------------------- the scopes


def test_forward_precision_is_autocast_inside_and_nothing_outside():
    cpu = torch.device("cpu")
    a = torch.randn(4, 4)
    with forward_precision("bf16", cpu):
        assert (a @ a).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu") and (a @ a).dtype == torch.float32
    with forward_precision("fp32", cpu), forward_precision("tf32", cpu):
        assert (a @ a).dtype == torch.float32


def _tf32_state():
    m, c = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    return (m.fp32_precision, c.fp32_precision)


def test_tf32_scope_restores_the_process_settings_even_on_error():
    before = _tf32_state()
    with step_precision("tf32", torch.device("cpu")):
        assert _tf32_state() == ("tf32", "tf32")
    assert _tf32_state() == before
    with pytest.raises(RuntimeError, match="boom"):
        with step_precision("tf32", torch.device("cpu")):
            raise RuntimeError("boom")
    assert _tf32_state() == before
    with step_precision("bf16", torch.device("cpu")), step_precision("fp32", torch.device("cpu")):
        assert _tf32_state() == before


class DtypeLog:
    """Records the output dtype of every Linear layer of a model while attached."""

    def __init__(self, model):
        self.seen: set[torch.dtype] = set()
        self.handles = [m.register_forward_hook(lambda m, i, o: self.seen.add(o.dtype))
                        for m in model.modules() if isinstance(m, torch.nn.Linear)]

    def close(self):
        for h in self.handles:
            h.remove()


def _measure(model, data):
    """A metric of each kind on ``model``: an evaluation and a Hessian-vector product,
    with the dtypes its layers computed in."""
    log = DtypeLog(model)
    loss, acc = evaluate(model, data.x_train, data.y_train)
    n = sum(p.numel() for p in model.parameters())
    v = torch.ones(n, device=data.x_train.device) / n ** 0.5
    hv = hessian_vector_product(model, F.cross_entropy, (data.x_train, data.y_train), v,
                                device=data.x_train.device)
    log.close()
    return loss, acc, hv, log.seen


def _cpu_bf16_allowed(monkeypatch):
    """Let ``bf16`` train on the CPU for this test: the device refusal is the only thing
    replaced; the autocast itself really runs (CPU autocast supports bfloat16)."""
    real = train.check_precision
    monkeypatch.setattr(train, "check_precision",
                        lambda p, d: None if p == "bf16" else real(p, d))


def test_a_model_trained_with_bf16_is_measured_in_float32(blobs, monkeypatch):
    _cpu_bf16_allowed(monkeypatch)
    c = cfg(precision="bf16", num_epochs=1)
    model = build_model("mlp", 16, blobs.in_shape, blobs.num_classes)
    trained = log_training_dtypes(monkeypatch)
    out = train_run(c, blobs, "cpu")
    assert torch.bfloat16 in trained.seen  # the training steps did run in bfloat16
    assert not torch.is_autocast_enabled("cpu")
    assert all(v.dtype in (torch.float32, torch.int64) for v in out["final_state"].values())
    assert out["metrics"]["status"] == "ok"
    model.load_state_dict(out["final_state"])
    loss, acc, hv, seen = _measure(model, blobs)
    assert seen == {torch.float32} and hv.dtype == torch.float32
    assert loss == pytest.approx(out["metrics"]["train_loss"], rel=1e-6)
    assert acc == out["metrics"]["train_acc"]
    # the same measurement on a copy that never met a training step agrees exactly
    fresh = build_model("mlp", 16, blobs.in_shape, blobs.num_classes)
    fresh.load_state_dict(out["final_state"])
    loss2, _, hv2, _ = _measure(fresh, blobs)
    assert loss2 == loss and torch.equal(hv2, hv)


def log_training_dtypes(monkeypatch):
    """Attach a ``DtypeLog`` to the model that ``train_run`` builds."""
    log = DtypeLog.__new__(DtypeLog)
    log.seen, log.handles = set(), []
    real = train.init_model

    def init(config, data, device="cpu"):
        m = real(config, data, device)
        log.handles += [mod.register_forward_hook(lambda mod, i, o: log.seen.add(o.dtype))
                        for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
        return m
    monkeypatch.setattr(train, "init_model", init)
    return log


def test_the_population_trainer_keeps_bf16_inside_its_steps(blobs, monkeypatch):
    """The stacked trainer is a generator: between its yields (where the caller stores and
    measures) no autocast or TF32 setting may be active."""
    _cpu_bf16_allowed(monkeypatch)
    configs = [cfg(precision="bf16", num_epochs=2, seed=s) for s in range(2)]
    before = _tf32_state()
    for c, result in train_population(configs, blobs, "cpu"):
        assert not torch.is_autocast_enabled("cpu") and _tf32_state() == before
        assert result["metrics"]["status"] == "ok"
        assert all(v.dtype in (torch.float32, torch.int64) for v in result["final_state"].values())
    # bf16 really changed the arithmetic: the member is not the fp32 run
    fp32 = train_run(cfg(num_epochs=2, seed=c.seed), blobs)
    assert not torch.equal(result["final_state"]["net.1.weight"], fp32["final_state"]["net.1.weight"])


@needs_cuda
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_cuda_training_precision_and_float32_metrics(precision, blobs):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    dev = torch.device("cuda")
    data = type(blobs)(*(t.to(dev) if isinstance(t, torch.Tensor) else t for t in (
        blobs.x_train, blobs.y_train, blobs.x_test, blobs.y_test, blobs.y_train_clean)),
        blobs.num_classes, blobs.name, blobs.noise_fraction)
    before = _tf32_state()
    out = train_run(cfg(precision=precision, num_epochs=2), data, dev)
    assert out["metrics"]["status"] == "ok" and _tf32_state() == before
    assert not torch.is_autocast_enabled("cuda")
    model = build_model("mlp", 16, data.in_shape, data.num_classes).to(dev)
    model.load_state_dict(out["final_state"])
    _, _, hv, seen = _measure(model, data)
    assert seen == {torch.float32} and hv.dtype == torch.float32

