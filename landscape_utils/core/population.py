"""Training a population: S copies of one network trained at once.

:func:`train_population` is the grid runner's entry point for one population: the
seeds of a grid cell, and, when the grid's temperature axis is the lr or the weight
decay, the seeds of several cells that differ only in those (see
``runner.populations``). With two or more members whose config
:func:`supports_population` (MLP, small CNN, ResNet18, each with or without
BatchNorm), it trains them as one stacked model (:func:`train_population_vectorized`);
otherwise it calls ``train.train_run`` once per member.

The S members of a population (configs that differ only in ``seed``, ``lr`` and
``weight_decay``) are held as one set of *stacked* tensors: every parameter of shape
``shape`` becomes one tensor of shape (S, *shape). Linear layers run as one batched
matmul (``torch.baddbmm``), convolutions as one grouped convolution (``groups=S``),
BatchNorm as one ``F.batch_norm`` over S·C channels, a residual block as its grouped
convolutions plus an elementwise sum. The loss is the sum of the members' mean losses, so one
ordinary ``backward`` gives every member exactly its own gradient, and SGD with
momentum and weight decay, acting elementwise, updates each member exactly as its own
optimizer would. Measured speed-ups against sequential training are in
``benchmarks/RESULTS.md`` (``python -m benchmarks --only population``); ``vmap`` over
``stack_module_state`` was not faster in our measurements.

What each member gets, identical to :func:`landscape_utils.core.train.train_run` for its
seed:

* initialization: ``train.init_model(config)`` (seeded by ``config.seed``), then stacked;
* data order: its own ``data.data_order_generator(seed)``, one ``randperm`` per epoch,
  minibatches of ``batch_size`` with the last partial batch dropped; the S minibatches
  are gathered into one (S, B, *in_shape) tensor;
* SGD(lr, momentum, weight_decay) with its own lr and weight decay (one value per
  member in the fused step) and the per-epoch lr of ``train.lr_factor`` applied to its
  own lr;
* BatchNorm: batch statistics per member and per channel, running statistics updated
  per member with the layer's momentum, exactly as ``nn.BatchNorm`` in train mode, so
  the unstacked checkpoint evaluates like the model trained alone (no recomputation);
* the training precision of its config, applied inside each step as ``train_run`` does;
* its own per-epoch history, divergence (a NaN/inf epoch loss) and early stop. A member
  that diverges or stops leaves the stack at the end of that epoch; the others go on
  untouched (members share no arithmetic, so a NaN cannot spread).

Results agree with ``train_run`` to float rounding (batched and grouped kernels sum in
a different order), not bit for bit. ``metrics["train_time_s"]`` is the member's share
of the population's wall time: the time until it left the stack divided by S.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import fields
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data import Dataset, data_order_generator
from .models import MLP, ResNet18, SmallCNN, build_model
from .train import (EARLY_STOP_EPOCHS, RunConfig, final_metrics, forward_precision, init_model, lr_factor,
                    quiet_epochs, step_precision, train_run)
from .utils import resolve_device

__all__ = ["supports_population", "train_population", "train_population_vectorized",
           "VARYING_FIELDS", "varying_fields", "memory_estimate", "step_activations"]

# Fields besides ``seed`` that members may hold different values of, on request
# (``vary=``): both enter the update elementwise, so a per-member vector costs nothing.
VARYING_FIELDS = ("lr", "weight_decay")

_SUPPORTED_MODELS = ("mlp", "cnn", "resnet18")


def supports_population(config: RunConfig) -> bool:
    """True when :func:`train_population_vectorized` can train ``config``'s cell.

    MLPs, the small CNN (1D or 2D inputs) and ResNet18, with or without BatchNorm, with
    SGD. Anything else returns False, and :func:`train_population` falls back to one
    ``train_run`` per seed.
    """
    return config.model in _SUPPORTED_MODELS and config.optimizer == "sgd"


def memory_estimate(config: RunConfig, in_shape: tuple[int, ...], num_classes: int) -> int:
    """Rough bytes one member of a stacked population of ``config`` holds while training.

    Float32 parameters five times (the stacked weights, their gradients, the momentum,
    the member's own module and its initial state) plus twice its activations of one
    step (:func:`step_activations`: kept for backward, and their gradients). Measured
    against the peak resident memory of S = 12 SmallCNN members: 0.7-1.4x of it.
    Deterministic: it depends on the config only.
    """
    num_params, per_sample = _model_sizes(config.model, config.width, config.depth,
                                          config.batch_norm, tuple(in_shape), int(num_classes))
    return 4 * (5 * num_params + 2 * config.batch_size * per_sample)


def step_activations(config: RunConfig, in_shape: tuple[int, ...], num_classes: int) -> int:
    """Bytes of the float32 outputs of every layer of one member for one minibatch of
    ``config.batch_size`` inputs of shape ``in_shape`` (what a training step writes and
    reads back once per layer)."""
    _, per_sample = _model_sizes(config.model, config.width, config.depth, config.batch_norm,
                                 tuple(in_shape), int(num_classes))
    return 4 * config.batch_size * per_sample


@functools.lru_cache(maxsize=256)
def _model_sizes(model: str, width: int, depth: int, batch_norm: bool,
                 in_shape: tuple[int, ...], num_classes: int) -> tuple[int, int]:
    """(parameters, layer-output elements per input sample) of a model, from one forward
    pass of two inputs on the ``meta`` device (no memory, no arithmetic; the first call in
    a process takes about two seconds to set that up)."""
    outputs = [0]

    def count(_mod, _inp, out):
        outputs[0] += out.numel()

    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        net = build_model(model, width, in_shape, num_classes, batch_norm=batch_norm, depth=depth)
        for mod in net.modules():
            if not list(mod.children()):
                mod.register_forward_hook(count)
        net.train()
        net(torch.empty(2, *in_shape))  # two: BatchNorm needs more than one value in training
    return sum(p.numel() for p in net.parameters()), outputs[0] // 2


def varying_fields(configs: Sequence[RunConfig]) -> tuple[str, ...]:
    """The fields of :data:`VARYING_FIELDS` whose values differ among ``configs``."""
    return tuple(f for f in VARYING_FIELDS if len({getattr(c, f) for c in configs}) > 1)


def _optimizer_free(config: RunConfig) -> tuple:
    """The config without ``seed``, ``lr`` and ``weight_decay``: equal for the members of
    one population."""
    free = ("seed", *VARYING_FIELDS)
    return tuple((f.name, getattr(config, f.name)) for f in fields(RunConfig) if f.name not in free)


def train_population(configs: Sequence[RunConfig], data: Dataset,
                     device: str | torch.device = "cpu", *,
                     vectorize: bool = True) -> Iterator[tuple[RunConfig, dict[str, Any]]]:
    """Train one population: ``configs`` must differ only in ``seed``, ``lr`` and
    ``weight_decay`` (:data:`VARYING_FIELDS`); each member trains with its own.

    Yields ``(config, result)`` pairs as each member finishes, where ``result`` has the
    format of :func:`train.train_run` (``metrics``, ``history``, ``init_state``,
    ``final_state``; a member whose loss goes NaN/inf has ``status = "diverged"``).

    With two or more members whose model :func:`supports_population`, they are trained
    together as one stacked model by :func:`train_population_vectorized`: each member
    keeps its own init and data order and ends where ``train_run`` would, to float
    rounding (not bit for bit). Members are then yielded as they leave the stack
    (diverged or early-stopped ones first). Otherwise, or with ``vectorize=False``, the
    members are trained one after another by ``train_run``, in ``configs`` order.

    Args:
        configs: the population's runs, S >= 1.
        data: their dataset (``RunConfig.load_data``), on ``device``.
        device: where to train (``"auto"``: CUDA when present); resolved once here.
    """
    configs = list(configs)
    if len({_optimizer_free(c) for c in configs}) > 1:
        _check_population(configs, VARYING_FIELDS)  # raises, naming the fields that differ
    device = resolve_device(device)
    if vectorize and len(configs) > 1 and supports_population(configs[0]):
        yield from train_population_vectorized(configs, data, device, vary=varying_fields(configs))
        return
    for cfg in configs:
        yield cfg, train_run(cfg, data, device)


def _check_population(configs: Sequence[RunConfig], vary: Iterable[str]) -> None:
    vary = tuple(vary)
    bad = sorted(set(vary) - set(VARYING_FIELDS))
    if bad:
        raise ValueError(f"vary may only name {', '.join(VARYING_FIELDS)}; got {', '.join(bad)}")
    if not configs:
        raise ValueError("a population needs at least one config")
    free = {"seed", *vary}
    vary = tuple(f for f in VARYING_FIELDS if f in vary)
    c0 = configs[0]
    for c in configs:
        c.validate(device=None)
        diff = [f.name for f in fields(RunConfig)
                if f.name not in free and getattr(c, f.name) != getattr(c0, f.name)]
        if diff:
            raise ValueError("a population's configs must differ only in seed"
                             f"{' (and ' + ', '.join(vary) + ')' if vary else ''}; "
                             f"they also differ in {', '.join(diff)}")
    if not supports_population(c0):
        raise ValueError(f"model {c0.model!r} is not supported by the vectorized trainer "
                         f"(supported: {', '.join(_SUPPORTED_MODELS)}); use train.train_population")


# --------------------------------------------------------------------- the stack


class _Stack:
    """S networks of one architecture as stacked tensors, with a fused SGD step.

    All parameters live in one flat storage ``flat`` (the (S, *shape) blocks of the
    parameters, one after another, in ``named_parameters`` order); the autograd leaves
    are views of it, and their ``.grad`` are views of one flat ``grad``. So zeroing the
    gradients and the whole SGD update are a handful of elementwise ops on three flat
    tensors, whatever the number of layers. Buffers (BatchNorm running statistics) are
    stacked separately, (S, C); ``num_batches_tracked`` is kept as a step count.
    """

    def __init__(self, members: Sequence[nn.Module], device: torch.device):
        template = members[0]
        self.template = template
        self.S = len(members)
        self.device = device
        self.names = [n for n, _ in template.named_parameters()]
        self.shapes = [tuple(p.shape) for _, p in template.named_parameters()]
        self.numels = [p.numel() for _, p in template.named_parameters()]
        self.buffer_names = [n for n, _ in template.named_buffers()
                             if not n.endswith("num_batches_tracked")]
        self.nbt_names = [n for n, _ in template.named_buffers() if n.endswith("num_batches_tracked")]
        blocks = []
        for name in self.names:
            blocks.append(torch.stack([dict(m.named_parameters())[name].detach() for m in members]))
        self._install(blocks, None,
                      {b: torch.stack([dict(m.named_buffers())[b].detach() for m in members])
                       for b in self.buffer_names})
        self.nbt0 = [{n: int(dict(m.named_buffers())[n]) for n in self.nbt_names} for m in members]
        self.steps = [0] * self.S  # optimizer steps taken by each slot's member

    # -- storage
    def _install(self, blocks: list[torch.Tensor], mom_blocks: list[torch.Tensor] | None,
                 buffers: dict[str, torch.Tensor]) -> None:
        """(Re)build flat storage from per-parameter blocks (S, *shape)."""
        S = blocks[0].shape[0]
        self.S = S
        dev = self.device
        self.flat = torch.cat([b.reshape(-1) for b in blocks]).to(dev).contiguous()
        self.grad = torch.zeros_like(self.flat)
        self.buf = (torch.cat([b.reshape(-1) for b in mom_blocks]).to(dev) if mom_blocks is not None
                    else torch.zeros_like(self.flat))
        self.params: dict[str, torch.Tensor] = {}
        off = 0
        for name, shape, n in zip(self.names, self.shapes, self.numels):
            view = self.flat[off: off + S * n].view(S, *shape)
            view.requires_grad_(True)
            view.grad = self.grad[off: off + S * n].view(S, *shape)
            self.params[name] = view
            off += S * n
        self.buffers = {k: v.to(dev).contiguous() for k, v in buffers.items()}
        self._ops = self._compile()

    def _blocks(self, flat: torch.Tensor) -> list[torch.Tensor]:
        out, off = [], 0
        for shape, n in zip(self.shapes, self.numels):
            out.append(flat[off: off + self.S * n].view(self.S, *shape))
            off += self.S * n
        return out

    def keep(self, slots: Sequence[int]) -> None:
        """Drop every slot not in ``slots`` (members that left), keeping optimizer state."""
        idx = torch.as_tensor(list(slots), dtype=torch.long, device=self.device)
        with torch.no_grad():
            blocks = [b.index_select(0, idx) for b in self._blocks(self.flat)]
            moms = [b.index_select(0, idx) for b in self._blocks(self.buf)]
            bufs = {k: v.index_select(0, idx) for k, v in self.buffers.items()}
        self.nbt0 = [self.nbt0[i] for i in slots]
        self.steps = [self.steps[i] for i in slots]
        lrs = [self._lr_vals[i] for i in slots]
        wds = [self._wd_vals[i] for i in slots]
        self._install(blocks, moms, bufs)
        self.set_hyper(lrs, wds, self.momentum)

    def state_dict(self, slot: int) -> dict[str, torch.Tensor]:
        """Slot ``slot``'s member as an ordinary state_dict (CPU clones, template's keys)."""
        out = {}
        for key, ref in self.template.state_dict().items():
            if key in self.params:
                t = self.params[key][slot]
            elif key in self.buffers:
                t = self.buffers[key][slot]
            elif key in self.nbt_names:
                t = torch.tensor(self.nbt0[slot][key] + self.steps[slot], dtype=ref.dtype)
            else:  # pragma: no cover - a buffer kind we do not stack
                raise KeyError(key)
            out[key] = t.detach().cpu().clone()
        return out

    # -- optimizer
    def set_hyper(self, lrs: Sequence[float], wds: Sequence[float], momentum: float) -> None:
        """Per-slot lr and weight decay (scalars when all equal) and the momentum."""
        self._lr_vals, self._wd_vals = list(lrs), list(wds)
        self.momentum = float(momentum)
        self._lr = self._per_slot(self._lr_vals)
        self._wd = self._per_slot(self._wd_vals)

    def _per_slot(self, vals: list[float]) -> float | torch.Tensor:
        if all(v == vals[0] for v in vals):
            return float(vals[0])
        v = torch.as_tensor(vals, dtype=self.flat.dtype, device=self.device)
        # expand to the flat layout: each parameter block is (S, numel), slot-major
        return torch.cat([v[:, None].expand(self.S, n).reshape(-1) for n in self.numels])

    def zero_grad(self) -> None:
        self.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """SGD exactly as ``torch.optim.SGD`` (dampening 0, no Nesterov), on all slots.

        d = g + wd·p;  buf = momentum·buf + d (buf starts at 0, so step 1 gives buf = d);
        p = p - lr·buf.
        """
        g, p = self.grad, self.flat
        wd, lr = self._wd, self._lr
        if isinstance(wd, torch.Tensor):
            g.addcmul_(wd, p)
        elif wd != 0:
            g.add_(p, alpha=wd)
        if self.momentum != 0:
            d = self.buf.mul_(self.momentum).add_(g)
        else:
            d = g
        if isinstance(lr, torch.Tensor):
            p.addcmul_(lr, d, value=-1.0)
        else:
            p.add_(d, alpha=-lr)
        for i in range(self.S):
            self.steps[i] += 1

    # -- forward
    def _compile(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """The forward pass as a list of functions on stacked activations."""
        t = self.template
        if isinstance(t, MLP):
            return self._compile_mlp(t)
        if isinstance(t, SmallCNN):
            return self._compile_cnn(t)
        if isinstance(t, ResNet18):
            return self._compile_resnet(t)
        raise TypeError(f"no stacked forward for {type(t).__name__}")  # pragma: no cover

    def _linear(self, prefix: str) -> Callable:
        W, b = self.params[prefix + ".weight"], self.params[prefix + ".bias"]  # (S, out, in), (S, out)
        return lambda h: torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))  # (S, B, in) -> (S, B, out)

    def _bn_flat(self, prefix: str, mod: nn.Module) -> Callable:
        """BatchNorm over S·C channels of a (B, S·C, ...) activation, train mode."""
        if mod.momentum is None or not mod.track_running_stats or not mod.affine:
            raise ValueError("stacked BatchNorm needs affine=True, track_running_stats=True "
                             "and a float momentum")
        w, b = self.params[prefix + ".weight"], self.params[prefix + ".bias"]  # (S, C)
        rm = self.buffers[prefix + ".running_mean"].view(-1)  # views: updated in place
        rv = self.buffers[prefix + ".running_var"].view(-1)
        mom, eps = float(mod.momentum), float(mod.eps)
        return lambda z: F.batch_norm(z, rm, rv, w.reshape(-1), b.reshape(-1), True, mom, eps)

    def _compile_mlp(self, t: MLP) -> list[Callable]:
        S = self.S
        ops: list[Callable] = [lambda x: x.reshape(S, x.shape[1], -1)]
        for name, mod in t.net.named_children():
            prefix = f"net.{name}"
            if isinstance(mod, nn.Linear):
                ops.append(self._linear(prefix))
            elif isinstance(mod, nn.BatchNorm1d):
                bn = self._bn_flat(prefix, mod)

                def stacked_bn(h, bn=bn):  # (S, B, C) -> (B, S*C) -> BN -> (S, B, C)
                    s, B, C = h.shape
                    return bn(h.transpose(0, 1).reshape(B, s * C)).view(B, s, C).transpose(0, 1)
                ops.append(stacked_bn)
            elif isinstance(mod, nn.ReLU):
                ops.append(torch.relu)
            elif isinstance(mod, (nn.Flatten, nn.Identity)):
                continue
            else:  # pragma: no cover - models.MLP holds nothing else
                raise TypeError(f"no stacked version of {type(mod).__name__}")
        return ops

    def _compile_cnn(self, t: SmallCNN) -> list[Callable]:
        S = self.S
        one_d_input = len(t.in_shape) == 1

        def to_groups(x):  # (S, B, C, *spatial) -> (B, S*C, *spatial): member s = group s
            if one_d_input:
                x = x.unsqueeze(2)
            s, B = x.shape[:2]
            return x.transpose(0, 1).reshape(B, s * x.shape[2], *x.shape[3:])
        ops: list[Callable] = [to_groups]
        for name, mod in t.features.named_children():
            prefix = f"features.{name}"
            if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
                W, b = self.params[prefix + ".weight"], self.params[prefix + ".bias"]  # (S, C_out, C_in, *k)
                conv = F.conv2d if isinstance(mod, nn.Conv2d) else F.conv1d
                # one grouped convolution: weight (S*C_out, C_in, *k), group s = member s
                ops.append(lambda h, conv=conv, W=W, b=b, m=mod: conv(
                    h, W.flatten(0, 1), b.reshape(-1), m.stride, m.padding, m.dilation, S))
            elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                ops.append(self._bn_flat(prefix, mod))
            elif isinstance(mod, (nn.ReLU, nn.MaxPool1d, nn.MaxPool2d)):
                ops.append(mod)  # parameter-free and channelwise
            elif isinstance(mod, nn.Identity):
                continue
            else:  # pragma: no cover - models.SmallCNN holds nothing else
                raise TypeError(f"no stacked version of {type(mod).__name__}")

        def pool(h):  # (B, S*C, *spatial) -> (S, B, C)
            B = h.shape[0]
            return h.flatten(2).mean(-1).view(B, S, -1).transpose(0, 1)
        ops.append(pool)
        ops.append(self._linear("head"))
        return ops

    def _conv2d(self, prefix: str, mod: nn.Conv2d) -> Callable:
        """A member-wise Conv2d as one grouped convolution on (B, S·C_in, H, W) -> (B, S·C_out, H', W')."""
        if mod.groups != 1:  # pragma: no cover - the models here use dense convolutions
            raise TypeError("stacked convolutions need groups=1 in the member")
        W = self.params[prefix + ".weight"]  # (S, C_out, C_in, k, k)
        b = self.params.get(prefix + ".bias")  # (S, C_out) or None (bias-free before BatchNorm)
        S = self.S
        return lambda h: F.conv2d(h, W.flatten(0, 1), None if b is None else b.reshape(-1),
                                  mod.stride, mod.padding, mod.dilation, S)

    def _norm2d(self, prefix: str, mod: nn.Module) -> Callable:
        """A member's BatchNorm2d (per member and channel) or its Identity, on (B, S·C, H, W)."""
        if isinstance(mod, nn.Identity):
            return lambda h: h
        if not isinstance(mod, nn.BatchNorm2d):  # pragma: no cover - models.ResNet18 holds nothing else
            raise TypeError(f"no stacked version of {type(mod).__name__}")
        return self._bn_flat(prefix, mod)

    def _compile_resnet(self, t: ResNet18) -> list[Callable]:
        """ResNet18 on (S, B, C, H, W) inputs: channels of member s form group s throughout."""
        S = self.S

        def to_groups(x):  # (S, B, C, H, W) -> (B, S*C, H, W), channels-last in memory
            s, B = x.shape[:2]
            h = x.transpose(0, 1).reshape(B, s * x.shape[2], *x.shape[3:])
            # grouped convolutions with few channels per group run several times faster
            # on the CPU in this layout (oneDNN); later ops keep the layout
            return h.contiguous(memory_format=torch.channels_last)

        def block(prefix: str, blk) -> Callable:
            conv1, bn1 = self._conv2d(prefix + ".conv1", blk.conv1), self._norm2d(prefix + ".bn1", blk.bn1)
            conv2, bn2 = self._conv2d(prefix + ".conv2", blk.conv2), self._norm2d(prefix + ".bn2", blk.bn2)
            if len(blk.shortcut) == 0:
                shortcut = lambda h: h  # noqa: E731 - identity: same channels and stride
            else:
                sc_conv = self._conv2d(prefix + ".shortcut.0", blk.shortcut[0])
                sc_norm = self._norm2d(prefix + ".shortcut.1", blk.shortcut[1])
                shortcut = lambda h: sc_norm(sc_conv(h))  # noqa: E731

            def forward(h):
                out = torch.relu(bn1(conv1(h)))
                return torch.relu(bn2(conv2(out)) + shortcut(h))
            return forward

        stem_conv, stem_norm = self._conv2d("conv1", t.conv1), self._norm2d("bn1", t.bn1)
        ops: list[Callable] = [to_groups, lambda h: torch.relu(stem_norm(stem_conv(h)))]
        for i, stage in enumerate(t.layers):
            for j, blk in enumerate(stage):
                ops.append(block(f"layers.{i}.{j}", blk))

        def pool(h):  # (B, S*C, H, W) -> (S, B, C)
            B = h.shape[0]
            return h.mean(dim=(2, 3)).view(B, S, -1).transpose(0, 1)
        ops.append(pool)
        ops.append(self._linear("linear"))
        return ops

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (S, B, *in_shape), member s's minibatch in row s -> logits (S, B, K)."""
        for op in self._ops:
            x = op(x)
        return x


# ------------------------------------------------------------------ the trainer


def train_population_vectorized(
    configs: Sequence[RunConfig],
    data: Dataset,
    device: str | torch.device = "cpu",
    *,
    vary: Iterable[str] = (),
) -> Iterator[tuple[RunConfig, dict[str, Any]]]:
    """Train a seed population as one stacked model; yield ``(config, result)`` pairs.

    ``configs`` must differ only in ``seed`` and the fields named in ``vary`` (else
    ``ValueError``), and ``supports_population`` must hold for them. Each ``result`` has exactly the format
    of :func:`landscape_utils.core.train.train_run` (``metrics``, ``history``, ``init_state``,
    ``final_state``) and agrees with it to float rounding. Members are yielded as they
    leave the stack: diverged or early-stopped members at the end of their last epoch,
    the rest after the final epoch, in ``configs`` order within one epoch. Bad input
    raises at the call; training runs as the returned iterator is consumed.

    Args:
        configs: the population (S >= 1 configs).
        data: the cell's dataset, already on ``device``.
        device: where to train.
        vary: also allow ``"lr"`` and/or ``"weight_decay"`` to differ between members
            (each member then uses its own value, the lr under the config's schedule).
    """
    configs = list(configs)
    _check_population(configs, vary)
    if configs[0].batch_size > data.num_train:
        raise ValueError(f"batch_size={configs[0].batch_size} is larger than the training set "
                         f"({data.num_train} samples)")
    device = resolve_device(device)
    configs[0].validate(device)  # the precision against the device
    # checked eagerly, above; the training itself runs as the caller iterates
    return _train(configs, data, device)


def _train(configs: list[RunConfig], data: Dataset,
           device: torch.device) -> Iterator[tuple[RunConfig, dict[str, Any]]]:
    """The training of :func:`train_population_vectorized`, epoch by epoch: the alive members'
    lrs, one epoch of the stack, each member's history and who leaves, their results."""
    c0 = configs[0]
    models = [init_model(c, data, device) for c in configs]
    init_states = [{k: v.detach().cpu().clone() for k, v in m.state_dict().items()} for m in models]
    stack = _Stack(models, device)
    gens = [data_order_generator(c.seed) for c in configs]  # each member's own data order
    histories: list[list[dict[str, Any]]] = [[] for _ in configs]
    still = [0] * len(configs)  # early stop: epochs in a row with |Δ train loss| < EARLY_STOP_TOL
    alive = list(range(len(configs)))  # slot -> member index
    t0 = time.perf_counter()
    for epoch in range(c0.num_epochs):
        if not alive:
            break
        lrs = _epoch_lrs([configs[i] for i in alive], epoch)
        stack.set_hyper(lrs, [configs[i].weight_decay for i in alive], c0.momentum)
        losses, accs = _train_epoch(stack, data, [gens[i] for i in alive], c0, device)
        leaving = _record_epoch(c0, epoch, alive, lrs, losses, accs, histories, still)
        if not leaving:
            continue
        done = []
        for slot, i, status in leaving:
            seconds = (time.perf_counter() - t0) / len(configs)
            done.append((i, _result(models[i], stack.state_dict(slot), data, status, histories[i],
                                    init_states[i], seconds)))
        gone = {slot for slot, _, _ in leaving}
        keep = [slot for slot in range(len(alive)) if slot not in gone]
        if keep:
            stack.keep(keep)
        alive = [alive[slot] for slot in keep]
        for i, result in done:
            yield configs[i], result


def _epoch_lrs(configs: Sequence[RunConfig], epoch: int) -> list[float]:
    """Each member's lr this epoch, computed as train_run computes it (the schedule is
    shared; the base lr may differ)."""
    return [c.lr * lr_factor(c.schedule, epoch, c.num_epochs, c.decay_at, c.decay_factor) for c in configs]


def _train_epoch(stack: _Stack, data: Dataset, gens: Sequence[torch.Generator], c0: RunConfig,
                 device: torch.device) -> tuple[list[float], list[float]]:
    """One epoch of SGD of every member in ``stack`` (slot s draws its minibatches with
    ``gens[s]``, dropping the last partial batch as train_run does); returns each slot's
    mean train loss and train accuracy over the epoch."""
    S, n, B = len(gens), data.num_train, c0.batch_size
    num_batches = n // B  # drop_last, as train_run
    x_all, y_all = data.x_train, data.y_train
    order = torch.stack([torch.randperm(n, generator=g) for g in gens])
    order = order[:, : num_batches * B].reshape(S, num_batches, B).to(x_all.device)
    loss_sum = torch.zeros(S, device=device)
    correct = torch.zeros(S, device=device, dtype=torch.long)
    for j in range(num_batches):
        idx = order[:, j]  # (S, B)
        xb, yb = x_all[idx], y_all[idx]  # (S, B, *in_shape), (S, B)
        with step_precision(c0.precision, device):
            with forward_precision(c0.precision, device):
                logits = stack(xb)  # (S, B, K)
                losses = F.cross_entropy(logits.reshape(S * B, -1), yb.reshape(-1),
                                         reduction="none").view(S, B).mean(1)
            stack.zero_grad()
            losses.sum().backward()
            stack.step()
        with torch.no_grad():
            loss_sum += losses.detach() * B
            correct += (logits.detach().argmax(-1) == yb).sum(1)
    seen = num_batches * B
    return (loss_sum / seen).tolist(), [c / seen for c in correct.tolist()]


def _record_epoch(c0: RunConfig, epoch: int, alive: list[int], lrs: list[float], losses: list[float],
                  accs: list[float], histories: list[list[dict[str, Any]]],
                  still: list[int]) -> list[tuple[int, int, str]]:
    """Append the epoch to each alive member's history (and its early-stop count to
    ``still``); returns ``(slot, member, status)`` of the members that leave the stack:
    diverged, early-stopped, or at the last epoch."""
    leaving: list[tuple[int, int, str]] = []
    for slot, i in enumerate(alive):
        loss = losses[slot]
        histories[i].append({"epoch": epoch + 1, "lr": lrs[slot], "train_loss": loss, "train_acc": accs[slot]})
        if not math.isfinite(loss):
            leaving.append((slot, i, "diverged"))
            continue
        if c0.early_stop and len(histories[i]) > 1:
            still[i] = quiet_epochs(histories[i], still[i])
            if still[i] >= EARLY_STOP_EPOCHS:
                leaving.append((slot, i, "ok"))
                continue
        if epoch + 1 == c0.num_epochs:
            leaving.append((slot, i, "ok"))
    return leaving


def _result(model: nn.Module, state: dict[str, torch.Tensor], data: Dataset, status: str,
            history: list[dict[str, Any]], init_state: dict[str, torch.Tensor], seconds: float) -> dict[str, Any]:
    """A member's result as train_run returns it: ``model`` takes its final ``state``."""
    model.load_state_dict(state)
    metrics = final_metrics(model, data, status, len(history), seconds)
    return {"metrics": metrics, "history": history, "init_state": init_state, "final_state": state}
