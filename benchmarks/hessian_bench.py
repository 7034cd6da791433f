"""Our Hessian estimators vs PyHessian's, at equal accuracy, on one model and batch.

``lambda_max``: our Lanczos (``hessian.top_eigenvalues``) vs PyHessian's power iteration
(``hessian(...).eigenvalues()``), each stopped by its own rule at the loosest tolerance
that still lands every random start within a relative error of the exact λmax. The
exact value is the top eigenvalue of the full Hessian (``torch.func``, float64, then
``torch.linalg.eigvalsh``) where the Hessian fits in memory, else a float64 Lanczos run
to a residual of 1e-10 (checked against ``eigvalsh`` on the small model).

``trace``: PyHessian's ``trace()`` (plain Hutchinson) run for a fixed number of probes
sets a standard error; our Hutch++ (``hessian.trace(method="hutchpp")``) runs until its
own standard error is at most that. Reported: products and time for each.
"""
from __future__ import annotations

import functools
import importlib
import math
import warnings
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from landscape_utils.core.data import load_dataset
from landscape_utils.core.train import RunConfig, init_model, train_run
from landscape_utils.metrics import hessian

from . import Row, interleaved

REL_ERRS = (1e-3, 1e-5)  # both λmax estimators must land this close to the exact value
OUR_TOLS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5, 1e-6)
PYHESSIAN_TOLS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7)
CE = nn.CrossEntropyLoss()


@functools.lru_cache(maxsize=4)
def trained_model(width: int = 256, epochs: int = 3, num_samples: int = 1000,
                  train_samples: int | None = None):
    """An MNIST-1D MLP 40→width→width→10 (width 256: 79k
    parameters, the model of the Hessian rows of benchmarks/RESULTS.md) trained ``epochs`` epochs (batch 64, SGD, lr 0.05), in eval mode, and a
    fixed batch of ``num_samples`` training samples: (model, (x (N, 40), y (N,)))."""
    cfg = RunConfig(width=width, depth=2, batch_size=64, num_epochs=epochs, seed=0)
    return _fit(cfg, load_dataset("mnist1d"), num_samples, train_samples)


def _fit(cfg: RunConfig, data, num_samples: int, train_samples: int | None):
    """Train ``cfg`` on ``data`` (its first ``train_samples`` samples when given); the model
    in eval mode and a fixed batch of ``num_samples`` training samples."""
    if train_samples is not None:
        n = train_samples
        data = replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n],
                       y_train_clean=data.y_train_clean[:n])
    result = train_run(cfg, data)
    model = init_model(cfg, data)
    model.load_state_dict(result["final_state"])
    model.eval()
    x, y = hessian.make_fixed_batch(data.x_train, data.y_train, num_samples, seed=0)
    return model, (x, y)


def _quick_model():
    return trained_model(16, 1, 200, 512)


def full_hessian(model: nn.Module, batch) -> torch.Tensor:
    """The (P, P) float64 loss Hessian in eval mode, built with ``torch.func``: the
    Jacobian (reverse mode, 128 columns at a time, to bound memory) of the gradient.
    Independent of ``landscape_utils.metrics.hessian``."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    names = [n for n, _ in named]
    shapes = [p.shape for _, p in named]
    numels = [p.numel() for _, p in named]
    theta = torch.cat([p.detach().double().reshape(-1) for _, p in named])
    bufs = {n: (b.double() if b.is_floating_point() else b) for n, b in model.named_buffers()}
    x, y = batch[0].double(), batch[1]

    def loss(t):
        ps = {n: c.view(s) for n, c, s in zip(names, t.split(numels), shapes)}
        return CE(torch.func.functional_call(model, (ps, bufs), (x,)), y)

    was = model.training
    model.eval()
    try:
        return torch.func.jacrev(torch.func.grad(loss), chunk_size=128)(theta).detach()
    finally:
        model.train(was)


def exact_lambda_max_eigvalsh(model, batch) -> float:
    """λmax from ``eigvalsh`` of the full float64 Hessian (P up to a few thousand)."""
    return float(torch.linalg.eigvalsh(full_hessian(model, batch))[-1])


def exact_lambda_max_lanczos(model, batch) -> float:
    """λmax to ~1e-10: float64 Lanczos run to a tight residual (for large P)."""
    r = hessian.top_eigenvalues(model, CE, batch, k=1, tol=1e-10, max_iter=400,
                                device="cpu", seed=1, dtype=torch.float64)
    return r.eigenvalues[0]


def _ours_lmax(model, batch, tol, seed=0):
    return hessian.top_eigenvalues(model, CE, batch, k=1, tol=tol, max_iter=300, device="cpu",
                                   seed=seed)


def _pyhessian_lmax(model, batch, tol, seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # its backward(create_graph=True)
        ref = hessian.pyhessian_reference(model, CE, *batch, top_n=1, tol=tol, max_iter=2000,
                                          compute_trace=False, seed=seed)
    if ref.error:
        raise RuntimeError(ref.error)
    return ref


def _calibrate(run, tols, seeds, exact, rel_err):
    """The loosest tolerance at which every seed's estimate is within ``rel_err`` of
    ``exact``; returns (tol, results per seed)."""
    for tol in tols:
        results = [run(tol, seed) for seed in seeds]
        if all(abs(r.eigenvalues[0] - exact) <= rel_err * abs(exact) for r in results):
            return tol, results
    raise RuntimeError(f"no tolerance in {tols} reaches relative error {rel_err:g}")


def oracle_hvps(model, batch, exact: float, rel_err: float, seeds, max_products: int = 200):
    """Diagnostic: the fewest products after which each algorithm's estimate is within
    ``rel_err`` of ``exact``, i.e. with a perfect stopping rule; median over random
    (Rademacher) starts. Lanczos (full reorthogonalization, top Ritz value) vs power
    iteration (Rayleigh quotient vᵀHv, the estimate PyHessian's ``eigenvalues()``
    returns). Returns (lanczos, power); ``inf`` when not reached in ``max_products``."""
    lanczos, power = [], []
    with hessian.HessianOperator(model, CE, batch, device="cpu") as op:
        for seed in seeds:
            g = torch.Generator().manual_seed(1000 + seed)
            v0 = torch.randint(0, 2, (op.num_params,), generator=g).to(op.dtype) * 2 - 1
            lz, found = hessian._Lanczos(op, v0), math.inf
            while lz.j < max_products and not lz.breakdown:
                lz.step()
                if abs(lz.ritz()[0][-1] - exact) <= rel_err * abs(exact):
                    found = lz.j
                    break
            lanczos.append(found)
            v, found = v0 / torch.linalg.vector_norm(v0), math.inf
            for k in range(1, max_products + 1):
                hv = op(v)
                if abs(float(v @ hv) - exact) <= rel_err * abs(exact):
                    found = k
                    break
                v = hv / torch.linalg.vector_norm(hv)
            power.append(found)
    return float(np.median(lanczos)), float(np.median(power))


def lambda_cases(quick: bool):
    """(label, model_and_batch factory, how the exact λmax is computed)."""
    if quick:
        return [("w16 1ep", _quick_model, "eigvalsh")]
    return [("w32 3ep", lambda: trained_model(32, 3, 1000), "eigvalsh"),
            ("w256 3ep", lambda: trained_model(256, 3, 1000), "lanczos64"),
            ("w256 20ep", lambda: trained_model(256, 20, 1000), "lanczos64")]


def lambda_max(quick: bool = False, repeats: int = 5, model_batch=None) -> list[Row]:
    """Each method runs from several random starts (its seed); its stopping tolerance is
    calibrated to the loosest one at which every start lands within the relative error
    of the exact λmax. Time: mean per estimate over the starts, median over repeats.
    ``model_batch`` replaces the built-in cases by one (model, batch), exact by eigvalsh.

    The details also give :func:`oracle_hvps`: the products each algorithm needs with a
    perfect stopping rule, which bounds the HVP ratio any stopping rule can reach."""
    cases = lambda_cases(quick) if model_batch is None else [
        ("given", lambda: model_batch, "eigvalsh")]
    seeds = range(2) if quick else range(5)
    rows = []
    for label, make, how in cases:
        model, batch = make()
        P = sum(p.numel() for p in model.parameters())
        details_exact = {}
        if how == "eigvalsh":
            exact = exact_lambda_max_eigvalsh(model, batch)
            # the float64 Lanczos used as "exact" for large models, checked here
            details_exact["lanczos64_rel_diff"] = abs(exact_lambda_max_lanczos(model, batch)
                                                      - exact) / abs(exact)
        else:
            exact = exact_lambda_max_lanczos(model, batch)
        for rel_err in REL_ERRS[:1] if quick else REL_ERRS:
            ours_tol, ours = _calibrate(lambda t, s: _ours_lmax(model, batch, t, s), OUR_TOLS,
                                        seeds, exact, rel_err)
            ph_tol, ph = _calibrate(lambda t, s: _pyhessian_lmax(model, batch, t, s),
                                    PYHESSIAN_TOLS, seeds, exact, rel_err)
            t = interleaved(
                {"ours": lambda: [_ours_lmax(model, batch, ours_tol, s) for s in seeds],
                 "pyhessian": lambda: [_pyhessian_lmax(model, batch, ph_tol, s) for s in seeds]},
                repeats, warmup=0)  # the calibration was the warm-up
            ours_hvps = float(np.median([r.num_hvps for r in ours]))
            ph_hvps = float(np.median([r.eigen_hvps for r in ph]))
            oracle_lz, oracle_pw = oracle_hvps(model, batch, exact, rel_err, seeds)
            rows.append(Row(
                "lambda_max", f"{label} P={P} N={batch[0].shape[0]} rel_err<={rel_err:g}",
                t["pyhessian"] / t["ours"], "faster than PyHessian's eigenvalues() (time)",
                {"ours_s": t["ours"] / len(seeds), "pyhessian_s": t["pyhessian"] / len(seeds),
                 "ours_hvps_median": ours_hvps, "pyhessian_hvps_median": ph_hvps,
                 "hvp_ratio": ph_hvps / ours_hvps,
                 "ours_hvps": [r.num_hvps for r in ours],
                 "pyhessian_hvps": [r.eigen_hvps for r in ph],
                 "ours_tol": ours_tol, "pyhessian_tol": ph_tol, "starts": len(seeds),
                 "oracle_lanczos_hvps": oracle_lz, "oracle_power_hvps": oracle_pw,
                 "exact": exact, "exact_by": how, **details_exact}))
    return rows


# ------------------------------------------------------------------------- trace


def _pyhessian_trace(model, batch, num_probes: int, seed: int = 0):
    """PyHessian's Hutchinson run for exactly ``num_probes`` probes (tol=0 never stops it
    early); returns its per-probe samples vᵀHv, float64 (num_probes,). Model modes and
    grads are restored."""
    ph = importlib.import_module("pyhessian.hessian")
    modes = [(m, m.training) for m in model.modules()]
    saved = [(p, p.grad) for p in model.parameters()]
    try:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # its backward(create_graph=True)
            torch.manual_seed(seed)
            for p in model.parameters():
                p.grad = None
            comp = ph.hessian(model, CE, data=batch, cuda=False)
            samples = np.asarray(comp.trace(maxIter=num_probes, tol=0.0), dtype=np.float64)
    finally:
        for m, mode in modes:
            m.training = mode
        for p, g in saved:
            p.grad = g
    return samples


def _ours_trace(model, batch, rel_tol, method="hutchpp", seed=0, sketch_size=None):
    return hessian.trace(model, CE, batch, rel_tol=rel_tol, max_probes=20_000, min_probes=10,
                         method=method, seed=seed, device="cpu", sketch_size=sketch_size)


def _ours_to_stderr(model, batch, target: float, scale: float, seeds, method="hutchpp"):
    """Our estimator stopped at an absolute standard error <= ``target`` for every seed.

    ``hessian.trace`` stops on ``stderr <= rel_tol·|its own estimate|``; starting from
    ``rel_tol = target/scale`` the tolerance is tightened until every seed's reported
    stderr is at most ``target``. Returns (rel_tol, results per seed)."""
    rel = target / abs(scale)
    for _ in range(8):
        results = [_ours_trace(model, batch, rel, method, s) for s in seeds]
        worst = max(r.stderr for r in results)
        if worst <= target:
            return rel, results
        rel *= 0.98 * target / worst
    raise RuntimeError(f"{method} did not reach stderr {target:g}")


def trace_levels(quick: bool) -> list[tuple[str, int | float]]:
    """Targets as PyHessian probe budgets: an int is a number of probes; a float is a
    relative standard error, turned into the number of probes PyHessian needs for it."""
    if quick:
        return [("probes", 20)]
    # its default maxIter, and chapter 2's rel_tol (params/default.yaml: 0.01)
    return [("probes", 100), ("rel_stderr", 0.01)]


def trace(quick: bool = False, repeats: int = 3, model_batch=None) -> list[Row]:
    """For each level, PyHessian's ``trace()`` with N probes sets the standard error to
    reach; our Hutch++ (default sketch) runs until its stderr is that small, from several
    seeds (median HVPs; time: mean per estimate, median over repeats). Also reported: our
    plain Hutchinson run the same way, and the per-probe standard deviations of plain
    Hutchinson and of Hutch++'s deflated remainder, whose squared ratio is the HVP ratio
    approached as the target standard error shrinks."""
    model, batch = model_batch or (_quick_model() if quick else trained_model(256, 3, 1000))
    P = sum(p.numel() for p in model.parameters())
    seeds = range(2) if quick else range(5)
    pilot = _pyhessian_trace(model, batch, 20 if quick else 100, seed=0)
    sd_h = float(pilot.std(ddof=1))
    rows = []
    for kind, level in trace_levels(quick):
        n_probes = int(level) if kind == "probes" else max(
            10, math.ceil((sd_h / (level * abs(pilot.mean()))) ** 2))
        samples = pilot if n_probes == len(pilot) else _pyhessian_trace(model, batch, n_probes)
        est = float(samples.mean())
        se = float(samples.std(ddof=1) / math.sqrt(len(samples)))
        rel, pp = _ours_to_stderr(model, batch, se, est, seeds, "hutchpp")
        _, hu = _ours_to_stderr(model, batch, se, est, seeds[:2], "hutchinson")
        t = interleaved({"hutchpp": lambda: [_ours_trace(model, batch, rel, "hutchpp", s)
                                             for s in seeds],
                         "pyhessian": lambda: _pyhessian_trace(model, batch, n_probes)},
                        repeats, warmup=0)
        pp_hvps = float(np.median([r.num_hvps for r in pp]))
        sd_r = float(np.median([r.samples.std(ddof=1) for r in pp]))
        rows.append(Row(
            "trace", f"P={P} N={batch[0].shape[0]} stderr<={se:.3g} ({n_probes} PyHessian probes)",
            n_probes / pp_hvps,
            "fewer HVPs than PyHessian's trace() for the same stderr (Hutch++ vs Hutchinson)",
            {"ours_hvps_median": pp_hvps, "ours_hvps": [r.num_hvps for r in pp],
             "pyhessian_hvps": n_probes,
             "time_ratio": t["pyhessian"] / (t["hutchpp"] / len(seeds)),
             "ours_s": t["hutchpp"] / len(seeds), "pyhessian_s": t["pyhessian"],
             "ours_stderr_max": max(r.stderr for r in pp),
             "ours_estimates": [round(r.estimate, 2) for r in pp], "pyhessian_estimate": est,
             "our_plain_hutchinson_hvps": [r.num_hvps for r in hu],
             "sketch_size": pp[0].sketch_size,
             "probe_sd_hutchinson": sd_h, "probe_sd_hutchpp_remainder": sd_r,
             "asymptotic_hvp_ratio": (sd_h / sd_r) ** 2}))
    return rows


# ------------------------------------------------- curvlinops: a maintained peer
#
# curvlinops-for-pytorch (3.x) gives the Hessian as a linear operator; λmax comes from
# SciPy's ARPACK Lanczos (``eigsh``) on ``to_scipy()``, the trace from its own Hutch++
# (``hutchpp_trace``). A benchmark-only dependency (the ``bench`` extra): this group is
# skipped, saying so, when it is not installed.

CURVLINOPS_MISSING = ("curvlinops-for-pytorch is not installed; it is a benchmark-only "
                      "dependency: pip install -c constraints.txt 'landscape_utils[bench]'")
TRACE_REL_ERRS = (0.05, 0.02)  # 0.05: chapter 2's trace_rel_tol in params/default.yaml
OUR_TRACE_TOLS = (0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03, 0.02, 0.015, 0.01, 0.007, 0.005, 0.003,
                  0.002, 0.001)
EIGSH_TOLS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7)
CURVLINOPS_TRACE_MATVECS = (15, 30, 45, 60, 90, 120, 150, 210, 300, 450, 600, 900, 1200, 1800)


def curvlinops_available() -> bool:
    """True when curvlinops imports (the ``bench`` extra is installed)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its torch.jit.script deprecation warnings
            importlib.import_module("curvlinops")
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=4)
def default_model(width: int = 16, epochs: int = 10, num_samples: int = 500,
                  train_samples: int | None = None):
    """The default's model (params/default.yaml, 01_training_grid): a SmallCNN with
    BatchNorm on half of MNIST-1D (2000 samples), SGD with lr 0.1, momentum 0.9 and
    weight decay 5e-4, here at batch 128 for ``epochs`` epochs (the Hessian's size and
    structure are the default's; the book trains longer), in eval mode; and chapter 2's
    fixed batch of ``num_samples`` training samples: (model, (x (N, 40), y (N,)))."""
    cfg = RunConfig(dataset="mnist1d", data_fraction=0.5, model="cnn", batch_norm=True,
                    width=width, lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=128,
                    num_epochs=epochs, seed=0)
    return _fit(cfg, cfg.load_data(), num_samples, train_samples)


class _Estimate:
    """What ``_calibrate`` reads: ``eigenvalues`` and the products used (``num_hvps``)."""

    def __init__(self, value: float, num_hvps: int):
        self.eigenvalues, self.num_hvps = [float(value)], int(num_hvps)


def _curvlinops_operator(model, batch):
    """curvlinops' Hessian of the mean cross-entropy on one batch, eval mode as set.
    ``check_deterministic=False``: its construction-time self-check (extra products and
    forward passes) is a debugging aid, not part of an estimate."""
    cl = importlib.import_module("curvlinops")
    params = [p for p in model.parameters() if p.requires_grad]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cl.HessianLinearOperator(model, CE, params, [batch], check_deterministic=False)


EIGSH_NCVS = (4, 6, 8)  # Lanczos basis sizes tried besides ARPACK's default (20 for k=1)


def _curvlinops_lmax(model, batch, tol, seed=0, ncv=None):
    """λmax by SciPy's ``eigsh`` (ARPACK, which="LA"; ``ncv=None``: its default) on
    curvlinops' operator, from a Rademacher start; counts the products."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    H = _curvlinops_operator(model, batch).to_scipy()
    count = [0]

    def matvec(v):
        count[0] += 1
        return H @ v

    op = LinearOperator(H.shape, matvec=matvec, dtype=H.dtype)
    v0 = np.random.default_rng(1000 + seed).choice([-1.0, 1.0], size=H.shape[0]).astype(H.dtype)
    val = eigsh(op, k=1, which="LA", tol=tol, v0=v0, ncv=ncv, maxiter=5000, return_eigenvectors=False)
    return _Estimate(val[0], count[0])


def _curvlinops_trace(model, batch, num_matvecs: int, seed: int = 0) -> float:
    """curvlinops' Hutch++ with ``num_matvecs`` products (its probes come from torch's
    global generator, seeded here and restored after)."""
    cl = importlib.import_module("curvlinops")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return float(cl.hutchpp_trace(_curvlinops_operator(model, batch), num_matvecs))


def full_hessian_by_rows(model: nn.Module, batch) -> torch.Tensor:
    """The (P, P) float64 loss Hessian in eval mode, one row per backward pass through the
    gradient's graph (plain autograd; independent of ``landscape_utils.metrics.hessian``). For the
    convolutional net this is much faster on the CPU than ``full_hessian``'s ``vmap``."""
    import copy

    m64 = copy.deepcopy(model).double().eval()
    params = [p for p in m64.parameters() if p.requires_grad]
    loss = CE(m64(batch[0].double()), batch[1])
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params, create_graph=True)])
    rows = [torch.cat([r.reshape(-1) for r in torch.autograd.grad(grad[i], params, retain_graph=True)])
            for i in range(grad.numel())]
    H = torch.stack(rows).detach()
    return (H + H.T) / 2  # symmetric up to rounding; eigvalsh reads one triangle


def _float64_reference(model, batch) -> tuple[float, float]:
    """λmax of a model too large for ``eigvalsh``: our float64 Lanczos to a residual of
    1e-10, and, as an independent check, curvlinops' float64 operator under ``eigsh`` at
    tol 1e-12. Returns (ours, relative difference of the two)."""
    import copy

    from scipy.sparse.linalg import eigsh

    ours = exact_lambda_max_lanczos(model, batch)
    m64 = copy.deepcopy(model).double()
    H = _curvlinops_operator(m64, (batch[0].double(), batch[1])).to_scipy()
    theirs = float(eigsh(H, k=1, which="LA", tol=1e-12, return_eigenvectors=False)[0])
    return ours, abs(ours - theirs) / abs(ours)


def curvlinops_cases(quick: bool):
    """(label, model factory, λmax reference, trace too?) on the default's model."""
    if quick:
        return [("cnn+bn w4", lambda: default_model(4, 1, 100, 256), "eigvalsh", True)]
    # width 8 (P=650): the full Hessian is cheap enough to give the exact trace; width 32
    # (P=7178): λmax against a float64 reference only
    return [("cnn+bn w8", lambda: default_model(8, 10, 500), "eigvalsh", True),
            ("cnn+bn w32", lambda: default_model(32, 10, 500), "float64", False)]


def curvlinops_peer(quick: bool = False, repeats: int = 3) -> list[Row]:
    """Ours (``landscape_utils.metrics.hessian``) against curvlinops, side by side, at equal accuracy.

    λmax: our Lanczos (``top_eigenvalues``) vs ``eigsh`` on curvlinops' operator (at the
    ARPACK basis size ncv that needs the fewest products; its default ncv as a detail),
    each at the loosest tolerance at which every one of several random starts lands within the
    relative error of the exact λmax (``eigvalsh`` of the full float64 Hessian, or a
    float64 reference both libraries agree on where it does not fit).

    Trace: our Hutch++ (``hessian.trace``, chapter 2's sketch of 10) at the loosest
    ``rel_tol``, and curvlinops' ``hutchpp_trace`` at the fewest products, at which every
    seed's estimate lands within the relative error of the exact trace (of the full
    float64 Hessian, so only on models where it fits).

    Three starts (seeds) per method; time: mean per estimate over the starts (including
    each side's operator set-up),
    median of ``repeats`` interleaved repeats. Ratio: curvlinops' time / ours. Returns no
    rows when curvlinops is not installed."""
    if not curvlinops_available():
        return []
    seeds = range(2) if quick else range(3)
    rows = []
    for label, make, how, with_trace in curvlinops_cases(quick):
        print(f"[bench] curvlinops: {label}: training, then the exact reference", flush=True)
        model, batch = make()
        P = sum(p.numel() for p in model.parameters())
        N = batch[0].shape[0]
        H = full_hessian_by_rows(model, batch) if how == "eigvalsh" else None
        if H is not None:
            exact, ref_check = float(torch.linalg.eigvalsh(H)[-1]), {}
        else:
            exact, diff = _float64_reference(model, batch)
            ref_check = {"reference_rel_diff_curvlinops64": diff}
        for rel_err in REL_ERRS[:1] if quick else REL_ERRS:
            ours_tol, ours = _calibrate(lambda t, s: _ours_lmax(model, batch, t, s), OUR_TOLS,
                                        seeds, exact, rel_err)
            # ARPACK as it comes (ncv 20), and with the ncv that needs the fewest products
            cl_tol, cl = _calibrate(lambda t, s: _curvlinops_lmax(model, batch, t, s),
                                    EIGSH_TOLS, seeds, exact, rel_err)
            tuned = []
            for ncv in EIGSH_NCVS:
                tol, res = _calibrate(lambda t, s, ncv=ncv: _curvlinops_lmax(model, batch, t, s, ncv),
                                      EIGSH_TOLS, seeds, exact, rel_err)
                tuned.append((float(np.median([r.num_hvps for r in res])), ncv, tol, res))
            tuned_hvps, ncv, tuned_tol, tuned_res = min(tuned, key=lambda x: x[:2])
            t = interleaved(
                {"ours": lambda: [_ours_lmax(model, batch, ours_tol, s) for s in seeds],
                 "tuned": lambda: [_curvlinops_lmax(model, batch, tuned_tol, s, ncv) for s in seeds],
                 "default": lambda: [_curvlinops_lmax(model, batch, cl_tol, s) for s in seeds]},
                repeats, warmup=0)
            ours_hvps = float(np.median([r.num_hvps for r in ours]))
            cl_hvps = float(np.median([r.num_hvps for r in cl]))
            rows.append(Row(
                "curvlinops", f"lambda_max {label} P={P} N={N} rel_err<={rel_err:g}",
                t["tuned"] / t["ours"], f"faster than curvlinops + SciPy eigsh at its best ncv={ncv} (time)",
                {"ours_s": t["ours"] / len(seeds), "curvlinops_s": t["tuned"] / len(seeds),
                 "ours_hvps_median": ours_hvps, "curvlinops_hvps_median": tuned_hvps,
                 "per_hvp_ratio": (t["tuned"] / tuned_hvps) / (t["ours"] / ours_hvps),
                 "vs_default_ncv": t["default"] / t["ours"], "default_ncv_hvps_median": cl_hvps,
                 "ours_tol": ours_tol, "curvlinops_tol": tuned_tol, "default_ncv_tol": cl_tol,
                 "starts": len(seeds), "exact": exact, "exact_by": how, **ref_check}))
        if not with_trace:
            continue
        exact_tr = float(torch.trace(H))
        matvec_options = [m for m in CURVLINOPS_TRACE_MATVECS if m < P]
        for rel_err in TRACE_REL_ERRS[:1] if quick else TRACE_REL_ERRS:
            within = lambda v: abs(v - exact_tr) <= rel_err * abs(exact_tr)  # noqa: E731
            ours_tol, ours = next(
                ((tol, rs) for tol in OUR_TRACE_TOLS
                 for rs in [[_ours_trace(model, batch, tol, "hutchpp", s, sketch_size=10) for s in seeds]]
                 if all(within(r.estimate) for r in rs)), (None, None))
            cl_m = next((m for m in matvec_options
                         if all(within(_curvlinops_trace(model, batch, m, s)) for s in seeds)), None)
            if ours_tol is None or cl_m is None:
                print(f"[bench] curvlinops trace {label} rel_err<={rel_err:g}: not reached by "
                      f"{'ours' if ours_tol is None else 'curvlinops'} within its options", flush=True)
                continue
            t = interleaved(
                {"ours": lambda: [_ours_trace(model, batch, ours_tol, "hutchpp", s, sketch_size=10)
                                  for s in seeds],
                 "curvlinops": lambda: [_curvlinops_trace(model, batch, cl_m, s) for s in seeds]},
                repeats, warmup=0)
            ours_hvps = float(np.median([r.num_hvps for r in ours]))
            rows.append(Row(
                "curvlinops", f"trace {label} P={P} N={N} rel_err<={rel_err:g}",
                t["curvlinops"] / t["ours"], "faster than curvlinops' hutchpp_trace (time)",
                {"ours_s": t["ours"] / len(seeds), "curvlinops_s": t["curvlinops"] / len(seeds),
                 "ours_hvps_median": ours_hvps, "ours_hvps": [r.num_hvps for r in ours],
                 "curvlinops_hvps": cl_m,
                 "per_hvp_ratio": (t["curvlinops"] / cl_m) / (t["ours"] / ours_hvps),
                 "ours_rel_tol": ours_tol, "starts": len(seeds), "exact": exact_tr}))
    return rows
