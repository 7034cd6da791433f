"""Training of one run (one configuration, one seed) with SGD and momentum.

A run is fully described by a frozen :class:`RunConfig`. The seeds of one grid cell
are trained together by :func:`landscape_utils.core.population.train_population`, which
stacks them when the architecture allows it and otherwise calls :func:`train_run`
once per seed (this module never imports the population module).

Training precision (``RunConfig.precision``) applies to the training steps only:
``fp32`` leaves torch's float32 settings as they are, ``tf32`` lets matmuls and
convolutions use TensorFloat-32 on CUDA, ``bf16`` runs the forward pass and loss
under bfloat16 autocast on CUDA. Parameters, optimizer state and checkpoints stay
float32, and the final evaluation and every later measurement run outside these
scopes, in float32.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .data import DATASETS, Dataset, batches, data_order_generator, load_dataset, validate_knobs
from .models import MODELS, build_model, count_parameters, evaluate
from .utils import cuda_tf32, progress_bar, resolve_device, seed_everything

SCHEDULES = ("constant", "step", "cosine")
OPTIMIZERS = ("sgd",)
PRECISIONS = ("fp32", "tf32", "bf16")

# Fields added after runs were first stored, with their default: a config holding the
# default is hashed without the field, so the ids of runs stored before it existed stay.
_LATE_FIELDS = {"precision": "fp32"}

# The version of the training algorithm. Bump it when a change of this module or of
# ``population`` changes what a run ends with: it enters every run id (left out while 1, so
# runs stored before versions existed keep their ids), so every run, and every measurement
# keyed by run ids, is computed again. ``store.Store.run_provenance`` records it per run.
TRAINING_VERSION = 1

# The paper's early stop (``RunConfig.early_stop``): a run ends once its train loss has moved
# less than EARLY_STOP_TOL in each of EARLY_STOP_EPOCHS epochs in a row.
EARLY_STOP_TOL = 1e-4
EARLY_STOP_EPOCHS = 5


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
    precision: str = "fp32"       # training steps: fp32 | tf32 | bf16 (the last two CUDA only)

    def to_dict(self) -> dict[str, Any]:
        """Every field, by name (what ``config.json`` holds)."""
        return asdict(self)

    def load_data(self, data_root: str = "data", download: bool = False,
                  device: str | torch.device = "cpu") -> Dataset:
        """The run's dataset (dataset, data_fraction, label_noise, data_seed), on ``device``."""
        return load_dataset(self.dataset, self.data_fraction, self.label_noise, self.data_seed,
                            data_root=data_root, download=download, device=device)

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
        cfg.validate(device=None)
        return cfg

    def validate(self, device: str | torch.device | None = "auto") -> None:
        """Raise ``ValueError`` naming the first bad field.

        ``device`` is where the run would train (``"auto"``: CUDA when present, else the
        CPU): ``precision`` other than ``fp32`` needs CUDA. ``None`` skips that check
        (reading stored configs on another machine).
        """
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
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if device is not None:
            check_precision(self.precision, device)

    def cell(self) -> "RunConfig":
        """The config with ``seed`` zeroed: runs of one grid cell share it."""
        return replace(self, seed=0)


def identity_dict(config: Mapping[str, Any], version: int | None = None) -> dict[str, Any]:
    """The part of a config dict that names its run (what ``store.run_id`` hashes): every
    field, except a field added later that holds its default, so old run ids stay; and the
    training algorithm's ``version`` (default :data:`TRAINING_VERSION`) unless it is 1."""
    out = {k: v for k, v in config.items() if not (k in _LATE_FIELDS and v == _LATE_FIELDS[k])}
    version = TRAINING_VERSION if version is None else version
    if version != 1:
        out["training_version"] = version
    return out


def check_precision(precision: str, device: str | torch.device) -> None:
    """Raise ``ValueError`` naming the key when ``precision`` cannot train on ``device``.

    ``fp32`` runs anywhere; ``tf32`` and ``bf16`` need a CUDA device, and ``bf16`` one
    that supports bfloat16.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return
    dev = resolve_device(device)
    if dev.type != "cuda":
        raise ValueError(f"precision: {precision!r} needs a CUDA device, but training would run on "
                         f"{dev.type}; use precision: fp32 there")
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision: 'bf16' is not supported by this GPU "
                         f"({torch.cuda.get_device_name(dev)}); use tf32 or fp32")


def step_precision(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Wraps a whole training step (forward, loss, backward, optimizer step): TF32 for
    ``tf32``; nothing otherwise. Everything outside the block is untouched."""
    return cuda_tf32(True) if precision == "tf32" else contextlib.nullcontext()


def forward_precision(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Wraps the forward pass and loss of a training step: bfloat16 autocast for
    ``bf16`` (on ``device``'s type), nothing otherwise. Backward runs outside it."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sgd_steps(num_epochs, num_train, batch_size):
    """SGD steps of ``num_epochs`` epochs over ``num_train`` examples in minibatches of
    ``batch_size``: epochs × ⌊n / batch⌋, since :func:`train_run`, the populations and the
    curve fits all drop the last partial minibatch. Ints, or arrays / Series elementwise."""
    return num_epochs * (num_train // batch_size)


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
    ``config.precision`` applies inside each training step only (see the module doc).
    """
    device = resolve_device(device)
    config.validate(device)
    if config.batch_size > data.num_train:
        raise ValueError(f"batch_size={config.batch_size} is larger than the training set "
                         f"({data.num_train} samples)")
    model = init_model(config, data, device)
    init_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    gen = data_order_generator(config.seed)
    history: list[dict[str, Any]] = []
    status, t0 = "ok", time.perf_counter()
    still = 0  # epochs in a row with |Δ train loss| < EARLY_STOP_TOL
    epochs = range(config.num_epochs)
    if progress:
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
            with step_precision(config.precision, device):
                with forward_precision(config.precision, device):
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
            still = quiet_epochs(history, still)
            if still >= EARLY_STOP_EPOCHS:
                break
    metrics = final_metrics(model, data, status, len(history), time.perf_counter() - t0)
    final_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"metrics": metrics, "history": history, "init_state": init_state, "final_state": final_state}


def quiet_epochs(history: list[dict[str, Any]], still: int) -> int:
    """The count of epochs in a row whose train loss moved less than EARLY_STOP_TOL, after
    the last epoch of ``history`` (two epochs or more); ``still``: the count before it."""
    return still + 1 if abs(history[-2]["train_loss"] - history[-1]["train_loss"]) < EARLY_STOP_TOL else 0


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
