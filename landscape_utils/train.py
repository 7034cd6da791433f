"""Training of one run (one configuration, one seed) with SGD and momentum.

A run is fully described by a frozen :class:`RunConfig`. ``train_population``
takes several configs that differ only in ``seed`` (one grid cell) and trains them
together as one stacked model when the architecture allows it
(:mod:`landscape_utils.population`), else one after another.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .data import DATASETS, Dataset, batches, validate_knobs
from .models import MODELS, build_model, count_parameters
from .utils import resolve_device, seed_everything

SCHEDULES = ("constant", "step", "cosine")
OPTIMIZERS = ("sgd",)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a trained model. Its hash names the run's folder."""

    dataset: str = "mnist1d"      # see data.DATASETS
    data_fraction: float = 1.0    # load-like: seeded subset of the training set, in (0, 1]
    label_noise: float = 0.0      # load-like: probability of replacing a training label
    data_seed: int = 0            # seeds subset and noise; shared by all seeds of a cell
    model: str = "mlp"            # see models.MODELS
    width: int = 32               # load-like: hidden units / channels
    depth: int = 2                # hidden layers of the MLP (ignored by other models)
    batch_norm: bool = False      # insert BatchNorm after each linear/conv layer
    optimizer: str = "sgd"        # SGD with momentum (the paper's optimizer)
    lr: float = 0.05              # temperature-like: learning rate
    momentum: float = 0.9
    weight_decay: float = 5e-4    # temperature-like: L2 coefficient in the optimizer
    batch_size: int = 64          # temperature-like: smaller batch = hotter
    num_epochs: int = 30
    schedule: str = "constant"    # constant | step (one decay at decay_at) | cosine
    decay_at: float = 0.75        # fraction of training at which the step decay happens
    decay_factor: float = 0.1     # lr multiplier after the step decay
    early_stop: bool = False      # paper's rule: stop when |Δ train loss| < 1e-4 for 5 epochs
    seed: int = 0                 # init and data order

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        """Build from a dict, rejecting unknown keys by name."""
        if not isinstance(d, dict):
            raise ValueError(f"a run config must be a mapping of key: value, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown run config key(s): {', '.join(unknown)}; "
                             f"known keys: {', '.join(sorted(known))}")
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        for name in ("data_fraction", "label_noise", "decay_at", "decay_factor"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        validate_knobs(self.data_fraction, self.label_noise)
        if not 0 < self.decay_at <= 1 or self.decay_factor <= 0:
            raise ValueError(f"decay_at must be in (0, 1] and decay_factor > 0, got "
                             f"decay_at={self.decay_at!r}, decay_factor={self.decay_factor!r}")
        for name in ("width", "depth", "batch_size", "num_epochs"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("seed", "data_seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        for name in ("batch_norm", "early_stop"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("lr", "momentum", "weight_decay"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.lr == 0:
            raise ValueError("lr must be > 0")

    def cell(self) -> "RunConfig":
        """The config with ``seed`` zeroed: runs of one grid cell share it."""
        return replace(self, seed=0)


def lr_factor(schedule: str, epoch: int, num_epochs: int, decay_at: float = 0.75,
              decay_factor: float = 0.1) -> float:
    """Multiplier of the base lr during ``epoch`` (0-based)."""
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return decay_factor if epoch >= int(round(decay_at * num_epochs)) else 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / num_epochs))
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` in eval mode over all of ``(x, y)``.

    x: (n, *in_shape); y: (n,). The model's mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, x.shape[0], batch_size):
        logits = model(x[i:i + batch_size])
        yb = y[i:i + batch_size]
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    model.train(was_training)
    n = max(1, x.shape[0])
    return loss_sum / n, correct / n


def init_model(config: RunConfig, data: Dataset, device: str | torch.device = "cpu") -> nn.Module:
    """The run's model at initialization, seeded by ``config.seed``."""
    seed_everything(config.seed)
    model = build_model(config.model, config.width, data.in_shape, data.num_classes,
                        batch_norm=config.batch_norm, depth=config.depth)
    return model.to(resolve_device(device))


def train_run(config: RunConfig, data: Dataset, device: str | torch.device = "cpu",
              progress: bool = False) -> dict[str, Any]:
    """Train one run. Returns a dict with keys

        metrics      final train/test loss and accuracy (eval mode), status, timing, ...
        history      list of per-epoch dicts: epoch, lr, train_loss, train_acc (train mode, running)
        init_state   state_dict at initialization (CPU tensors)
        final_state  state_dict at the end (CPU tensors)

    A NaN or inf loss stops the run; it is returned with ``status = "diverged"``.
    """
    config.validate()
    if config.batch_size > data.num_train:
        raise ValueError(f"batch_size={config.batch_size} is larger than the training set "
                         f"({data.num_train} samples)")
    device = resolve_device(device)
    model = init_model(config, data, device)
    init_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(10_007 * config.seed + 1)  # data order
    history: list[dict[str, Any]] = []
    status, t0 = "ok", time.perf_counter()
    still = 0  # epochs in a row with |Δ train loss| < 1e-4 (early stop)
    epochs = range(config.num_epochs)
    if progress:
        from .utils import progress_bar
        epochs = progress_bar(epochs, desc="epochs")
    for epoch in epochs:
        lr = config.lr * lr_factor(config.schedule, epoch, config.num_epochs,
                                   config.decay_at, config.decay_factor)
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        for xb, yb in batches(data.x_train, data.y_train, config.batch_size, gen):
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * xb.shape[0]
            correct += (logits.detach().argmax(1) == yb).sum()
            seen += xb.shape[0]
        epoch_loss = (loss_sum / seen).item()
        history.append({"epoch": epoch + 1, "lr": lr, "train_loss": epoch_loss,
                        "train_acc": correct.item() / seen})
        if not math.isfinite(epoch_loss):
            status = "diverged"
            break
        if config.early_stop and len(history) > 1:
            still = still + 1 if abs(history[-2]["train_loss"] - epoch_loss) < 1e-4 else 0
            if still >= 5:
                break
    metrics = final_metrics(model, data, status, len(history), time.perf_counter() - t0)
    final_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"metrics": metrics, "history": history, "init_state": init_state, "final_state": final_state}


def final_metrics(model: nn.Module, data: Dataset, status: str, epochs_run: int,
                  train_time: float) -> dict[str, Any]:
    """The ``metrics`` of a finished run: its status, size and timing, and the final train
    and test loss and accuracy in eval mode (NaN for a diverged run; a run whose final
    evaluation is not finite is marked diverged here)."""
    metrics: dict[str, Any] = {"status": status, "epochs_run": epochs_run,
                               "train_time_s": train_time, "num_params": count_parameters(model),
                               "noise_fraction": data.noise_fraction, "num_train": data.num_train}
    if status == "ok":
        tr_loss, tr_acc = evaluate(model, data.x_train, data.y_train)
        te_loss, te_acc = evaluate(model, data.x_test, data.y_test)
        if not all(math.isfinite(v) for v in (tr_loss, te_loss)):
            status = metrics["status"] = "diverged"
        metrics.update(train_loss=tr_loss, train_acc=tr_acc, test_loss=te_loss, test_acc=te_acc)
    if status == "diverged":
        metrics.update(train_loss=float("nan"), train_acc=float("nan"),
                       test_loss=float("nan"), test_acc=float("nan"))
    return metrics


def train_population(configs: list[RunConfig], data: Dataset, device: str | torch.device = "cpu",
                     *, vectorize: bool = True):
    """Train the seeds of one grid cell. ``configs`` must differ only in ``seed``.

    Yields ``(config, result)`` pairs as each member finishes, where ``result`` has the
    format of :func:`train_run` (``metrics``, ``history``, ``init_state``, ``final_state``;
    a member whose loss goes NaN/inf has ``status = "diverged"``).

    With two or more members whose model :func:`population.supports_population` (MLP and
    small CNN, with or without BatchNorm), they are trained together as one stacked model
    by :func:`population.train_population_vectorized`: each member keeps its own init and
    data order and ends where :func:`train_run` would, to float rounding (not bit for bit).
    Members are then yielded as they leave the stack (diverged or early-stopped ones first).
    Otherwise, or with ``vectorize=False``, the members are trained one after another by
    :func:`train_run`, in ``configs`` order.
    """
    configs = list(configs)
    cells = {c.cell() for c in configs}
    if len(cells) != 1:
        raise ValueError("a population's configs must differ only in seed")
    from .population import supports_population, train_population_vectorized

    if vectorize and len(configs) > 1 and supports_population(configs[0]):
        yield from train_population_vectorized(configs, data, device)
        return
    for cfg in configs:
        yield cfg, train_run(cfg, data, device)
