"""Low-loss simplicial complexes that connect a set of solutions.

Following the idea of Benton et al. 2021 ("loss surface simplexes"), n trained solutions
w₁…wₙ stay fixed and a few *connector* points are trained so that every point of a
complex built from them has low loss.

The complex used here is the **barycentric subdivision** of the simplex spanned by the
solutions. There is one connector per face of dimension >= 1 (an edge, a triangle, ...),
starting at that face's centroid, and one sub-simplex per ordering σ of the solutions,
with vertices [w_σ1, θ{σ1,σ2}, …, θ{σ1…σn}]. Untrained, the complex *is* the flat simplex
(convex hull) of the solutions; trained, the edge between wᵢ and wⱼ becomes the bent path
wᵢ → θ{i,j} → wⱼ, and the interior bends through the other connectors. With n = 2 it is
a one-bend polygonal path; with n = 3 a triangle cut into 6 sub-triangles around 3 edge
connectors and 1 central connector. A point of the big simplex with barycentric
coordinates λ maps to the complex piecewise linearly (:meth:`SimplicialComplex.point_at`),
so the loss over the complex can be drawn on the triangle of the three solutions.

Training (:func:`fit_complex`): per minibatch one sub-simplex is drawn uniformly and
convex weights c ~ Dirichlet(1, …, 1) over its vertices (together: a uniform point of
the big simplex); the connectors take an SGD step on
    CE(f(x; Σ cⱼ vⱼ)) + ½·wd·‖Σ cⱼ vⱼ‖² − λ·log V²(sub-simplex),
where V² is the squared volume from the Cayley–Menger determinant: the bonus keeps the
sub-simplices from collapsing. BatchNorm: the template runs in train mode while fitting;
every evaluated point gets its statistics recomputed over the training set
(:func:`connectivity.evaluate_path`).

Also here: a tunnel between two solutions (:func:`fit_tunnel`), and the accuracy and
diversity of ensembles (:func:`ensemble_metrics`).
"""
from __future__ import annotations

import copy
import itertools
import math
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from ..core.params import Params, flatten_params, matching_parameters
from ..core.utils import resolve_device
from .connectivity import evaluate_path, fit_by_sgd, recalibrate_bn
from .similarity import model_cka

# --------------------------------------------------------------------------- geometry
def cayley_menger_volume_sq(points: torch.Tensor) -> torch.Tensor:
    """Squared k-volume of the simplex with vertices ``points`` ((k+1) × D), in float64.

    Cayley–Menger: with B the (k+2) × (k+2) matrix [[0, 1ᵀ], [1, D²]] bordering the
    squared pairwise distances D², V² = (−1)^(k+1) det(B) / (2^k (k!)²). Differentiable;
    may come out slightly negative for a degenerate simplex (rounding).
    """
    X = torch.as_tensor(points).to(torch.float64)
    if X.dim() != 2 or X.shape[0] < 2:
        raise ValueError(f"points must be (k+1) x D with k >= 1, got shape {tuple(X.shape)}")
    k = X.shape[0] - 1
    return (-1) ** (k + 1) * torch.linalg.det(_cm_matrix(X)) / (2 ** k * math.factorial(k) ** 2)


def log_volume_sq(points: torch.Tensor) -> torch.Tensor:
    """log V² of the simplex with vertices ``points`` ((k+1) × D), via slogdet (stable).

    −inf when the Cayley–Menger determinant has the wrong sign or is 0 (degenerate).
    """
    X = torch.as_tensor(points).to(torch.float64)
    sign, logabs = torch.linalg.slogdet(_cm_matrix(X))
    k = X.shape[0] - 1
    expected = (-1) ** (k + 1)
    log_scale = k * math.log(2.0) + 2.0 * math.lgamma(k + 1)
    if float(sign.detach()) != expected:
        return torch.full((), -math.inf, dtype=torch.float64, device=X.device)
    return logabs - log_scale


def _cm_matrix(X: torch.Tensor) -> torch.Tensor:
    d2 = (X[:, None, :] - X[None, :, :]).pow(2).sum(-1)  # differences first: no cancellation
    ones = torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)
    top = torch.cat([torch.zeros(1, 1, dtype=X.dtype, device=X.device), ones.T], dim=1)
    return torch.cat([top, torch.cat([ones, d2], dim=1)], dim=0)  # [[0, 1ᵀ], [1, D²]]


def sample_dirichlet(k: int, size: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform points of the (k−1)-simplex, i.e. Dirichlet(1, …, 1), in float64.

    Normalized standard exponentials (−log U, U ~ U(0, 1]) are Dirichlet(1, …, 1).
    Returns shape (k,) or (size, k); every row is >= 0 and sums to 1.
    """
    shape = (k,) if size is None else (int(size), k)
    u = 1.0 - torch.rand(shape, generator=generator, dtype=torch.float64)  # in (0, 1]
    e = -torch.log(u)
    return e / e.sum(-1, keepdim=True)


def barycentric_grid(resolution: int, k: int = 3) -> np.ndarray:
    """All barycentric coordinates with denominator ``resolution`` on the (k−1)-simplex.

    Returns (num_points, k) float64, each row = (i₁, …, i_k)/resolution with Σ iⱼ =
    resolution; for k = 3 that is (r+1)(r+2)/2 points, the corners included.
    """
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    rows = [c for c in itertools.product(range(resolution + 1), repeat=k - 1) if sum(c) <= resolution]
    grid = np.array([(*c, resolution - sum(c)) for c in rows], dtype=np.float64) / resolution
    return grid


def triangle_xy(lam: np.ndarray) -> np.ndarray:
    """Barycentric (m, 3) → 2D points in the equilateral triangle (0,0), (1,0), (½, √3/2)."""
    lam = np.asarray(lam, dtype=np.float64)
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3.0) / 2.0]])
    return lam @ corners


# --------------------------------------------------------------------------- the complex
class SimplicialComplex:
    """Fixed solutions plus trainable connectors, and the simplices built from them.

    Vertices are numbered solutions first (0 … n−1), then connectors (n …). Each vertex is
    a {parameter name: tensor} dict over the trainable parameters. ``simplices`` lists
    vertex indices; ``faces`` maps a sorted tuple of solution indices (an edge, a
    triangle, …) to the vertex standing for it (a singleton maps to the solution itself),
    which is what :meth:`point_at` uses.
    """

    def __init__(self, solutions: Sequence[Mapping[str, torch.Tensor]], connectors: Sequence[Mapping[str, torch.Tensor]],
                 simplices: Sequence[Sequence[int]], faces: Mapping[tuple[int, ...], int] | None = None):
        if len(solutions) < 2:
            raise ValueError("a complex needs at least 2 solutions")
        names = list(solutions[0])
        for p in [*solutions, *connectors]:
            if list(p) != names or any(p[k].shape != solutions[0][k].shape for k in names):
                raise ValueError("all vertices must have the same parameter names and shapes")
        self.solutions: list[Params] = [{k: v.detach().clone() for k, v in s.items()} for s in solutions]
        self.connectors: list[Params] = [{k: v.detach().clone() for k, v in c.items()} for c in connectors]
        num = len(self.solutions) + len(self.connectors)
        for s in simplices:
            if not s or any(not 0 <= i < num for i in s):
                raise ValueError(f"simplex {tuple(s)} names a vertex outside 0..{num - 1}")
        self.simplices: list[tuple[int, ...]] = [tuple(int(i) for i in s) for s in simplices]
        self.faces: dict[tuple[int, ...], int] = dict(faces or {})
        self.history: list[dict[str, float]] = []

    @classmethod
    def barycentric_subdivision(cls, solutions: Sequence[Mapping[str, torch.Tensor]],
                                connectors: Mapping[tuple[int, ...], Mapping[str, torch.Tensor]] | None = None
                                ) -> "SimplicialComplex":
        """The subdivided simplex of ``solutions`` (see the module docstring).

        One connector per face of >= 2 solutions, at the face's centroid unless given in
        ``connectors`` ({sorted face tuple: point}); one sub-simplex per ordering of the
        solutions (n! of them). n = 2 … 5 is practical.
        """
        n = len(solutions)
        if not 2 <= n <= 6:
            raise ValueError(f"the subdivision has n! simplices: use 2 to 6 solutions, got {n}")
        given = dict(connectors or {})
        faces: dict[tuple[int, ...], int] = {(i,): i for i in range(n)}
        points = []
        for size in range(2, n + 1):
            for face in itertools.combinations(range(n), size):
                if face in given:
                    points.append(given[face])
                else:
                    points.append({k: sum(solutions[i][k] for i in face) / size for k in solutions[0]})
                faces[face] = n + len(points) - 1
        simplices = [tuple(faces[tuple(sorted(order[:k]))] for k in range(1, n + 1))
                     for order in itertools.permutations(range(n))]
        return cls(solutions, points, simplices, faces)

    # ---- vertices
    @property
    def num_solutions(self) -> int:
        return len(self.solutions)

    @property
    def vertices(self) -> list[Params]:
        return [*self.solutions, *self.connectors]

    @property
    def names(self) -> list[str]:
        return list(self.solutions[0])

    def parameters(self) -> list[torch.Tensor]:
        """The trainable tensors (the connectors), for an optimizer."""
        return [v for c in self.connectors for v in c.values()]

    def combination(self, indices: Sequence[int], coeffs: Sequence[float] | torch.Tensor) -> Params:
        """Σ cⱼ v_{indices[j]} as a parameter dict; differentiable in the connectors."""
        verts = self.vertices
        coeffs = [float(c) for c in coeffs]
        pairs = [(c, verts[i]) for c, i in zip(coeffs, indices) if c != 0.0]
        return {k: sum(c * v[k] for c, v in pairs) for k in self.names}

    def sample(self, generator: torch.Generator | None = None) -> tuple[int, torch.Tensor]:
        """One simplex index (uniform) and Dirichlet(1, …, 1) weights over its vertices."""
        s = int(torch.randint(len(self.simplices), (), generator=generator))
        return s, sample_dirichlet(len(self.simplices[s]), generator=generator)

    def point_at(self, lam: Sequence[float]) -> Params:
        """The point of the complex at barycentric coordinates ``lam`` (n,) of the solutions.

        For a barycentric subdivision: order the coordinates λ_σ1 >= … >= λ_σn; the point
        lies in the sub-simplex of σ with weights μ_k = k·(λ_σk − λ_σ(k+1)) (λ_σ(n+1) = 0)
        on the vertices of the faces {σ1…σk}. Exact for the untrained complex: Σ λᵢ wᵢ.
        """
        lam = np.asarray(lam, dtype=np.float64)
        n = self.num_solutions
        if lam.shape != (n,) or np.any(lam < -1e-12) or abs(lam.sum() - 1.0) > 1e-9:
            raise ValueError(f"lam must be {n} barycentric coordinates (>= 0, summing to 1), got {lam}")
        if not self.faces:
            raise ValueError("point_at needs a complex with faces (barycentric_subdivision)")
        order = sorted(range(n), key=lambda i: (-lam[i], i))
        ls = np.append(lam[order], 0.0)
        mu = [(k + 1) * (ls[k] - ls[k + 1]) for k in range(n)]
        verts = [self.faces[tuple(sorted(order[:k + 1]))] for k in range(n)]
        return self.combination(verts, mu)

    def edge_path(self, i: int, j: int) -> Callable[[float], Params]:
        """t ↦ the point of the complex on the edge from solution i (t = 0) to j (t = 1)."""
        n = self.num_solutions

        def path(t: float) -> Params:
            lam = np.zeros(n)
            lam[i], lam[j] = 1.0 - t, t
            return self.point_at(lam)
        return path

    def sample_points(self, num: int, generator: torch.Generator | None = None) -> list[Params]:
        """``num`` uniform points of the complex (uniform over the big simplex), detached."""
        lams = sample_dirichlet(self.num_solutions, num, generator).numpy()
        with torch.no_grad():
            return [{k: v.detach().clone() for k, v in self.point_at(lam).items()} for lam in lams]

    def log_volumes_sq(self) -> torch.Tensor:
        """log V² of every simplex of dimension >= 1 (in ``simplices`` order), float64."""
        flats = [flatten_params(v) for v in self.vertices]
        return torch.stack([log_volume_sq(torch.stack([flats[i] for i in s])) for s in self.simplices])

    def state_dict(self) -> dict:
        return {"solutions": self.solutions, "connectors": self.connectors, "simplices": self.simplices,
                "faces": {",".join(map(str, k)): v for k, v in self.faces.items()}, "history": self.history}

    @classmethod
    def from_state_dict(cls, state: Mapping) -> "SimplicialComplex":
        faces = {tuple(int(i) for i in k.split(",")): int(v) for k, v in state["faces"].items()}
        cx = cls(state["solutions"], state["connectors"], state["simplices"], faces)
        cx.history = list(state.get("history", []))
        return cx


def complex_from_models(models: Sequence[nn.Module], device: str | torch.device | None = None) -> SimplicialComplex:
    """The barycentric subdivision of the trainable parameters of ``models``."""
    ref = models[0]
    params = [matching_parameters(ref, m)[1] for m in models]
    if device is not None:
        device = resolve_device(device)
        params = [{k: v.detach().to(device) for k, v in p.items()} for p in params]
    return SimplicialComplex.barycentric_subdivision(params)


# --------------------------------------------------------------------------- fitting
def fit_complex(template: nn.Module, cx: SimplicialComplex, x_train: torch.Tensor, y_train: torch.Tensor,
                num_epochs: int = 10, lr: float = 0.01, batch_size: int = 128, momentum: float = 0.9,
                weight_decay: float = 5e-4, volume_weight: float = 1e-3, seed: int = 0,
                device: str | torch.device = "auto") -> SimplicialComplex:
    """Train the connectors of ``cx`` in place so that the whole complex has low loss.

    Per minibatch (shuffled, the last incomplete one dropped): a sub-simplex and weights
    c ~ Dirichlet(1, …, 1) (:meth:`SimplicialComplex.sample`), then one SGD step (optimizer
    weight decay 0) on CE(f(x; Σ cⱼ vⱼ)) + ½·weight_decay·‖Σ cⱼ vⱼ‖² −
    volume_weight·log V²(sub-simplex). The lr factor follows
    :func:`connectivity.bezier_lr_factor`. The network is run with
    ``torch.func.functional_call`` on a copy of ``template`` in train mode (BatchNorm
    uses minibatch statistics; recompute them at evaluation). ``seed`` fixes data order
    and draws. ``cx.history`` gets per epoch the mean CE, the mean log V² and the lr.
    Returns ``cx``.
    """
    device = resolve_device(device)
    for verts in (cx.solutions, cx.connectors):
        for p in verts:
            for k in p:
                p[k] = p[k].detach().to(device)
    model = copy.deepcopy(template).to(device).train()
    tensors = cx.parameters()
    for v in tensors:
        v.requires_grad_(True)
    fixed_flats = [flatten_params(s).to(torch.float64) for s in cx.solutions]

    def objective(xb: torch.Tensor, yb: torch.Tensor, drawn: tuple[int, torch.Tensor]):
        s, c = drawn
        point = cx.combination(cx.simplices[s], c)
        ce = F.cross_entropy(functional_call(model, point, (xb,)), yb)
        value = ce
        if weight_decay:
            value = value + 0.5 * weight_decay * sum(p.pow(2).sum() for p in point.values())
        logv = torch.zeros((), dtype=torch.float64)
        if volume_weight and len(cx.simplices[s]) > 1:
            flats = [fixed_flats[i] if i < cx.num_solutions
                     else flatten_params(cx.connectors[i - cx.num_solutions]).to(torch.float64)
                     for i in cx.simplices[s]]
            logv = log_volume_sq(torch.stack(flats))
            if torch.isfinite(logv):
                value = value - volume_weight * logv.to(ce.dtype)
        return value, {"loss": ce, "log_volume_sq": logv}

    cx.history += fit_by_sgd(tensors, objective, x_train, y_train, num_epochs=num_epochs, lr=lr,
                             batch_size=batch_size, momentum=momentum, seed=seed, device=device, draw=cx.sample)
    for v in tensors:
        v.requires_grad_(False)
    return cx


def evaluate_grid(template: nn.Module, cx: SimplicialComplex, resolution: int, x_train: torch.Tensor,
                  y_train: torch.Tensor, x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None,
                  batch_size: int = 1024, device: str | torch.device = "auto") -> pd.DataFrame:
    """Loss and error over a barycentric grid of the complex (BN recalibrated at each point).

    Returns a tidy table, one row per grid point: l1 … ln (barycentric coordinates of the
    solutions), for n = 3 also x, y (:func:`triangle_xy`), then train_loss, train_err (%),
    test_loss, test_err.
    """
    n = cx.num_solutions
    lams = barycentric_grid(resolution, n)
    with torch.no_grad():
        points = [cx.point_at(lam) for lam in lams]
    prof = evaluate_path(template, lambda t: points[int(round(t))], list(range(len(points))), x_train, y_train,
                         x_test, y_test, batch_size=batch_size, device=device)
    out = pd.DataFrame(lams, columns=[f"l{i + 1}" for i in range(n)])
    if n == 3:
        xy = triangle_xy(lams)
        out["x"], out["y"] = xy[:, 0], xy[:, 1]
    for col in ("train_loss", "train_err", "test_loss", "test_err"):
        out[col] = prof[col].to_numpy()
    return out


def edge_profiles(template: nn.Module, cx: SimplicialComplex, ts: Sequence[float] | int, x_train: torch.Tensor,
                  y_train: torch.Tensor, batch_size: int = 1024, device: str | torch.device = "auto") -> pd.DataFrame:
    """Train loss and error along every edge wᵢ → θ{i,j} → wⱼ of the complex.

    Returns columns i, j, t, train_loss, train_err (BN recalibrated at every t).
    """
    frames = []
    for i, j in itertools.combinations(range(cx.num_solutions), 2):
        prof = evaluate_path(template, cx.edge_path(i, j), ts, x_train, y_train, batch_size=batch_size,
                             device=device)
        frames.append(pd.DataFrame({"i": i, "j": j, "t": prof["t"], "train_loss": prof["train_loss"],
                                    "train_err": prof["train_err"]}))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- tunnel
def fit_tunnel(model_a: nn.Module, model_b: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
               num_epochs: int = 5, lr: float = 0.01, batch_size: int = 128, momentum: float = 0.9,
               weight_decay: float = 5e-4, seed: int = 0, device: str | torch.device = "auto"
               ) -> tuple[Params, list[dict[str, float]]]:
    """A low-loss point on the hyperplane half-way between two solutions.

    θ starts at (w₁ + w₂)/2 and descends CE(f(x; θ)) + ½·weight_decay·‖θ‖² by SGD with
    momentum, with every gradient projected orthogonal to u = (w₂ − w₁)/‖w₂ − w₁‖, so θ
    stays equidistant from both solutions. The model runs in train mode
    (``functional_call`` on a copy of ``model_a``); ``seed`` fixes the data order.

    Returns:
        ``(theta, history)``: θ as a parameter dict (detached, on ``device``) and per
        epoch the mean CE, lr and the distance of θ from the midpoint. Pass θ as the
        connector of a 2-solution complex to evaluate w₁ → θ → w₂.
    """
    device = resolve_device(device)
    pa, pb = matching_parameters(model_a, model_b)
    pa = {k: v.detach().to(device) for k, v in pa.items()}
    pb = {k: v.detach().to(device) for k, v in pb.items()}
    mid = {k: 0.5 * (pa[k] + pb[k]) for k in pa}
    diff = {k: pb[k] - pa[k] for k in pa}
    dnorm = math.sqrt(sum(float(v.double().pow(2).sum()) for v in diff.values()))
    u = {k: v / dnorm for k, v in diff.items()}
    theta = {k: v.clone().requires_grad_(True) for k, v in mid.items()}
    model = copy.deepcopy(model_a).to(device).train()

    def objective(xb: torch.Tensor, yb: torch.Tensor, _drawn: None):
        ce = F.cross_entropy(functional_call(model, theta, (xb,)), yb)
        return ce + 0.5 * weight_decay * sum(p.pow(2).sum() for p in theta.values()), {"loss": ce}

    @torch.no_grad()
    def project() -> None:  # the gradient's component along u is removed
        along = sum(float((theta[k].grad.double() * u[k].double()).sum()) for k in theta)
        for k in theta:
            theta[k].grad -= along * u[k]

    @torch.no_grad()
    def end_epoch() -> dict[str, float]:
        # Remove rounding drift along u (the projected steps keep it at ~1e-7).
        drift = sum(float(((theta[k] - mid[k]).double() * u[k].double()).sum()) for k in theta)
        for k in theta:
            theta[k] -= drift * u[k]
        moved = math.sqrt(sum(float((theta[k] - mid[k]).double().pow(2).sum()) for k in theta))
        return {"distance_from_midpoint": moved}

    history = fit_by_sgd(list(theta.values()), objective, x_train, y_train, num_epochs=num_epochs, lr=lr,
                         batch_size=batch_size, momentum=momentum, seed=seed, device=device, lr_factor=None,
                         project=project, end_epoch=end_epoch)
    return {k: v.detach() for k, v in theta.items()}, history


# --------------------------------------------------------------------------- ensembles
@torch.no_grad()
def models_at(template: nn.Module, points: Sequence[Mapping[str, torch.Tensor]], x_train: torch.Tensor,
              batch_size: int = 1024, device: str | torch.device = "auto") -> list[nn.Module]:
    """One eval-mode copy of ``template`` per point, with BN recalibrated on ``x_train``."""
    device = resolve_device(device)
    out = []
    has_bn = any(isinstance(m, _BatchNorm) and m.track_running_stats for m in template.modules())
    for p in points:
        m = copy.deepcopy(template).to(device)
        params = dict(m.named_parameters())
        for k, v in p.items():
            params[k].copy_(v)
        if has_bn:
            recalibrate_bn(m, x_train.to(device), batch_size)
        out.append(m.eval())
    return out


@torch.no_grad()
def _probabilities(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    was = model.training
    model.eval()
    probs = torch.cat([F.softmax(model(xb).double(), dim=1) for xb in torch.split(x, batch_size)])
    model.train(was)
    return probs


def ensemble_metrics(models: Sequence[nn.Module], x_test: torch.Tensor, y_test: torch.Tensor,
                     x_cka: torch.Tensor | None = None, cka_kwargs: Mapping | None = None,
                     batch_size: int = 1024) -> dict[str, float]:
    """Accuracy and diversity of an ensemble (all models in eval mode).

    Returns:
        n_members; member_acc (mean test accuracy of the members) and member_acc_std;
        ensemble_acc (argmax of the mean softmax); ensemble_gain = ensemble_acc −
        member_acc; disagreement (mean over member pairs of the fraction of test inputs
        whose predicted labels differ); cka (mean pairwise :func:`similarity.model_cka`
        on ``x_cka`` with ``cka_kwargs``; nan without ``x_cka``).
    """
    if len(models) < 2:
        raise ValueError("an ensemble needs at least 2 members")
    device = next(models[0].parameters()).device
    x_test, y_test = x_test.to(device), y_test.to(device)
    probs = [_probabilities(m, x_test, batch_size) for m in models]
    preds = [p.argmax(1) for p in probs]
    accs = np.array([float((p == y_test).double().mean()) for p in preds])
    ens = float((torch.stack(probs).mean(0).argmax(1) == y_test).double().mean())
    pairs = list(itertools.combinations(range(len(models)), 2))
    disagreement = float(np.mean([float((preds[i] != preds[j]).double().mean()) for i, j in pairs]))
    cka = float("nan")
    if x_cka is not None:
        cka = float(np.nanmean([model_cka(models[i], models[j], x_cka, device=device, **dict(cka_kwargs or {}))
                                for i, j in pairs]))
    return {"n_members": len(models), "member_acc": float(accs.mean()),
            "member_acc_std": float(accs.std(ddof=1)), "ensemble_acc": ens,
            "ensemble_gain": ens - float(accs.mean()), "disagreement": disagreement, "cka": cka}
