"""Hessian of the training loss: products, top eigenvalues, trace and spectral density.

Everything here is measured as the Methods appendix defines it (book/07_methods.py:
methods-hessian, methods-lanczos, methods-trace, methods-slq):

* over the model's *trainable* parameters (``requires_grad=True``), flattened in
  ``model.named_parameters()`` order into one vector of length ``P``;
* at fixed buffers and in **eval mode** (BatchNorm uses its running statistics);
* on fixed data: one batch ``(x, y)`` (see :func:`make_fixed_batch`, whose
  ``num_samples`` is recorded in every result), or an iterable of batches, in which case
  every product is the exact full-data average ``H = sum_b n_b H_b / sum_b n_b`` (the
  loss function must be mean-reduced per batch, like ``nn.CrossEntropyLoss()``).

The model itself is never moved, cast or written to: the computation runs on copies
(views, when device and dtype already match) of its parameters and buffers through
``torch.func.functional_call``. Its train/eval flags (per submodule) and every
parameter's ``.grad`` are restored on exit. Parameters that the loss does not depend
on get zero Hessian rows and columns.

Two ways to form Hessian-vector products (``hvp_method``):

``"graph"``
    double backward through a gradient graph built once (``create_graph=True``) and
    kept (``autograd.grad(..., retain_graph=True)``): fastest on a CPU for one fixed
    batch, but holds the graph in memory.
``"func"``
    forward-over-reverse, ``torch.func.jvp(torch.func.grad(f), ...)``: recomputes the
    forward and backward every product and keeps no graph; use it for iterables of
    batches and where memory binds.
``"auto"``
    ``"graph"`` for a single batch, ``"func"`` for an iterable of batches.

Several vectors at once go through ``vmap`` (``is_grads_batched`` for ``"graph"``);
where that fails the operator falls back to a loop. On a CPU batching is usually
*slower* (measured: benchmarks/RESULTS.md), so the default block size is 1 there and 8 on CUDA.

PyHessian is only used by the optional :func:`pyhessian_reference` (imported lazily),
for side-by-side comparisons.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..core.params import trainable_parameters
from ..core.utils import resolve_device

__all__ = [
    "HessianOperator",
    "EigenResult",
    "TraceResult",
    "DensityResult",
    "PyHessianReference",
    "make_fixed_batch",
    "split_vector",
    "hessian_vector_product",
    "top_eigenvalues",
    "trace",
    "spectral_density",
    "pyhessian_reference",
]

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_HVP_METHODS = ("auto", "graph", "func")


# --------------------------------------------------------------------------- data


def make_fixed_batch(
    x: torch.Tensor,
    y: torch.Tensor,
    num_samples: int | None = 200,
    seed: int = 0,
) -> Batch:
    """A fixed batch of ``num_samples`` rows drawn without replacement from ``(x, y)``.

    Args:
        x: shape (N, ...), the inputs.
        y: shape (N, ...), the targets.
        num_samples: how many rows to keep; ``None`` keeps all N in their order. The
            authors used 200; PyHessian's authors recommend about 4096.
        seed: seeds the choice of rows (a local generator, global RNG untouched).

    Returns:
        ``(x_sub, y_sub)`` with shapes (num_samples, ...), on the input's device.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y disagree on N: {x.shape[0]} vs {y.shape[0]}")
    n = x.shape[0]
    if num_samples is None:
        return x, y
    num_samples = int(num_samples)
    if not 1 <= num_samples <= n:
        raise ValueError(f"num_samples must be in [1, {n}], got {num_samples}")
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(n, generator=gen)[:num_samples].to(x.device)
    return x.index_select(0, idx), y.index_select(0, idx.to(y.device))


def _is_batch(data: Any) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and isinstance(data[0], torch.Tensor)
        and isinstance(data[1], torch.Tensor)
    )


def _normalize_data(data: Any) -> tuple[bool, Iterable]:
    """``(is_single_batch, re-iterable of batches)``; one-shot iterators are listed."""
    if _is_batch(data):
        return True, [data]
    try:
        it = iter(data)
    except TypeError as exc:
        raise TypeError("data must be a batch (x, y) or an iterable of batches") from exc
    if it is data:  # a one-shot iterator: keep its batches, we pass over data many times
        data = list(it)
    return False, data


# ---------------------------------------------------------------- parameter vectors


def split_vector(model: nn.Module, vec: torch.Tensor) -> dict[str, torch.Tensor]:
    """Cut a flat vector of shape (P,) into views shaped like the trainable parameters."""
    named = list(trainable_parameters(model).items())
    numels = [p.numel() for _, p in named]
    if vec.ndim != 1 or vec.numel() != sum(numels):
        raise ValueError(f"expected a vector of shape ({sum(numels)},), got {tuple(vec.shape)}")
    return {n: c.view(p.shape) for (n, p), c in zip(named, vec.split(numels))}


# ------------------------------------------------------------------------ operator


class HessianOperator:
    """The loss Hessian of ``model`` on ``data`` as a linear operator on R^P.

    Use it as a context manager; inside, ``op(v)`` with ``v`` of shape (P,) returns Hv
    of shape (P,), and ``op.matmat(V)`` with V of shape (b, P) returns (b, P).

    Args:
        model: the network; left untouched apart from a temporary ``eval()``.
        loss_fn: ``loss_fn(model(x), y)`` -> scalar, mean-reduced over the batch.
        data: one batch ``(x, y)`` (a 2-tuple or 2-list of tensors) or an iterable of
            batches (full-data average, weighted by batch size). The iterable is traversed
            once per product (``"func"``) or once in all (``"graph"``); it must give the
            same samples on every pass (shuffling is harmless, augmentation is not). A
            one-shot iterator is listed first.
        hvp_method: ``"auto"`` | ``"graph"`` | ``"func"`` (see the module docstring).
            ``"graph"`` with an iterable keeps one graph over all batches in memory.
        device: where to compute; ``"auto"`` is CUDA when available.
        dtype: working floating dtype (e.g. ``torch.float64`` for tests); ``None`` keeps
            the parameters' dtype. Floating inputs, targets and buffers are cast to it.

    Attributes (after entering):
        num_params: P.  num_hvps: products done so far (a (b, P) block counts b).
        num_samples: total samples in ``data``.  method: ``"graph"`` or ``"func"``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: Batch | Iterable[Batch],
        *,
        hvp_method: str = "auto",
        device: str | torch.device = "auto",
        dtype: torch.dtype | None = None,
    ) -> None:
        if hvp_method not in _HVP_METHODS:
            raise ValueError(f"hvp_method must be one of {_HVP_METHODS}, got {hvp_method!r}")
        self.model = model
        self.loss_fn = loss_fn
        self.device = resolve_device(device)
        self.single_batch, self._data = _normalize_data(data)
        self.method = hvp_method if hvp_method != "auto" else (
            "graph" if self.single_batch else "func")

        named = list(trainable_parameters(model).items())
        if not named:
            raise ValueError("the model has no trainable parameters (requires_grad=True)")
        self.names = tuple(n for n, _ in named)
        self.shapes = tuple(p.shape for _, p in named)
        self.numels = tuple(p.numel() for _, p in named)
        self.num_params = int(sum(self.numels))
        self.dtype = dtype if dtype is not None else named[0][1].dtype
        if not self.dtype.is_floating_point:
            raise ValueError(f"dtype must be floating, got {self.dtype}")
        self.num_hvps = 0
        self.num_samples: int | None = None
        self.batched_fallback = False  # set when vmap failed and we loop instead
        self._batched_ok: bool | None = None
        self._entered = False
        self._grads: tuple | None = None
        self._leaves: tuple | None = None

    # -- conversions
    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        if t.is_floating_point():
            return t.to(device=self.device, dtype=self.dtype)
        return t.to(device=self.device)

    def _batch(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
        x, y = batch[0], batch[1]
        x, y = self._cast(x), self._cast(y)
        return x, y, int(x.shape[0])

    def _split(self, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(c.view(s) for c, s in zip(v.split(self.numels), self.shapes))

    def _split_batched(self, V: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b = V.shape[0]
        return tuple(c.reshape(b, *s) for c, s in zip(V.split(self.numels, dim=1), self.shapes))

    def _flat(self, parts: Sequence[torch.Tensor | None], batch: int | None = None) -> torch.Tensor:
        out = []
        for t, s, n in zip(parts, self.shapes, self.numels):
            shape = (n,) if batch is None else (batch, n)
            if t is None:
                out.append(torch.zeros(shape, device=self.device, dtype=self.dtype))
            else:
                out.append(t.reshape(shape))
        return torch.cat(out, dim=-1)

    # -- context management
    def __enter__(self) -> "HessianOperator":
        model = self.model
        self._modes = [(m, m.training) for m in model.modules()]
        self._saved_grads = [(p, p.grad) for p in model.parameters()]
        model.eval()
        try:
            params = dict(model.named_parameters())
            self._params = tuple(self._cast(params[n]) for n in self.names)
            trainable = set(self.names)
            fixed = {n: self._cast(p) for n, p in params.items() if n not in trainable}
            fixed.update({n: self._cast(b) for n, b in model.named_buffers()})
            self._fixed = fixed
            self._entered = True
            if self.method == "graph":
                self._build_graph()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._grads = self._leaves = None
        self._entered = False
        for m, mode in self._modes:
            m.training = mode
        for p, g in self._saved_grads:
            p.grad = g

    def _loss(self, params: Sequence[torch.Tensor], x: torch.Tensor,
              y: torch.Tensor) -> torch.Tensor:
        state = (dict(zip(self.names, params)), self._fixed)
        out = torch.func.functional_call(self.model, state, (x,))
        return self.loss_fn(out, y)

    # -- double backward through a kept graph
    def _build_graph(self) -> None:
        leaves = tuple(p.detach().requires_grad_(True) for p in self._params)
        total, n_total = None, 0
        with torch.enable_grad():
            for batch in self._data:
                x, y, n = self._batch(batch)
                term = self._loss(leaves, x, y) * n
                total = term if total is None else total + term
                n_total += n
            if total is None:
                raise ValueError("data holds no batches")
            total = total / n_total
            grads = torch.autograd.grad(total, leaves, create_graph=True, allow_unused=True)
        self.num_samples = n_total
        self._leaves = leaves
        # keep only gradient parts that still depend on the parameters
        self._grads = tuple(g if (g is not None and g.requires_grad) else None for g in grads)

    def _graph_hvp(self, tangents: tuple[torch.Tensor, ...], batched: bool) -> tuple:
        used = [i for i, g in enumerate(self._grads) if g is not None]
        if not used:
            return (None,) * len(self._grads)
        hv = torch.autograd.grad(
            [self._grads[i] for i in used],
            self._leaves,
            grad_outputs=[tangents[i] for i in used],
            retain_graph=True,
            allow_unused=True,
            is_grads_batched=batched,
        )
        return tuple(None if h is None else h.detach() for h in hv)

    # -- forward-over-reverse
    def _func_hvp_one(self, tangents: tuple, x: torch.Tensor, y: torch.Tensor) -> tuple:
        grad_f = torch.func.grad(lambda p: self._loss(p, x, y))
        return torch.func.jvp(grad_f, (self._params,), (tangents,))[1]

    def _func_hvp(self, tangents: tuple[torch.Tensor, ...], batched: bool) -> tuple:
        acc, n_total = None, 0
        for batch in self._data:
            x, y, n = self._batch(batch)
            if batched:
                hv = torch.func.vmap(lambda t: self._func_hvp_one(t, x, y))(tangents)
            else:
                hv = self._func_hvp_one(tangents, x, y)
            hv = [h.detach() * n for h in hv]
            acc = hv if acc is None else [a + h for a, h in zip(acc, hv)]
            n_total += n
        if acc is None:
            raise ValueError("data holds no batches")
        self.num_samples = n_total
        return tuple(a / n_total for a in acc)

    # -- public products
    def _check(self) -> None:
        if not self._entered:
            raise RuntimeError("use HessianOperator as a context manager: "
                               "`with HessianOperator(...) as op:`")

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """Hv for ``v`` of shape (P,); returns shape (P,) in the working dtype/device."""
        self._check()
        if v.shape != (self.num_params,):
            raise ValueError(f"v must have shape ({self.num_params},), got {tuple(v.shape)}")
        t = self._split(v.to(device=self.device, dtype=self.dtype))
        with torch.enable_grad():
            hv = (self._graph_hvp if self.method == "graph" else self._func_hvp)(t, False)
        self.num_hvps += 1
        return self._flat(hv)

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """Rows H v_i for ``V`` of shape (b, P); returns (b, P). Tries ``vmap`` first."""
        self._check()
        if V.ndim != 2 or V.shape[1] != self.num_params:
            raise ValueError(f"V must have shape (b, {self.num_params}), got {tuple(V.shape)}")
        V = V.to(device=self.device, dtype=self.dtype)
        b = V.shape[0]
        if b == 1 or self._batched_ok is False:
            return torch.stack([self(v) for v in V])
        fn = self._graph_hvp if self.method == "graph" else self._func_hvp
        try:
            with torch.enable_grad():
                hv = fn(self._split_batched(V), True)
            out = self._flat(hv, batch=b)
        except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
            if self._batched_ok:  # it worked before: this is a real error
                raise
            self._batched_ok = False
            self.batched_fallback = True
            warnings.warn(f"batched Hessian-vector products failed ({type(exc).__name__}: "
                          f"{str(exc)[:200]}); falling back to one product at a time",
                          RuntimeWarning, stacklevel=2)
            return torch.stack([self(v) for v in V])
        self._batched_ok = True
        self.num_hvps += b
        return out


def hessian_vector_product(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    v: torch.Tensor,
    *,
    hvp_method: str = "auto",
    device: str | torch.device = "auto",
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """One-off Hessian-vector product(s).

    Args:
        v: shape (P,) or (b, P), P the number of trainable parameters.

    Returns:
        Hv with the shape of ``v``, on ``device`` in the working dtype.
    """
    with HessianOperator(model, loss_fn, data, hvp_method=hvp_method, device=device,
                         dtype=dtype) as op:
        return op(v) if v.ndim == 1 else op.matmat(v)


# ------------------------------------------------------------------------ helpers


def _rademacher(shape: tuple[int, ...], gen: torch.Generator, device: torch.device,
                dtype: torch.dtype) -> torch.Tensor:
    return torch.randint(0, 2, shape, generator=gen, device=device).to(dtype).mul_(2).sub_(1)


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def _default_block(device: torch.device) -> int:
    return 8 if device.type == "cuda" else 1


def _orthogonalize(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Remove from ``w`` (P,) its components along the orthonormal rows of ``basis`` (j, P),
    classical Gram-Schmidt done twice ("twice is enough")."""
    if basis.shape[0] == 0:
        return w
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


class _Lanczos:
    """Lanczos with full reorthogonalization on a symmetric operator.

    After ``j`` steps it holds an orthonormal basis Q (j, P) and the tridiagonal
    T = Qᵀ H Q (j, j) with diagonal ``alpha`` and off-diagonal ``beta``. A step that
    breaks down (invariant subspace found) sets ``breakdown``; ``restart`` continues
    from a fresh random vector orthogonal to Q, with a zero off-diagonal entry.
    """

    def __init__(self, matvec: Callable[[torch.Tensor], torch.Tensor], v0: torch.Tensor):
        self.matvec = matvec
        self.P = v0.numel()
        cap = 16
        self._Q = torch.empty((min(cap, self.P), self.P), dtype=v0.dtype, device=v0.device)
        self.j = 0
        self.alpha: list[float] = []
        self.beta: list[float] = []  # beta[i] couples q_i and q_{i+1}
        self.breakdown = False
        self._next = v0 / torch.linalg.vector_norm(v0)
        self._eps = torch.finfo(v0.dtype).eps
        self.scale = 0.0

    @property
    def Q(self) -> torch.Tensor:
        return self._Q[: self.j]

    def restart(self, v: torch.Tensor) -> bool:
        v = _orthogonalize(v, self.Q)
        nrm = float(torch.linalg.vector_norm(v))
        if nrm <= 1e-8 * math.sqrt(self.P):  # v (norm ~ sqrt(P)) lay inside span(Q)
            return False
        self._next = v / nrm
        self.breakdown = False
        return True

    def step(self) -> None:
        if self.j >= self.P:
            raise RuntimeError("Krylov space exhausted")
        if self.j == self._Q.shape[0]:
            grown = torch.empty((min(2 * self.j, self.P), self.P), dtype=self._Q.dtype,
                                device=self._Q.device)
            grown[: self.j] = self._Q
            self._Q = grown
        q = self._next
        self._Q[self.j] = q
        w = self.matvec(q)
        a = float(q @ w)
        w = w - a * q
        if self.j > 0 and self.beta[-1] != 0.0:
            w = w - self.beta[-1] * self._Q[self.j - 1]
        self.j += 1
        w = _orthogonalize(w, self.Q)
        b = float(torch.linalg.vector_norm(w))
        self.alpha.append(a)
        self.scale = max(self.scale, abs(a), b)
        if b <= 100 * self._eps * max(self.scale, 1e-30) or self.j >= self.P:
            self.breakdown = True
            self.beta.append(0.0)
            self._next = None
        else:
            self.beta.append(b)
            self._next = w / b

    def tridiagonal(self) -> np.ndarray:
        j = self.j
        T = np.diag(np.asarray(self.alpha, dtype=np.float64))
        if j > 1:
            off = np.asarray(self.beta[: j - 1], dtype=np.float64)
            T += np.diag(off, 1) + np.diag(off, -1)
        return T

    def ritz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ritz values (ascending, (j,)), eigenvectors of T ((j, j)) and residual norms
        ``|beta_j * s_{j,i}|`` ((j,)) of the Ritz pairs."""
        theta, S = np.linalg.eigh(self.tridiagonal())
        res = np.abs(self.beta[-1] * S[-1, :])
        return theta, S, res


# ------------------------------------------------------------------- eigenvalues


@dataclass(frozen=True, eq=False)
class EigenResult:
    """Top eigenvalues of the loss Hessian.

    eigenvalues: k floats, descending. eigenvectors: tensor (k, P) on CPU, unit rows
    matching ``eigenvalues``. num_hvps: Hessian-vector products used. converged: the
    stopping rule was met for all k. method: ``"lanczos"`` or ``"power"``. residuals:
    k floats ``||H u - λ u||`` (Lanczos: from the recurrence; power: computed). Also the
    data size ``num_samples``, ``num_params`` P, ``hvp_method``, wall ``seconds``.
    """

    eigenvalues: tuple[float, ...]
    eigenvectors: torch.Tensor
    num_hvps: int
    converged: bool
    method: str
    residuals: tuple[float, ...] = ()
    num_samples: int | None = None
    num_params: int = 0
    hvp_method: str = ""
    seconds: float = 0.0


def top_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    k: int = 1,
    method: str = "lanczos",
    tol: float = 1e-6,
    max_iter: int = 100,
    device: str | torch.device = "auto",
    seed: int = 0,
    *,
    hvp_method: str = "auto",
    dtype: torch.dtype | None = None,
) -> EigenResult:
    """The top ``k`` eigenvalues (and eigenvectors) of the loss Hessian.

    ``method="lanczos"`` (default): Lanczos with full reorthogonalization from a
    Rademacher start. It returns the k **largest algebraic** eigenvalues (the most
    positive ones, not the largest in magnitude). It stops when, for each of the top-k
    Ritz pairs, the Ritz residual ``|beta_j s_{j,i}|`` is at most ``tol * |θ_max|``, or
    when every top-k Ritz value changed by at most ``tol * |θ_i|`` on two successive
    steps, or on breakdown (an invariant subspace: its Ritz values are exact). At most
    ``max_iter`` products; keeps a basis of up to ``max_iter`` vectors of size P. A
    single-vector Lanczos resolves each distinct eigenvalue once: exactly repeated
    eigenvalues may show up only once among the k.

    ``method="power"``: power iteration with deflation (each new vector is kept
    orthogonal to those found), up to ``max_iter`` products per eigenvalue, stopping when
    ``|Δλ| / (|λ| + 1e-6) < tol``. It finds the eigenvalues of largest **magnitude**; on
    an indefinite Hessian with a large negative eigenvalue these are not the top ones.
    The k values found are then sorted descending. Convergence is slow when the top two
    magnitudes are close.

    Args:
        model, loss_fn, data, hvp_method, device, dtype: as for :class:`HessianOperator`.
        k: how many eigenvalues (1 <= k <= P).
        seed: seeds the start vectors (a local generator on ``device``).

    Returns:
        :class:`EigenResult`; ``eigenvectors`` has shape (k, P).
    """
    if method not in ("lanczos", "power"):
        raise ValueError(f"method must be 'lanczos' or 'power', got {method!r}")
    t0 = time.perf_counter()
    with HessianOperator(model, loss_fn, data, hvp_method=hvp_method, device=device,
                         dtype=dtype) as op:
        P = op.num_params
        if not 1 <= k <= P:
            raise ValueError(f"k must be in [1, {P}], got {k}")
        gen = _generator(seed, op.device)
        if method == "lanczos":
            vals, vecs, res, converged = _lanczos_top(op, k, tol, max_iter, gen)
        else:
            vals, vecs, res, converged = _power_top(op, k, tol, max_iter, gen)
        hvps = op.num_hvps
    return EigenResult(
        eigenvalues=tuple(float(v) for v in vals),
        eigenvectors=vecs.detach().cpu(),
        num_hvps=hvps,
        converged=bool(converged),
        method=method,
        residuals=tuple(float(r) for r in res),
        num_samples=op.num_samples,
        num_params=P,
        hvp_method=op.method,
        seconds=time.perf_counter() - t0,
    )


def _lanczos_top(op: HessianOperator, k: int, tol: float, max_iter: int,
                 gen: torch.Generator):
    P = op.num_params
    start = lambda: _rademacher((P,), gen, op.device, op.dtype)  # noqa: E731
    lz = _Lanczos(op, start())
    prev: np.ndarray | None = None
    small_changes = 0
    converged = False
    theta = S = res = None
    while lz.j < min(max_iter, P):
        lz.step()
        theta, S, res = lz.ritz()
        if lz.j < k:
            if lz.breakdown and lz.j < P and not lz.restart(start()):
                break
            continue
        top = theta[::-1][:k]
        top_res = res[::-1][:k]
        scale = max(float(np.max(np.abs(theta))), 1e-300)
        if lz.breakdown or np.all(top_res <= tol * scale):
            converged = True
            break
        if prev is not None and np.all(np.abs(top - prev) <= tol * np.maximum(np.abs(top), 1e-300)):
            small_changes += 1
            if small_changes >= 2:
                converged = True
                break
        else:
            small_changes = 0
        prev = top
    if theta is None or len(theta) < k:
        raise RuntimeError(f"Lanczos produced {0 if theta is None else len(theta)} Ritz values "
                           f"< k={k}; raise max_iter")
    order = np.argsort(theta)[::-1][:k]
    coeffs = torch.as_tensor(S[:, order].T.copy(), dtype=op.dtype, device=op.device)  # (k, j)
    vecs = coeffs @ lz.Q
    return theta[order], vecs, res[order], converged


def _power_top(op: HessianOperator, k: int, tol: float, max_iter: int,
               gen: torch.Generator):
    P = op.num_params
    found = torch.empty((0, P), dtype=op.dtype, device=op.device)
    vals, res, all_conv = [], [], True
    for _ in range(k):
        v = _orthogonalize(_rademacher((P,), gen, op.device, op.dtype), found)
        v = v / torch.linalg.vector_norm(v)
        lam, conv = None, False
        for _ in range(max_iter):
            hv = op(v)
            new = float(v @ hv)
            done = lam is not None and abs(new - lam) / (abs(lam) + 1e-6) < tol
            lam, last_v, last_hv = new, v, hv
            if done:
                conv = True
                break
            w = _orthogonalize(hv, found)
            nrm = torch.linalg.vector_norm(w)
            if float(nrm) == 0.0:  # v is in the null space of the deflated operator
                conv = True
                break
            v = w / nrm
        res.append(float(torch.linalg.vector_norm(last_hv - lam * last_v)))
        vals.append(lam)
        found = torch.cat([found, last_v[None]])
        all_conv &= conv
    order = np.argsort(vals)[::-1]
    return (np.asarray(vals)[order], found[torch.as_tensor(order.copy(), device=op.device)],
            np.asarray(res)[order], all_conv)


# ------------------------------------------------------------------------- trace


@dataclass(frozen=True, eq=False)
class TraceResult:
    """Stochastic trace estimate of the loss Hessian.

    estimate: tr(H). stderr: its standard error (Hutch++: of the Hutchinson part on the
    deflated remainder; the exact part is conditionally deterministic). num_probes:
    Hutchinson probes. num_hvps: all products, including Hutch++'s 2·sketch_size.
    converged: the relative standard error reached ``rel_tol``. method: ``"hutchinson"``
    or ``"hutchpp"``. samples: the per-probe values vᵀHv (of the remainder for Hutch++),
    float64 array (num_probes,). exact_part: tr(QᵀHQ) for Hutch++, else 0.
    """

    estimate: float
    stderr: float
    num_probes: int
    num_hvps: int
    converged: bool
    method: str
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sketch_size: int = 0
    exact_part: float = 0.0
    num_samples: int | None = None
    num_params: int = 0
    hvp_method: str = ""
    seconds: float = 0.0


def trace(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    rel_tol: float = 1e-2,
    max_probes: int = 1000,
    min_probes: int = 10,
    block: int | None = None,
    method: str = "hutchinson",
    seed: int = 0,
    device: str | torch.device = "auto",
    *,
    sketch_size: int | None = None,
    hvp_method: str = "auto",
    dtype: torch.dtype | None = None,
) -> TraceResult:
    """Estimate tr(H) with Rademacher probes.

    ``method="hutchinson"``: the mean of vᵀHv over Rademacher v. After at least
    ``min_probes`` probes it stops as soon as ``stderr <= rel_tol * |estimate|`` (the
    standard error of the mean, sample std with ddof=1 over sqrt(n)); it never stops on the
    change of the running mean. At most ``max_probes`` probes.

    ``method="hutchpp"`` (Hutch++, Meyer et al. 2021): draw a Rademacher sketch S
    (P, s), take an orthonormal basis Q of H S, add the exact tr(QᵀHQ) and run the same
    Hutchinson loop on the deflated (I - QQᵀ) H (I - QQᵀ). Costs 2s products up front and
    pays off when a few outlier eigenvalues carry most of ‖H‖_F, as in trained nets.
    ``sketch_size`` defaults to min(P, 20). ``min_probes``/``max_probes`` count only the
    remainder probes; ``rel_tol`` is relative to the full estimate.

    Args:
        block: probes per call, batched through ``vmap`` where it works (falls back to a
            loop otherwise); default 1 on CPU (batching is slower there), 8 on CUDA.
        seed: seeds the probes (a local generator on ``device``).
        model, loss_fn, data, hvp_method, device, dtype: as for :class:`HessianOperator`.

    Returns:
        :class:`TraceResult`.
    """
    if method not in ("hutchinson", "hutchpp"):
        raise ValueError(f"method must be 'hutchinson' or 'hutchpp', got {method!r}")
    if min_probes < 2 or max_probes < min_probes:
        raise ValueError("need 2 <= min_probes <= max_probes")
    t0 = time.perf_counter()
    with HessianOperator(model, loss_fn, data, hvp_method=hvp_method, device=device,
                         dtype=dtype) as op:
        P = op.num_params
        gen = _generator(seed, op.device)
        block = int(block) if block is not None else _default_block(op.device)
        if block < 1:
            raise ValueError("block must be >= 1")
        Q, exact, s = None, 0.0, 0
        if method == "hutchpp":
            s = min(P, 20 if sketch_size is None else int(sketch_size))
            Q, exact = _hutchpp_sketch(op, gen, s, block)
        # a sketch that spans everything makes the trace exact: no probes
        exact_already = Q is not None and s >= P
        arr, converged = (np.zeros(0), True) if exact_already else _probe_until(
            op, gen, Q, exact, rel_tol, min_probes, max_probes, block)
        mean, se = _mean_and_stderr(arr)
        hvps = op.num_hvps
    return TraceResult(
        estimate=exact + mean,
        stderr=se,
        num_probes=len(arr),
        num_hvps=hvps,
        converged=converged,
        method=method,
        samples=arr,
        sketch_size=s,
        exact_part=exact,
        num_samples=op.num_samples,
        num_params=P,
        hvp_method=op.method,
        seconds=time.perf_counter() - t0,
    )


def _hutchpp_sketch(op: HessianOperator, gen: torch.Generator, s: int, block: int
                    ) -> tuple[torch.Tensor, float]:
    """Hutch++'s first stage: an orthonormal basis Q (P, s) of H S for a Rademacher sketch S
    (s, P), and the exact part tr(QᵀHQ). Costs 2s products."""
    if s < 1:
        raise ValueError("sketch_size must be >= 1")
    S = _rademacher((s, op.num_params), gen, op.device, op.dtype)
    Y = _blocked(op, S, block)  # (s, P)
    Q = torch.linalg.qr(Y.T.to(torch.float64))[0].to(op.dtype)  # (P, s)
    HQ = _blocked(op, Q.T.contiguous(), block)  # (s, P)
    return Q, float((Q.T * HQ).sum(dtype=torch.float64))


def _probe_until(op: HessianOperator, gen: torch.Generator, Q: torch.Tensor | None, exact: float,
                 rel_tol: float, min_probes: int, max_probes: int, block: int) -> tuple[np.ndarray, bool]:
    """Hutchinson's loop: Rademacher probes v (projected off Q when given) and their vᵀHv,
    ``block`` at a time, until the standard error of the mean is at most ``rel_tol`` times
    |exact + mean| (checked from ``min_probes`` on) or ``max_probes`` are spent. Returns the
    per-probe values, float64 (n,), and whether the rule was met."""
    P = op.num_params
    samples: list[float] = []
    while len(samples) < max_probes:
        b = min(block, max_probes - len(samples))
        V = _rademacher((b, P), gen, op.device, op.dtype)
        if Q is not None:
            V = V - (V @ Q) @ Q.T
        HV = op.matmat(V) if b > 1 else op(V[0])[None]
        samples.extend((V * HV).sum(dim=1, dtype=torch.float64).cpu().tolist())
        if len(samples) >= min_probes:
            mean, se = _mean_and_stderr(np.asarray(samples))
            if se <= rel_tol * abs(exact + mean):
                return np.asarray(samples, dtype=np.float64), True
    return np.asarray(samples, dtype=np.float64), False


def _mean_and_stderr(samples: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std, ddof=1, over sqrt(n)) of (n,)
    values; (0, 0) for none, and an infinite error for one."""
    n = len(samples)
    if n == 0:
        return 0.0, 0.0
    mean = float(samples.mean())
    return mean, float(samples.std(ddof=1) / math.sqrt(n)) if n > 1 else float("inf")


def _blocked(op: HessianOperator, V: torch.Tensor, block: int) -> torch.Tensor:
    """H applied to the rows of V (b, P), ``block`` rows per call; returns (b, P)."""
    if block == 1:
        return torch.stack([op(v) for v in V])
    return torch.cat([op.matmat(V[i: i + block]) for i in range(0, V.shape[0], block)])


# --------------------------------------------------------------- spectral density


@dataclass(frozen=True, eq=False)
class DensityResult:
    """Stochastic Lanczos quadrature estimate of the Hessian's spectral density.

    nodes, weights: float64 arrays (num_runs, m), the Ritz values of each run and the
    squared first components of T's eigenvectors; each row of weights sums to 1 (rows of
    runs that broke down early are padded with weight 0). grid, density: float64 arrays
    (grid_points,), the Gaussian-smoothed density averaged over runs, integrating to 1 on
    the grid. sigma_sq: the smoothing variance used. num_hvps: products used.
    """

    nodes: np.ndarray
    weights: np.ndarray
    grid: np.ndarray
    density: np.ndarray
    sigma_sq: float
    num_hvps: int
    num_runs: int
    num_steps: int
    num_samples: int | None = None
    num_params: int = 0
    hvp_method: str = ""
    seconds: float = 0.0

    def moment(self, p: int) -> float:
        """∫ λ^p dμ(λ) of the quadrature, averaged over runs: estimates mean(λ_i^p)
        over the P eigenvalues, i.e. tr(H^p) / P (exact per run for p <= 2m - 1)."""
        return float(np.mean(np.sum(self.weights * self.nodes ** p, axis=1)))


def spectral_density(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    num_runs: int = 5,
    num_steps: int = 100,
    grid_points: int = 10_000,
    sigma_sq: float | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    *,
    hvp_method: str = "auto",
    dtype: torch.dtype | None = None,
) -> DensityResult:
    """Spectral density of the loss Hessian by stochastic Lanczos quadrature.

    Each of ``num_runs`` runs does m = min(num_steps, P) Lanczos steps with full
    reorthogonalization from a normalized Rademacher vector v, then ``eigh`` of the
    tridiagonal T (m, m): the nodes are its eigenvalues, the weights the squared first
    components of its eigenvectors, so that Σ w θ^p = vᵀH^p v. Runs are averaged. The
    density on a grid of ``grid_points`` points spanning the nodes (padded by 1% of the
    range plus 5σ) is the mixture of Gaussians of variance ``sigma_sq`` (default
    1e-5 · max(1, λmax - λmin)) at the nodes, normalized to integrate to 1.

    Args:
        model, loss_fn, data, hvp_method, device, dtype: as for :class:`HessianOperator`.
        seed: seeds the start vectors.

    Returns:
        :class:`DensityResult` with nodes and weights of shape (num_runs, m).
    """
    if num_runs < 1 or num_steps < 1 or grid_points < 2:
        raise ValueError("need num_runs >= 1, num_steps >= 1, grid_points >= 2")
    t0 = time.perf_counter()
    with HessianOperator(model, loss_fn, data, hvp_method=hvp_method, device=device,
                         dtype=dtype) as op:
        P = op.num_params
        m = min(int(num_steps), P)
        gen = _generator(seed, op.device)
        nodes = np.zeros((num_runs, m))
        weights = np.zeros((num_runs, m))
        for r in range(num_runs):
            lz = _Lanczos(op, _rademacher((P,), gen, op.device, op.dtype))
            while lz.j < m:
                lz.step()
                if lz.breakdown:
                    break
            theta, S, _ = lz.ritz()
            j = len(theta)
            nodes[r, :j] = theta
            nodes[r, j:] = theta[-1]
            weights[r, :j] = S[0, :] ** 2
        hvps = op.num_hvps
    lo, hi = float(nodes.min()), float(nodes.max())
    if sigma_sq is None:
        sigma_sq = 1e-5 * max(1.0, hi - lo)
    sigma = math.sqrt(sigma_sq)
    pad = 0.01 * (hi - lo) + 5 * sigma
    grid = np.linspace(lo - pad, hi + pad, int(grid_points))
    density = np.zeros_like(grid)
    norm = 1.0 / math.sqrt(2 * math.pi * sigma_sq)
    for r in range(num_runs):  # loop over runs keeps memory at (m, grid_points)
        d = grid[None, :] - nodes[r][:, None]
        density += weights[r] @ (norm * np.exp(-0.5 * d * d / sigma_sq))
    density /= num_runs
    area = float(np.trapezoid(density, grid)) if hasattr(np, "trapezoid") else float(
        np.trapz(density, grid))
    if area > 0:
        density /= area
    return DensityResult(
        nodes=nodes, weights=weights, grid=grid, density=density, sigma_sq=float(sigma_sq),
        num_hvps=hvps, num_runs=int(num_runs), num_steps=m, num_samples=op.num_samples,
        num_params=P, hvp_method=op.method, seconds=time.perf_counter() - t0,
    )


# ------------------------------------------------------------- PyHessian reference


@dataclass(frozen=True)
class PyHessianReference:
    """PyHessian's numbers for a side-by-side cell.

    eigenvalues: its top_n power-iteration eigenvalues (or () on error). eigen_hvps: the
    products it used, counted by wrapping its ``hessian_vector_product``
    (``eigen_hvps_counted`` False means estimated as top_n·max_iter). trace_estimate: the
    mean of its Hutchinson samples; trace_hvps: their number. *_seconds: wall times.
    error: None, or a readable message when PyHessian failed.
    """

    eigenvalues: tuple[float, ...] = ()
    eigen_hvps: int = 0
    eigen_hvps_counted: bool = True
    eigen_seconds: float = float("nan")
    trace_estimate: float = float("nan")
    trace_hvps: int = 0
    trace_seconds: float = float("nan")
    error: str | None = None


def pyhessian_reference(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    top_n: int = 1,
    tol: float = 1e-3,
    max_iter: int = 100,
    trace_max_iter: int = 100,
    trace_tol: float = 1e-3,
    compute_trace: bool = True,
    seed: int = 0,
    cuda: bool = False,
) -> PyHessianReference:
    """Run PyHessian (optional dependency, imported here) on one batch, for comparison.

    Calls ``pyhessian.hessian(model, loss_fn, data=(x, y), cuda=cuda)``, then
    ``.eigenvalues(top_n=top_n, tol=tol, maxIter=max_iter)`` and, if ``compute_trace``,
    ``.trace(maxIter=trace_max_iter, tol=trace_tol)``. Note PyHessian's own rules: power
    iteration (largest magnitude) and a trace that stops on the change of the running
    mean. The global RNG is forked (seeded with ``seed``) and the model's modes and
    ``.grad`` are restored. Any failure is caught and reported in ``error``.
    """
    modes = [(m, m.training) for m in model.modules()]
    saved = [(p, p.grad) for p in model.parameters()]
    try:
        import importlib

        # the module itself: pyhessian/__init__ rebinds the name to the class
        ph_mod = importlib.import_module("pyhessian.hessian")
    except Exception as exc:  # pragma: no cover - depends on the environment
        return PyHessianReference(error=f"pyhessian is not importable: {exc!r}")
    counter = {"n": 0}
    original = ph_mod.hessian_vector_product

    def counting(*args: Any, **kwargs: Any):
        counter["n"] += 1
        return original(*args, **kwargs)

    ph_mod.hessian_vector_product = counting
    devices = [torch.device("cuda")] if cuda and torch.cuda.is_available() else []
    out: dict[str, Any] = {}
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed))
            for p in model.parameters():
                p.grad = None
            _pyhessian_measure(ph_mod, counter, out, model, loss_fn, x, y, top_n=top_n, tol=tol,
                               max_iter=max_iter, trace_max_iter=trace_max_iter, trace_tol=trace_tol,
                               compute_trace=compute_trace, cuda=cuda)
    finally:
        ph_mod.hessian_vector_product = original
        for m, mode in modes:
            m.training = mode
        for p, g in saved:
            p.grad = g
    return PyHessianReference(**out)


def _pyhessian_measure(ph_mod: Any, counter: dict[str, int], out: dict[str, Any], model: nn.Module,
                       loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *, top_n: int, tol: float,
                       max_iter: int, trace_max_iter: int, trace_tol: float, compute_trace: bool,
                       cuda: bool) -> None:
    """PyHessian's eigenvalues (and trace) with their times and counted HVPs, into ``out``;
    a failure becomes ``out["error"]`` naming the stage it happened in."""
    stage = "hessian(...) setup"
    try:
        comp = ph_mod.hessian(model, loss_fn, data=(x, y), cuda=cuda)
        stage = "eigenvalues"
        t0 = time.perf_counter()
        vals, _ = comp.eigenvalues(maxIter=max_iter, tol=tol, top_n=top_n)
        out["eigen_seconds"] = time.perf_counter() - t0
        out["eigenvalues"] = tuple(float(v) for v in vals)
        out["eigen_hvps"] = counter["n"]
        if counter["n"] == 0:  # its internals changed: fall back to the bound
            out["eigen_hvps"], out["eigen_hvps_counted"] = top_n * max_iter, False
        if compute_trace:
            stage = "trace"
            t0 = time.perf_counter()
            tr = comp.trace(maxIter=trace_max_iter, tol=trace_tol)
            out["trace_seconds"] = time.perf_counter() - t0
            out["trace_estimate"] = float(np.mean(tr))
            out["trace_hvps"] = len(tr)
    except Exception as exc:
        out["error"] = f"pyhessian failed during {stage}: {type(exc).__name__}: {exc}"
