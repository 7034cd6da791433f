# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: landscape-book (.venv)
#     language: python
#     name: landscape-book
#   language_info:
#     codemirror_mode:
#       name: ipython
#       version: 3
#     file_extension: .py
#     mimetype: text/x-python
#     name: python
#     nbconvert_exporter: python
#     pygments_lexer: ipython3
# ---

# %% [markdown]
# (methods-appendix)=
# # 7. Methods
#
# This appendix defines every quantity the book measures and every procedure that produces
# one, as `landscape_utils` implements it. Each section carries a label of the form
# `methods-…` so that chapters, docstrings and comments can point at it. A setting is
# named here by the chapter parameter that sets it (in `code`); the table below lists each
# with its chapter, the package's default and the chapter's default, read from the code.
# A params file sets the values a build uses, and the executed chapters print them. Nothing
# on this page depends on a build: it describes how numbers are made, never what they came
# out as.

# %% tags=["parameters", "remove-cell"]
# This chapter only states methods and runs nothing; the driver gives every chapter these two.
device: str = "auto"              # unused here
workdir: str = "../build/work/lab"  # unused here

# %% tags=["hide-input"]
import dataclasses

import pandas as pd

from landscape_utils.book.chapters import BOOK_DIR, chapter_parameters
from landscape_utils.core.train import RunConfig
from landscape_utils.experiments.global_metrics import GlobalSettings, MLISettings
from landscape_utils.experiments.large_scale import WedgeSettings
from landscape_utils.experiments.local import DensitySettings, HessianSettings
from landscape_utils.experiments.taxonomy import PhaseThresholds

# (chapter, settings class, prefix of its parameters): each chapter builds these with
# from_params (chapter 1 builds RunConfig with grid_from_params, by the same names)
SETTINGS = [("01_training_grid", RunConfig, ""), ("02_local_metrics", HessianSettings, ""),
            ("02_local_metrics", DensitySettings, ""), ("03_global_connectivity", GlobalSettings, ""),
            ("03_global_connectivity", MLISettings, "mli_"), ("04_taxonomy", PhaseThresholds, ""),
            ("06_large_scale_structure", WedgeSettings, "")]
rows = []
for stem, cls, prefix in SETTINGS:
    declared = chapter_parameters(BOOK_DIR / f"{stem}.py")
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        param = declared.get(prefix + f.name)
        rows.append({"chapter": stem[:2], "parameter": param.name if param else "(none)",
                     "setting": f"{cls.__name__}.{f.name}", "package default": repr(default),
                     "chapter default": repr(param.default) if param else ""})
pd.DataFrame(rows).set_index(["chapter", "parameter"])

# %% [markdown]
# (methods-notation)=
# ## Notation and conventions
#
# - A **run** is one trained network: one configuration and one seed. A **cell** is one
#   point of the load × temperature grid; it holds several runs that differ only in their
#   seed (initialization and data order) and share one training set.
# - $\theta \in \mathbb R^P$ is the vector of a network's **trainable** parameters
#   (`requires_grad`), flattened in the order of `model.named_parameters()`. BatchNorm
#   running statistics are buffers, not parameters: they are never part of $\theta$, never
#   interpolated, and never differentiated.
# - The **loss** $\mathcal L(\theta)$ is the mean cross-entropy in nats over a stated set
#   of examples; the **error** is the 0-1 error. Accuracies are fractions in $[0, 1]$; the
#   error that enters mode connectivity is in **percent**.
# - Unless a section says otherwise, a network is **evaluated in eval mode** (BatchNorm with
#   its running statistics, dropout off) over the **whole** split, in fixed batches; the
#   evaluation batch size never changes a number.
# - The training split is the one the run was trained on, after its load knobs
#   ({ref}`the load knobs <methods-axes>`): the subset of the data, with its noisy labels.
# - A per-cell value is a mean over the cell's runs (per-run metrics) or over its seed pairs
#   (pairwise metrics); its spread is the sample standard deviation ($\mathrm{ddof}=1$), not
#   defined for a single run or pair. Diverged runs are left out of both and counted.

# %% [markdown]
# (methods-training)=
# ## Training a run
#
# Every run is trained by minibatch SGD with heavy-ball momentum $\mu$ and L2 weight decay
# $\lambda$ folded into the gradient. With $g_s$ the gradient of the mean cross-entropy on
# minibatch $s$ and $\eta_e$ the learning rate of the current epoch $e$,
#
# $$ b_{s+1} = \mu\, b_s + g_s + \lambda\, \theta_s, \qquad \theta_{s+1} = \theta_s - \eta_e\, b_{s+1}, \qquad b_0 = 0 . $$
#
# - **Learning-rate schedule**, with base rate $\eta$, $E$ epochs and epochs counted from 0:
#   `constant` keeps $\eta_e = \eta$; `step` multiplies $\eta$ by a factor $\gamma$
#   (`decay_factor`) from epoch $\mathrm{round}(f E)$ on ($f$: `decay_at`; the paper's
#   100-epoch runs have $\gamma = 0.1$ at epoch 75); `cosine` uses $\eta_e = \tfrac{\eta}{2}\big(1 + \cos(\pi e / E)\big)$.
# - **Minibatches.** Each epoch draws a fresh permutation of the training set from the
#   run's own generator (seeded by a fixed function of the run's seed) and cuts it into
#   batches of size $B$; the last, incomplete batch is dropped. The initialization is seeded
#   by the run's seed.
# - **Early stopping** (optional, the paper's rule for its "standard" setting): stop once
#   the epoch's running training loss has changed by less than $10^{-4}$ from the previous
#   epoch on five epochs in a row, or at the epoch budget.
# - **Divergence.** A non-finite epoch loss, or a non-finite final evaluation, stops the run
#   and marks it `diverged`; its metrics are missing, not zero.
# - **Final metrics**: train and test loss and accuracy in eval mode over the whole splits.
# - **Precision.** By default every step runs in float32. On a GPU a run may train with
#   TensorFloat-32 matrix products or with the forward pass under bfloat16 autocast; the
#   parameters, the optimizer state and the checkpoints stay float32, and the final
#   evaluation and every later measurement run in float32.
# - **Seed populations.** For the book's models (MLP, small CNN, ResNet18), the seeds
#   of one cell are trained together as one stacked model whose loss is the sum of the
#   members' losses; when the temperature axis is the learning rate or the weight decay,
#   the cells that differ only in it join the same stack (within a memory and a per-step
#   size budget), each member with its own learning rate and weight decay. Because the
#   members share no parameters and SGD, momentum and weight decay act elementwise, each
#   member receives exactly its own update: the result equals separate training up to
#   floating-point summation order.
#
# (methods-paper-grid)=
# ### The paper's grid
#
# Yang et al. (2021) trained ResNet18 of width $k$ (stages of $k, k, 2k, 4k, 8k$
# channels; $k = 64$ is the usual ResNet18) on CIFAR-10 for widths
# 1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128 and batch sizes
# 16, 24, 32, 44, 64, 92, 128, 180, 256, 364, 512, 724, 1024, with five runs per cell. Their
# optimizer was SGD with momentum 0.9, learning rate 0.1 decayed tenfold at epoch 75 of 100
# and weight decay $5 \times 10^{-4}$; the inputs were only converted to tensors and
# normalized per channel (no augmentation), and the last incomplete batch was dropped. The
# params file `params/paper_cifar10.yaml` reproduces this protocol, with seeds that the
# authors did not set. The authors released the resulting per-run metrics; chapter 4 reads
# them without re-training.

# %% [markdown]
# (methods-axes)=
# ## The load and temperature axes
#
# Each grid varies one **load-like** knob against one **temperature-like** knob; the package
# keeps one table of the known axes, with the kind of each and which end is which.
#
# - **Temperature** sets how noisy the optimizer is. The noise that SGD adds to the gradient
#   flow grows with the learning rate and shrinks with the batch size (its scale goes roughly
#   as $\eta / B$), so a **smaller batch** or a **larger learning rate** is **hotter**. A
#   larger weight decay (stronger regularization) and a larger momentum (an effective step
#   $\eta / (1 - \mu)$) count as hotter too, and in the one-dimensional model of
#   {ref}`rugged convexity <methods-rugged>` the temperature is $T$ itself.
# - **Load** sets how much the network has to fit relative to what it can fit, and a load
#   axis is ordered by **capacity per sample**. A larger width (hidden units or channels) or
#   depth gives more capacity. A smaller fraction of the training set (a seeded random subset
#   of $\mathrm{round}(f\,n)$ examples) leaves fewer samples to fit, so more capacity per
#   sample. Label noise removes capacity per sample: each training label is replaced, with
#   probability $p$, by a class drawn uniformly among the *other* classes, and those labels
#   can only be memorized (test labels are never touched). The subset and the noise are
#   seeded by the data seed, which all runs of a cell share, so the seeds of a cell see one
#   training set.
# - **Phase diagrams** put the load on the x axis, one column per value, from the least
#   capacity per sample on the left to the most on the right (so phase I, where it exists,
#   sits on the left as in the paper's figure), and the temperature on the y axis, one row per
#   value, hottest on top: the smallest batch, or the largest learning rate.

# %% [markdown]
# (methods-hessian)=
# ## The Hessian and its products
#
# The local metrics describe the Hessian
#
# $$ H = \nabla^2_\theta\, \mathcal L(\theta;\, \mathcal B) \in \mathbb R^{P \times P} $$
#
# of the mean cross-entropy on one **fixed batch** $\mathcal B$ of training examples,
# drawn without replacement by a seeded generator (`num_samples` examples; with a shared
# seed every run that shares a training set sees the same batch). The network is in **eval
# mode**, so BatchNorm normalizes with its stored running statistics and $H$ is the
# curvature of the function the model actually computes at test time. Parameters the loss
# does not depend on contribute zero rows and columns. When the data come as several
# batches $\mathcal B_b$ of sizes $n_b$, the operator is the exact weighted average
# $H = \sum_b n_b H_b / \sum_b n_b$.
#
# $H$ is never formed. Every method below uses only **Hessian-vector products**, computed by
# differentiating the directional derivative of the gradient (Pearlmutter 1994):
#
# $$ H v = \nabla_\theta \big\langle \nabla_\theta \mathcal L(\theta),\, v \big\rangle . $$
#
# Two implementations give the same numbers. *Double backward through a kept graph*: the
# gradient is computed once with its graph retained, and each product differentiates
# $\langle g, v\rangle$ through that graph; this is the fast path on a CPU for one batch.
# *Forward-over-reverse*: the Jacobian-vector product of the gradient function,
# recomputing forward and backward passes for every product; it keeps no graph and is used
# for several batches. Tests compare both with the exact Hessian of small networks built in
# float64.
#
# (methods-lanczos)=
# ### Top eigenvalues: Lanczos
#
# $\lambda_{\max}$ is the largest eigenvalue of $H$, found by the Lanczos iteration with
# full reorthogonalization. Starting from a normalized Rademacher vector $q_1$ (entries
# $\pm 1$), step $j$ computes
#
# $$ \begin{aligned} \alpha_j &= q_j^\top H q_j, & r_j &= H q_j - \alpha_j q_j - \beta_{j-1} q_{j-1}, \\
#    \beta_j &= \lVert r_j \rVert, & q_{j+1} &= r_j / \beta_j , \end{aligned} $$
#
# where $r_j$ is, before its norm is taken, orthogonalized against **all** previous $q_i$
# (classical Gram-Schmidt, applied twice). This keeps the basis orthonormal in floating
# point, so no eigenvalue shows up twice as a spurious copy. After $j$ steps the
# tridiagonal matrix $T_j$ (diagonal $\alpha$, off-diagonal $\beta$) has eigenpairs
# $T_j s_i = \vartheta_i s_i$; the Ritz values $\vartheta_i$ approximate eigenvalues of $H$,
# and the residual of the Ritz vector $y_i = Q_j s_i$ is available for free:
#
# $$ \lVert H y_i - \vartheta_i y_i \rVert = \beta_j\, \lvert s_{j,i} \rvert \quad (\text{the last component of } s_i). $$
#
# **Stopping rule.** Once there are at least $k$ Ritz values, the iteration stops as soon
# as one of these holds:
#
# - every one of the $k$ largest Ritz pairs has a small residual,
#   $\beta_j \lvert s_{j,i}\rvert \le \tau \max_i \lvert\vartheta_i\rvert$;
# - every one of the $k$ largest Ritz values has changed by at most $\tau \lvert\vartheta_i\rvert$
#   on each of two successive steps;
# - a breakdown: $\beta_j$ falls below $100\,\epsilon_{\text{mach}}$ times the largest entry
#   of $T_j$ seen (an invariant subspace has been found, and its Ritz values are exact
#   eigenvalues).
#
# The tolerance $\tau$ is `tol`, with at most `max_iter` products; a run that exhausts them is
# flagged as not converged. Lanczos returns the largest **algebraic** eigenvalues (the most
# positive), not those of largest magnitude, which matters for an indefinite Hessian.
# Power iteration, the method of PyHessian and of the paper's code, is kept for comparison:
# $\lambda \leftarrow v^\top H v$ with $v \leftarrow Hv / \lVert Hv\rVert$, stopped when
# $\lvert\Delta\lambda\rvert / (\lvert\lambda\rvert + 10^{-6})$ falls below its tolerance; it
# converges to the eigenvalue of largest magnitude and slowly when the top two are close.
#
# (methods-trace)=
# ### Trace: Hutchinson and Hutch++
#
# For a random vector $v$ with independent Rademacher entries, $\mathbb E[v^\top H v] =
# \operatorname{tr} H$ (Hutchinson 1990; Avron and Toledo 2011). With $z_i = v_i^\top H v_i$
# for $n$ independent probes,
#
# $$ \widehat{\operatorname{tr}}_n = \frac1n \sum_{i=1}^n z_i, \qquad
#    \mathrm{se}_n = \frac{s_n}{\sqrt n}, \qquad s_n^2 = \frac1{n-1} \sum_{i=1}^n \big(z_i - \widehat{\operatorname{tr}}_n\big)^2 . $$
#
# The estimate is reported with its **standard error** $\mathrm{se}_n$. **Stopping rule:**
# after at least $n_{\min}$ probes (`min_probes`), stop as soon as
# $\mathrm{se}_n \le \rho\, \lvert \widehat{\operatorname{tr}}_n \rvert$ ($\rho$: `rel_tol`),
# and at $n_{\max}$ probes at the latest (`max_probes`). The rule is on the *relative
# standard error*, never on how much the running mean moved between probes: a mean that
# happens to move little is not a precise one.
#
# **Hutch++** (Meyer, Musco, Musco and Woodruff 2021) removes the part of the spectrum that
# dominates the variance before sampling. A Rademacher sketch $S \in \mathbb R^{P \times s}$
# ($s$: `sketch_size`) gives $Y = HS$ and an orthonormal basis $Q$ of its columns (QR). Then
#
# $$ \operatorname{tr} H = \operatorname{tr}\big(Q^\top H Q\big) + \operatorname{tr}\big((I - QQ^\top) H (I - QQ^\top)\big) , $$
#
# the first term is computed exactly with $s$ more products, and the second by the same
# Hutchinson loop on probes projected as $v \leftarrow (I - QQ^\top) v$. The reported
# standard error is that of the Hutchinson part (the exact part is fixed once $Q$ is
# drawn); the stopping rule compares it with the full estimate, and $n_{\min}, n_{\max}$
# count the remainder probes. The cost is $2s$ products up front; it pays when a few outlying
# eigenvalues carry most of $\lVert H \rVert_F$, as in trained networks, because the
# Hutchinson variance is $2\big(\lVert A\rVert_F^2 - \sum_i A_{ii}^2\big)$ for the matrix
# $A$ it is applied to.
#
# (methods-slq)=
# ### Spectral density: stochastic Lanczos quadrature
#
# The eigenvalue density $\phi(\lambda) = \frac1P \sum_{i=1}^P \delta(\lambda - \lambda_i)$
# is estimated by stochastic Lanczos quadrature (Golub and Meurant; Ghorbani, Krishnan and
# Xiao 2019). One run performs $m$ Lanczos steps with full reorthogonalization ($m$:
# `num_steps`, at most $P$) from a normalized Rademacher vector $q_1$ and diagonalizes
# $T_m = U \operatorname{diag}(\vartheta) U^\top$. The **nodes** are the Ritz values
# $\vartheta_\ell$ and the **weights** $\tau_\ell = U_{1\ell}^2$ (they sum to 1), so that
#
# $$ \sum_{\ell=1}^m \tau_\ell\, \vartheta_\ell^{\,p} = q_1^\top H^p q_1 \quad (p \le 2m - 1), \qquad
#    \mathbb E\big[q_1^\top H^p q_1\big] = \tfrac1P \operatorname{tr} H^p . $$
#
# The density averages $R$ runs (`num_runs`) and smooths every node with a Gaussian:
#
# $$ \hat\phi(\lambda) = \frac1R \sum_{r=1}^R \sum_{\ell=1}^m \tau^{(r)}_\ell\,
#    \frac{1}{\sqrt{2\pi\sigma^2}} \exp\!\Big(-\frac{(\lambda - \vartheta^{(r)}_\ell)^2}{2\sigma^2}\Big) , $$
#
# with the variance $\sigma^2 = 10^{-5} \max\big(1,\ \vartheta_{\max} - \vartheta_{\min}\big)$
# set by the range of all nodes unless given. The density is evaluated on an even grid that spans the nodes with a margin, renormalized to unit area,
# and stored as bin averages of a finer grid so that narrow peaks keep their mass.

# %% [markdown]
# (methods-mc)=
# ## Mode connectivity: mc and $t^*$
#
# Given two runs $w_1, w_2$ of one cell and a path $\gamma(t)$ between them with
# $\gamma(0) = w_1$ and $\gamma(1) = w_2$, let $L(t)$ be the **training 0-1 error in
# percent** of the network at $\gamma(t)$, evaluated in eval mode over the whole training
# split after BatchNorm recalibration ({ref}`BatchNorm recalibration <methods-bn>`). On the evaluated points
# $0 = t_0 < t_1 < \dots < t_{T-1} = 1$ (evenly spaced, $T$: `num_points`), Yang et al.
# define
#
# $$ \begin{aligned} t^* &= \arg\max_{t \in \{t_0, \dots, t_{T-1}\}} \Big\lvert \tfrac12\big(L(0) + L(1)\big) - L(t) \Big\rvert , \\
#    \mathrm{mc} &= \tfrac12\big(L(0) + L(1)\big) - L(t^*) . \end{aligned} $$
#
# The endpoints take part in the arg max, and the first maximizer wins a tie.
#
# - $\mathrm{mc} < 0$: some point of the path is worse than the endpoints' average, a
#   **barrier**; the two solutions are poorly connected.
# - $\mathrm{mc} \approx 0$: the error stays at the endpoints' level, the solutions are
#   **well connected**.
# - $\mathrm{mc} > 0$: the path is *better* than its endpoints, which therefore had not
#   converged.
#
# Because the endpoints are candidates, $\lvert \mathrm{mc} \rvert \ge \tfrac12 \lvert L(0) -
# L(1)\rvert$: two runs with different training errors never get an mc of exactly zero. mc is
# in percentage points of training error, so a pair whose endpoints and path all fit the
# training set exactly has $\mathrm{mc} = 0$ whatever the loss does in between. The path for
# mc is the fitted Bezier curve ({ref}`Bezier curves <methods-bezier>`); a cell's mc is the mean over its seed
# pairs ({ref}`from pairs to cells <methods-pairs>`).
#
# (methods-linear-barrier)=
# ### The linear barrier
#
# The **linear barrier** `linear_mc` is the same formula on the straight segment
# $\gamma(\alpha) = (1 - \alpha) w_1 + \alpha w_2$ (Frankle et al. 2020), with nothing fitted,
# the same grid of $\alpha$, and BatchNorm recalibrated at every $\alpha$. Comparing it with the
# curve's mc separates solutions joined by a straight valley from solutions joined only by
# a bent one.
#
# For weight matching ({ref}`weight matching <methods-weight-matching>`) the package also reports the **loss
# barrier** of Entezari et al. (2022) on the training loss in nats,
#
# $$ B = \max_\alpha \Big[\mathcal L\big(\gamma(\alpha)\big) - \big((1 - \alpha)\, \mathcal L(w_1) + \alpha\, \mathcal L(w_2)\big)\Big] , $$
#
# positive when the path rises above the chord between its endpoints.

# %% [markdown]
# (methods-bezier)=
# ## Bezier curves between two solutions
#
# Following Garipov et al. (2018), the curve between $w_1$ and $w_2$ is a Bezier curve of
# degree $d$ whose end control points are the two solutions, held fixed, and whose inner
# control points ("bends") are trained:
#
# $$ \varphi(t) = \sum_{k=0}^{d} \binom{d}{k} (1 - t)^{d - k}\, t^k\, P_k, \qquad P_0 = w_1,\ P_d = w_2 . $$
#
# The book uses one bend, $d = 2$:
#
# $$ \varphi_\theta(t) = (1 - t)^2\, w_1 + 2t(1 - t)\, \theta + t^2\, w_2 . $$
#
# - **Initialization.** The bends start evenly spaced on the segment; the single bend
#   starts at the midpoint $\theta_0 = \tfrac12(w_1 + w_2)$, where the quadratic curve *is*
#   the straight line with the same parametrization. The fit therefore starts from the
#   straight segment of the {ref}`linear barrier <methods-linear-barrier>`.
# - **Objective.** For each minibatch $(x, y)$ of the training set, one $t \sim U(0, 1)$ is
#   drawn and the bend takes one step on
#
#   $$ \mathrm{CE}\big(f(x;\, \varphi_\theta(t)),\, y\big) + \tfrac{\lambda}{2} \big\lVert \varphi_\theta(t) \big\rVert^2 ,$$
#
#   with the penalty on the whole point of the curve ($\lambda$: `curve_weight_decay`)
#   and the optimizer's own weight decay off.
# - **Optimizer.** SGD with momentum (`curve_momentum`) on the bend only; minibatches of
#   `curve_batch_size`,
#   shuffled by a seeded generator with the last incomplete one dropped. The same seed also
#   fixes the draws of $t$.
# - **Learning rate.** With $u \in [0, 1]$ the fraction of all fitting steps done, the base
#   rate $\eta$ (`curve_lr`) is multiplied by
#
#   $$ a(u) = \begin{cases} 1 & u \le 0.5 \\ 1 - 0.99\, \dfrac{u - 0.5}{0.4} & 0.5 < u \le 0.9 \\ 0.01 & u > 0.9, \end{cases} $$
#
#   evaluated at every step.
# - **BatchNorm while fitting.** The network runs in train mode, so a BatchNorm layer
#   normalizes each minibatch with its own statistics at $\varphi_\theta(t)$; the running
#   statistics gathered on the way describe no single point of the curve and are discarded
#   at evaluation ({ref}`BatchNorm recalibration <methods-bn>`).
# - **Evaluation.** The fitted curve is evaluated at the evenly spaced $t$ of
#   {ref}`mode connectivity <methods-mc>` (the paper used $t \in \{0, 0.25, 0.5, 0.75, 1\}$).
# - **Many curves at once.** For networks without BatchNorm and dropout, the curves of
#   several pairs that share data and architecture are fitted in one vectorized model: the
#   same minibatches, the same draws of $t$, and the summed objective, which gives each bend
#   exactly its own gradient.

# %% [markdown]
# (methods-continuation)=
# ### Endpoint continuation: the control of a positive mc
#
# A curve is fitted *after* its endpoints finished training, for a budget of its own:
# $E_c \lfloor n / B_c \rfloor$ SGD steps ($E_c$ epochs at batch $B_c$). A curve that goes
# below its endpoints (mc > 0) says that lower training error lies near them, which is the
# paper's reading of phase II (endpoints that SGD's noise kept from converging); but a
# curve's extra steps would show the same of any endpoints that had not finished, whatever
# kept them from it, most plainly when the curve's budget exceeds theirs. The control gives
# each endpoint exactly the curve's budget: it is trained on from its final weights with the
# curve's objective $\mathrm{CE} + \tfrac{\lambda}{2}\lVert w\rVert^2$, its lr schedule
# $a(u)$, batch size, momentum, data order and seed, and measured as a point of the curve is
# (BatchNorm recalibrated). With $L'_a, L'_b$ the continued endpoints' train errors,
#
# $$ g = \tfrac12\big(L'_a + L'_b\big) - \min_{0 < t < 1} L(t) $$
#
# is how far the curve's best interior point still beats them. In every cell whose mean mc is
# above the taxonomy's threshold, the per-pair $g$ is averaged with a jackknife over the
# seeds the pairs share ({ref}`statistics <methods-statistics>`); mc > 0 counts as evidence
# of the paper's phase II only where $g > 0$ beyond $t_{0.975}\,\mathrm{SE}$.

# %% [markdown]
# (methods-bn)=
# ## BatchNorm recalibration along a path
#
# A point between two solutions (on a curve, a segment, a simplex or a random cut) has no
# running statistics of its own: those of either endpoint, or of their average, describe a
# different network. Before every evaluation of such a point, every BatchNorm layer is
# reset and its statistics are **recomputed** over the whole training split. One pass runs
# the training inputs in order, in batches, with the BatchNorm layers in train mode and every
# other module in eval mode (dropout off), so that each layer sees the activations it would
# see in training. For each channel, over all examples (and positions) of the pass, the
# layer then stores the exact pooled mean and the unbiased pooled variance,
#
# $$ \hat\mu_c = \frac1N \sum_{i=1}^N h_{ic}, \qquad \hat\sigma_c^2 = \frac1{N-1} \sum_{i=1}^N \big(h_{ic} - \hat\mu_c\big)^2, $$
#
# accumulated batch by batch in float64 with the pairwise update of Chan, Golub and LeVeque.
# These equal the statistics of one pass over all $N$ values, unlike a cumulative average of
# per-batch statistics, which misses the spread between batch means. The network is then
# evaluated in eval mode. This is done at **every** evaluated $t$ of every path in the book,
# the endpoints included, so that all points of a path are measured alike; a network without
# BatchNorm is evaluated as it is.

# %% [markdown]
# (methods-cka)=
# ## CKA similarity
#
# Centred kernel alignment (Kornblith et al. 2019) compares what two networks compute on
# the same $n$ inputs. Let $X \in \mathbb R^{n \times p}$ and $Y \in \mathbb R^{n \times q}$ be
# their representations (one row per input), $K$ and $L$ two $n \times n$ Gram matrices built
# from them, and $C = I - \tfrac1n \mathbf 1 \mathbf 1^\top$ the centring matrix. All of it is
# computed in float64.
#
# **Biased HSIC and CKA.**
#
# $$ \mathrm{HSIC}_0(K, L) = \frac{\operatorname{tr}(K C L C)}{(n - 1)^2}, \qquad
#    \mathrm{CKA}(K, L) = \frac{\mathrm{HSIC}(K, L)}{\sqrt{\mathrm{HSIC}(K, K)\, \mathrm{HSIC}(L, L)}} . $$
#
# **Linear kernel.** With $K = XX^\top$, $L = YY^\top$ and columns of $X, Y$ centred, this is
#
# $$ \mathrm{CKA}_{\text{lin}}(X, Y) = \frac{\lVert Y^\top X \rVert_F^2}{\lVert X^\top X \rVert_F\, \lVert Y^\top Y \rVert_F} , $$
#
# computed from the features when they are narrower than $n$ and from the Gram matrices
# otherwise. It is invariant to orthogonal transformations and isotropic scaling of either
# representation, and lies in $[0, 1]$.
#
# **RBF kernel.** $K_{ij} = \exp\big(-\lVert x_i - x_j\rVert^2 / (2\sigma^2)\big)$, with
# $\sigma$ a fraction (default 0.5) of the median distance between distinct examples
# $i < j$ (the zero self-distances are not counted), chosen separately for each side.
#
# **Debiased HSIC** (Song et al. 2012). With $\tilde K, \tilde L$ the Gram matrices with their
# diagonals set to zero and $n \ge 4$,
#
# $$ \mathrm{HSIC}_1(K, L) = \frac{1}{n(n - 3)} \Big[ \operatorname{tr}(\tilde K \tilde L)
#    + \frac{\mathbf 1^\top \tilde K \mathbf 1\ \mathbf 1^\top \tilde L \mathbf 1}{(n - 1)(n - 2)}
#    - \frac{2}{n - 2}\, \mathbf 1^\top \tilde K \tilde L \mathbf 1 \Big] . $$
#
# It is unbiased for the population HSIC. The estimator does not change when every entry
# $K_{ij}$ is shifted by $f(i) + f(j) + c$, so the package double-centres the Gram matrices
# first, which avoids cancellation between large terms. The debiased cross term can be negative (unrelated
# representations scatter around 0 on both sides).
#
# **Minibatch CKA** (Nguyen, Raghu and Kornblith 2021) sums the HSIC terms (by default the
# debiased ones) over batches $b$ before normalizing:
#
# $$ \mathrm{CKA}_{\text{mb}} = \frac{\sum_b \mathrm{HSIC}_1(K_b, L_b)}{\sqrt{\sum_b \mathrm{HSIC}_1(K_b, K_b)\ \sum_b \mathrm{HSIC}_1(L_b, L_b)}} . $$
#
# **Degenerate inputs.** When a self-HSIC is not positive, or is negligible next to the size
# of its Gram matrix (below $10^{-20} \lVert K \rVert_F^2 / n^2$, rounding residue of a
# constant representation), CKA is reported as missing rather than as a ratio of noise.
#
# **What the book compares.** For each seed pair, the two networks' **softmax outputs**
# (eval mode) on the same **mixup** inputs ({ref}`mixup inputs <methods-mixup>`): by default
# 1280 inputs in 10 batches, concatenated, with the biased linear CKA over all of them. Yang et al.
# compared the softmax outputs of different seeds in the same way.
#
# (methods-mixup)=
# ### Mixup inputs
#
# On the training points themselves, two networks that both fit the training set output
# nearly the same one-hot vectors, and their CKA is high for a trivial reason. Yang et al.
# therefore measure similarity on **mixup** points (Zhang et al. 2018), which lie between
# training examples. The training inputs are shuffled by a seeded permutation and cut into
# consecutive batches; each batch $x_1, \dots, x_b$ draws one $\lambda \sim \mathrm{Beta}(\alpha, \alpha)$
# ($\alpha$: `mixup_alpha`; at 16 most mixes are near even) and one random permutation $\pi$ of
# itself, and becomes
#
# $$ \tilde x_i = \lambda\, x_i + (1 - \lambda)\, x_{\pi(i)} . $$
#
# Labels are not needed. Both networks of a pair receive exactly the same mixed batches.

# %% [markdown]
# (methods-l2)=
# ## L2 distance
#
# The distance between the two runs of a pair is the Euclidean norm of the difference of
# their trainable parameter vectors, computed in float64:
#
# $$ d_{L_2}(w_1, w_2) = \lVert w_1 - w_2 \rVert_2 . $$
#
# BatchNorm running statistics are not parameters and do not enter it.

# %% [markdown]
# (methods-pairs)=
# ## From runs and pairs to cells
#
# - **Seed pairs.** Within a cell with $S$ usable runs (not diverged, with a finite training
#   loss), the pairwise metrics use all $\binom{S}{2}$ pairs when there are at most
#   `max_pairs` of them, and otherwise a seeded random choice of `max_pairs` pairs. The
#   authors used the single pair of seeds 0 and 1; averaging over several pairs lowers the
#   noise of mc and CKA and gives it a spread.
# - **Cell values.** Per-run metrics (losses, accuracies, $\lambda_{\max}$, trace) are averaged
#   over the cell's runs and pairwise metrics (mc, `linear_mc`, CKA, L2) over its pairs,
#   ignoring missing values; the spread is the sample standard deviation and the number of
#   runs or pairs is kept beside it. A cell whose runs all diverged keeps its place in the
#   grid with missing metrics.
# - **Caching.** Every stored number is keyed by the run ids and **every** setting that can
#   change it, so changing a setting recomputes instead of reusing a stale value.

# %% [markdown]
# (methods-mli)=
# ## Monotonic linear interpolation from initialization
#
# Goodfellow, Vinyals and Saxe (2015) observed that the loss often decreases monotonically
# along the straight line from a network's initialization $\theta_0$ to its trained solution
# $\theta_T$; Lucas et al. (2021) studied when this *monotonic linear interpolation* (MLI)
# holds. Along
#
# $$ \theta(\alpha) = (1 - \alpha)\, \theta_0 + \alpha\, \theta_T, \qquad \alpha \in [0, 1] $$
#
# (evenly spaced, endpoints included, `mli_num_points` points; BatchNorm recalibrated
# at every $\alpha$), the training-loss profile $v_0, \dots, v_{m-1}$ is scanned for
# **bumps**. A bump opens at index $i$ where the profile rises ($v_{i+1} > v_i$), lasts while
# the values stay at or above its base $v_i$, and closes at the first index where the profile
# drops below $v_i$ (or stays open to the end). Its height is the largest value inside it
# minus $v_i$. Per run,
#
# $$ \Delta = \max_{\text{bumps}}\ \big(\text{height}\big) \quad (0 \text{ for a non-increasing profile}), $$
#
# and the run is **non-monotonic** when $\Delta > \varepsilon$ for a tolerance $\varepsilon > 0$
# (`mli_eps`, in nats): with $\varepsilon = 0$, evaluation noise alone would make almost
# every run non-monotonic. Over a set of runs the book reports $\Delta$ and the fraction of
# runs with $\Delta > \varepsilon$.

# %% [markdown]
# (methods-phases)=
# ## The phases and their thresholds
#
# Yang et al. sort the cells of a grid into five phases by three properties: whether the
# training loss is high or small, whether the Hessian is large or small (the local axis),
# and the sign of mc (the global axis), with the CKA splitting the well connected phase.
#
# | phase | train loss | Hessian | mc | reading |
# |---|---|---|---|---|
# | I | high | large | < 0 | sharp and poorly connected |
# | II | high | large | > 0 | the endpoints have not converged |
# | III | small | small | < 0 | flat, fitted, but poorly connected |
# | IV-A | small | small | ≈ 0 | well connected, less similar seeds |
# | IV-B | small | small | ≈ 0 | well connected, similar seeds |
#
# The paper draws the boundaries by eye and states no numbers. The package's rule makes them
# explicit. With the cell means $\bar{\mathcal L}$ (training loss in nats), $\overline{\mathrm{mc}}$
# (percentage points of training error) and $\overline{\mathrm{CKA}}$, and thresholds
# $\mathcal L_{\text{high}}$, $m_-$, $m_+$ and $c_{\text{high}}$:
#
# 1. $\overline{\mathrm{mc}} < -m_-$ (a clear barrier): **I** if $\bar{\mathcal L} > \mathcal L_{\text{high}}$,
#    otherwise **III**;
# 2. $\overline{\mathrm{mc}} > m_+$ (the path clearly beats its endpoints): **II**;
# 3. $-m_- \le \overline{\mathrm{mc}} \le m_+$ but $\bar{\mathcal L} > \mathcal L_{\text{high}}$: a
#    network that has not fitted its training set is not in phase IV, so the sign decides,
#    **I** for $\overline{\mathrm{mc}} < 0$ and **II** otherwise;
# 4. otherwise (well connected and fitted) **IV**: **IV-B** when
#    $\overline{\mathrm{CKA}} \ge c_{\text{high}}$, else **IV-A**.
#
# A cell whose deciding value is missing gets no label. An optional threshold
# $\lambda_{\text{large}}$ (off by default) treats a cell with
# $\bar\lambda_{\max} \ge \lambda_{\text{large}}$ like one with a high training loss, so that
# a sharp, poorly connected cell is phase I even when it has fitted its training set.
#
# The default thresholds (`train_loss_high` for $\mathcal L_{\text{high}}$, in nats; `mc_neg`
# and `mc_pos` for $m_-$ and $m_+$, in percentage points; `cka_high` for $c_{\text{high}}$;
# their values are in the table of the introduction) were set on the authors' released ResNet18/CIFAR-10
# metrics so that the rule redraws the paper's layout there, each inside a gap of that data;
# they are parameters, and on another grid (another dataset, model or training length) the
# gaps can sit elsewhere.
#
# (methods-sensitivity)=
# ### Sensitivity to the thresholds
#
# Because the thresholds are a choice, the book reports how much the phase map depends on
# them: each threshold in turn is moved by $\pm 25\%$ with the others fixed, and the number and
# kind of cells that change phase (for example III→IV-A) are counted.
#
# (methods-phase-confidence)=
# ### Phases with a confidence
#
# A label computed from cell means can flip on noise: with a handful of seeds, one outlying
# seed moves the mean mc across a threshold. The classifier therefore redraws every cell by
# **resampling its seeds** ({ref}`methods-statistics`): for each metric the rule reads (mc
# and CKA per pair, the training loss per run, and $\lambda_{\max}$ when
# $\lambda_{\text{large}}$ is used) it forms the leave-one-seed-out means
# $\theta_{(1)}, \dots, \theta_{(S)}$ (leaving out seed $i$ drops its run and every pair
# that involves it) and draws $R$ cell values (default $R = 2000$), centred on the cell
# value $\hat\theta$:
#
# $$ \theta^{(r)} = \hat\theta + \sqrt{\frac{S-1}{S}} \sum_{i=1}^{S} g^{(r)}_i
#    \bigl(\theta_{(i)} - \bar\theta_{(\cdot)}\bigr) \sqrt{\frac{\nu}{\chi^{2(r)}_\nu}}, \qquad
#    g^{(r)} \sim N(0, I_S), \quad \chi^{2(r)}_\nu \sim \chi^2_{\nu}, \quad \nu = S - 1 . $$
#
# Each metric's draws are then $\hat\theta$ plus its jackknife standard error times a
# Student $t_{S-1}$ variable, and because every metric of a cell uses the same $g^{(r)}$ and
# $\chi^{2(r)}$, mc, CKA and the training loss move together as they do when a seed is
# swapped. A metric whose cell cannot give its spread (one pair, as the authors' mc; two
# seeds of a pairwise metric) is either held at its cell value, so that the label is
# **conditional** on it (the cell's note says so), or drawn with a spread **borrowed** from
# the grid (the authors' mc, {ref}`methods-statistics`). The former rule, which drew each
# metric on its own as $\bar x + (s/\sqrt n)\,T_{n-1}$ over its $n$ pairs as if they were
# independent, is kept for comparison only.
#
# Every draw is classified by {ref}`the phase rule <methods-phases>`, and the fraction of
# draws that land in a phase is that phase's **probability** for the cell.
#
# - **Label.** The most likely phase, when its probability reaches a stated **level**
#   (`confidence_level`); otherwise the cell is **`undetermined`**, and it is drawn as such in the
#   phase map instead of being given a phase it only holds by chance.
# - **IV-A and IV-B.** The split is made over the whole grid, and only where the CKA separates
#   the well connected cells beyond the seed spread: when at least one cell is IV-A and at
#   least one IV-B, each with probability at or above the level. Otherwise every well
#   connected cell is reported as **IV**, with $p_{\text{IV}} = p_{\text{IV-A}} +
#   p_{\text{IV-B}}$, and the reason is stated. A cell that is IV with enough probability but
#   neither IV-A nor IV-B is also reported as IV.
# - **The local axis.** The paper's table has the Hessian large in phases I and II and small
#   in III and IV. A cell's $\lambda_{\max}$ counts as large above a threshold $h$, either
#   given or set by a ranking rule: the geometric mean of the median $\lambda_{\max}$ of the
#   cells labelled I or II and that of the cells labelled III or IV,
#
#   $$ h = \sqrt{\operatorname{med}_{\text{I, II}} \lambda_{\max} \cdot \operatorname{med}_{\text{III, IV}} \lambda_{\max}} . $$
#
#   The Hessian does not change a label; it **flags** a labelled cell whose $\lambda_{\max}$
#   is on the other side of $h$ than its phase's row of the table, and likewise a cell whose
#   training loss is on the wrong side of $\mathcal L_{\text{high}}$. Undetermined cells are
#   not flagged.
#

# (methods-statistics)=
# ### Statistics with a few seeds
#
# The **seed is the unit of replication**. A cell's $S$ runs are its seeds; its
# $\binom{S}{2}$ pairs share them, so a pair mean is not a mean of independent values. With
# additive seed effects (pair value $\mu + a_i + a_j + e_{ij}$) the standard error
# $s/\sqrt{n_{\text{pairs}}}$ understates the spread of the pair mean (on average by up to a
# factor 2 at $S = 3$, when the seed effects dominate: each seed enters two of the three
# pairs), and intervals built on it cover less often than they claim.
#
# - **Jackknife over seeds.** For a mean $\hat\theta$ of per-run or per-pair values and its
#   leave-one-seed-out means $\theta_{(i)}$,
#   $\widehat{\mathrm{SE}}^2 = \frac{S-1}{S} \sum_i (\theta_{(i)} - \bar\theta_{(\cdot)})^2$ with
#   $S - 1$ degrees of freedom (`taxonomy.seed_jackknife`). For per-run values it is the
#   usual $s/\sqrt S$. For pairs it is exact under additive seed effects and larger than the
#   truth when pairs also carry noise of their own (the jackknife variance errs upward;
#   Efron and Stein 1981): at $S = 3$ the two sources cannot be told apart, so the book takes
#   the conservative side. On simulated cells with additive seed effects the intervals of
#   the phase probabilities cover the true mean at their nominal rate, and the former
#   per-pair intervals well below it (`tests/test_taxonomy.py` measures both).
# - **A spread borrowed from the grid.** When a cell holds one value (the authors' mc, one
#   pair of runs), neighbouring cells stand in for other seeds: with independent noise of sd
#   $\sigma$ and a locally linear trend, the second difference
#   $r = x_{k-1} - 2x_k + x_{k+1}$ along an axis has sd $\sqrt 6\,\sigma$, so
#   $\hat\sigma = \operatorname{med}|r| / (0.6745\sqrt 6)$ over both axes
#   (`taxonomy.neighbour_spread`). The median keeps the few steep steps at phase boundaries
#   from dominating; curvature can only make $\hat\sigma$ larger.
# - **t quantiles, not 2 SE.** A difference is tested with a one-sample t test against a
#   fixed value, or Welch's t test (Welch–Satterthwaite degrees of freedom) between two
#   groups of seeds (`scipy.stats.ttest_1samp`, `ttest_ind(equal_var=False)`), two-sided at
#   $\alpha = 0.05$; the sign is read only when the test rejects. "Mean ± 2 SE" with a
#   normal cut-off, with three seeds, calls a difference far more often than 5% of the time
#   when there is none (`tests/test_findings.py` measures both rules).
# - **No pick-the-best without a correction.** Picking the best of $k$ settings and testing it
#   against the seed spread is biased (the winner's curse): on flat curves it "shows" an
#   effect far more often than its nominal rate. The book either compares points fixed
#   before the runs (training longer: the median length against the longest, by Welch's t on
#   the difference of two cells' drops; the 1D model: the annealed state) or tests the
#   picked value against the same pick on null data (double descent: the peak's height over
#   the pooled seed sd, against flat curves with the same seeds per point, drawn from their
#   normal model with the pooled sd re-estimated in each draw).
# - **Many findings per chapter.** Each finding is a *test* (it has a p-value and can go
#   either way), a *rule* (it can go either way but has no p-value: exploratory), or a
#   *description* (it can only go one way, e.g. a Bezier curve trained to beat the straight
#   line: not a test). Beside each raw verdict, `findings.csv` and the findings tables give
#   the verdict corrected by Holm's step-down procedure over the chapter's tests
#   (family-wise error at 0.05 under any dependence): with adjusted p-values
#   $\tilde p_{(k)} = \max_{j \le k} \min\{1, (m - j + 1)\, p_{(j)}\}$, a test keeps holds
#   or fails only when $\tilde p < 0.05$.
# - **Ranks with a direction.** A metric that tracks test accuracy the wrong way is no
#   support for it: `metric_ranking` scores each metric by Spearman's $\rho$ times its
#   expected sign, not by $|\rho|$.

# (methods-spearman)=
# ### Correlation with test accuracy
#
# To ask which metric tracks generalization, the book ranks the cells by each metric and by
# their mean test accuracy and reports Spearman's rank correlation $\rho$ with its p-value and
# the number of cells $n$, over all cells and over the well-trained cells only (training loss
# below $\mathcal L_{\text{high}}$). With fewer than three cells, or a constant column, $\rho$ is
# missing.

# %% [markdown]
# (methods-released)=
# ## Released grids: the authors' and the Phase Transition Model Zoo's
#
# Chapter 4b applies {ref}`the phase rule with its confidence <methods-phase-confidence>`, with
# one set of thresholds, to eleven grids whose metrics were released by others: the authors'
# ResNet18 / CIFAR-10 grid ({ref}`methods-paper-grid`) and the ten grids of the Phase
# Transition Model Zoo (arXiv 2504.18072; dataset under CC BY 4.0): ResNet-18 and ResNet-50 on
# CIFAR-10, CIFAR-100, SVHN and TinyImageNet, a ViT on CIFAR-10 and CIFAR-100, three seeds per
# cell, measured at the last epoch.
#
# - **Columns.** The zoo's `curve_mc_train_error` is the paper's mc ({ref}`methods-mc`) on the
#   training error in percent along a quadratic Bezier curve, with the same sign (mc < 0 a
#   barrier), fitted for each of the three seed pairs of a cell and averaged over them. Its
#   `representation_similarity` is linear CKA of the logits of two seeds on test images,
#   averaged over the pairs; this is not the softmax CKA on mixup inputs of {ref}`methods-cka`,
#   so $\kappa_{\text{high}}$ does not carry over and the IV-A/IV-B split of a zoo is read with
#   care. Its Hessian columns are natural logarithms of the mean over the seeds of the top
#   eigenvalue (on test images) and of the trace (on training images); we exponentiate them.
# - **Cell values.** mc, CKA and the Hessian come as one value per cell. The confidence draws
#   hold them fixed: their spread is unknown, so a zoo cell's label is conditional on them and
#   its confidence reflects the seed spread of its training loss only. A column the release
#   repeats on the seeds is a cell value too (its standard deviation is missing, not zero).
# - **Failed runs.** A run whose final training accuracy is below a bar (0.3) is set aside as
#   the book sets aside a diverged run: left out of the cell means; a cell with no run left
#   has no metrics and no phase.
#
# **The claims on every grid.** Each grid gets the same six tests. Two are chapter 4's: the
# best test accuracy is in IV-B (IV when the CKA does not split IV), and a global metric ranks
# test accuracy better than the local ones ({ref}`methods-spearman`). The other four are:
#
# - *The paper's table.* For the training loss and for $\lambda_{\max}$, the natural logarithms
#   of the cell values of the cells labelled I or II against those labelled III or IV: the
#   difference of the means must exceed twice its standard error
#   $\sqrt{s_a^2/n_a + s_b^2/n_b}$ in the expected direction. Both must hold; either failing
#   fails the claim. The training-loss half is partly built into the rule (it splits I from
#   III), so $\lambda_{\max}$ is the independent half.
# - *mc tracks accuracy.* Spearman's $\rho$ of the cell mc with the cell test accuracy is
#   positive with $p < 0.05$ (inconclusive when $p \ge 0.05$ or fewer than five cells).
# - *The smallest load is behind a barrier.* At the smallest load that has a labelled cell,
#   more than half of the labelled cells are I or III; an undetermined cell could go either
#   way (it decides the verdict only if both ways agree); unlabelled cells are left out.
# - *The hot end is unconverged.* The same count at the hottest temperature with a labelled
#   cell, for phase II.
#
# Where each phase lies is read with the positions of {ref}`methods-rugged`: the rank of a
# cell's load and temperature among its grid's values, 0 to 1, so grids of different sizes
# compare.

# %% [markdown]
# (methods-rugged)=
# ## A one-dimensional model of rugged convexity
#
# The first arXiv version of Yang et al. explains the phases with a one-dimensional model
# whose exact form is not available to us. The book's model is **our own construction** in
# that spirit. One weight $w$ and a training loss made of a convex envelope and a rugged term:
#
# $$ L(w) = \tfrac12 a w^2 + A(\ell) \sum_{k=1}^{K} c_k \cos(\omega_k w + \varphi_k), \qquad
#    A(\ell) = A_1\, \ell^{-\gamma} . $$
#
# - The frequencies $\omega_k \sim U(\omega_{\min}, \omega_{\max})$ and phases
#   $\varphi_k \sim U(0, 2\pi)$ are drawn once from a seed; $c_k = \sqrt{2/K}$ gives the rugged term unit
#   standard deviation at a fixed $w$. Defaults: $a = 1$, $K = 16$, $\omega \in [3, 9]$,
#   $A_1 = 0.05$, $\gamma = 1$.
# - The **load** $\ell$ sets the roughness relative to the envelope: a small load (little data,
#   a small model) makes the landscape rough.
# - A **test landscape** shares the envelope and draws a second, independent rugged term, so
#   that fitting the training roughness has a cost that does not transfer.
# - The **temperature** $T$ drives Langevin dynamics, the stand-in for SGD noise,
#
#   $$ w \leftarrow w - \eta L'(w) + \sqrt{2\eta T}\, \xi, \qquad \xi \sim N(0, 1) ,$$
#
#   whose stationary density is proportional to $e^{-L(w)/T}$. An optional annealing phase
#   ramps $T$ linearly to 0 and holds it there, so the runs end in a minimum (the analogue of
#   training on to zero loss).
# - **Effective landscape.** Noise of variance $T$ smooths the loss. Averaging over
#   $\xi \sim N(0, T)$ has a closed form, because $\mathbb E \cos(\omega(w + \xi) + \varphi) =
#   e^{-\omega^2 T / 2} \cos(\omega w + \varphi)$:
#
#   $$ \begin{aligned} L_T(w) &= \mathbb E\, L(w + \xi) \\ &= \tfrac12 a (w^2 + T) + A(\ell) \sum_k c_k\, e^{-\omega_k^2 T / 2} \cos(\omega_k w + \varphi_k) . \end{aligned} $$
#
#   A hot walker feels a convex landscape, a cold one the rough detail.
# - **Metrics.** Many independent runs per (load, temperature) cell, paired as (0, 1),
#   (2, 3), … Per cell, the 1D analogue of each network metric: the excess training loss
#   $L(w) - \min L$ (the global minimum found by an exhaustive grid over the interval that
#   must contain it, then Newton steps); the curvature $L''(w)$ in place of the Hessian; mc
#   (the formula of {ref}`mode connectivity <methods-mc>`, on the training *loss* along the straight segment
#   between the two runs of a pair, 33 points); the distance $\lvert w_1 - w_2\rvert$; a
#   similarity $\exp\big(-(w_1 - w_2)^2 / (2r_c^2)\big)$ with the correlation length
#   $r_c = 1/\sqrt{\mathbb E[\omega^2]}$ of the rugged term, in place of CKA; and the excess
#   loss on the test landscape. Every cell uses the same random numbers (common random numbers)
#   so that neighbouring cells differ only through their parameters.
# - **Phases.** The classifier of {ref}`the phase rule <methods-phases>`, with thresholds rescaled to the
#   model's units: $\mathcal L_{\text{high}} = 0.1$, $m_- = m_+ = 0.05$, $c_{\text{high}} = 0.65$.
#   A thermal walker in the envelope has an excess loss near $T/2$ and a pair of them an mc
#   near $T/4$, so $\mathcal L_{\text{high}}$ and $m_+$ are both crossed near $T = 0.2$.

# %% [markdown]
# (methods-large-scale)=
# ## Large-scale structure (Fort and Jastrzebski 2019)
#
# Fort and Jastrzebski model the low-loss region of a network as a union of
# high-dimensional **wedges**: each has many long directions and a few short ones, whose
# width grows with the distance from the origin, and the wedges meet, so that the union is
# one connected structure. The book tests consequences of this picture with the procedures
# below.
#
# (methods-simplex)=
# ### Low-loss simplices that connect several solutions
#
# For $n$ trained solutions $w_1, \dots, w_n$, held fixed, the package trains a few
# **connector** points so that a whole simplicial complex spanned by them has low loss, in
# the construction of Benton, Maddox, Lotfi and Wilson (2021).
#
# - **The complex** is the barycentric subdivision of the simplex of the solutions. There is
#   one connector $\theta_F$ for every face $F$ of two or more solutions (an edge, a triangle,
#   …), starting at the centroid of that face, and one sub-simplex for every ordering
#   $\sigma$ of the solutions, with vertices $w_{\sigma_1}, \theta_{\{\sigma_1, \sigma_2\}}, \dots,
#   \theta_{\{\sigma_1, \dots, \sigma_n\}}$. Untrained, the complex is the flat simplex; trained,
#   the edge from $w_i$ to $w_j$ bends through $\theta_{\{i, j\}}$. For $n = 2$ this is a path with
#   one bend; for $n = 3$, six triangles around three edge connectors and a central one.
# - **Points of the complex** are addressed by barycentric coordinates $\lambda$ of the
#   solutions. Sorting $\lambda_{\sigma_1} \ge \dots \ge \lambda_{\sigma_n}$ (with $\lambda_{\sigma_{n+1}} = 0$),
#   the point lies in the sub-simplex of $\sigma$ with weights
#   $\mu_k = k\,(\lambda_{\sigma_k} - \lambda_{\sigma_{k+1}})$ on its $k$-th vertex. This map is
#   piecewise linear, and for the untrained complex it returns $\sum_i \lambda_i w_i$.
# - **Training.** For each minibatch, one sub-simplex is drawn uniformly and convex weights
#   $c \sim \mathrm{Dirichlet}(1, \dots, 1)$ over its vertices $v_j$ (together a uniform point
#   of the big simplex). The connectors take one SGD step (momentum 0.9, the learning-rate
#   factor of {ref}`Bezier curves <methods-bezier>`) on
#
#   $$ \mathrm{CE}\big(f(x;\, p),\, y\big) + \tfrac{\lambda}{2} \lVert p \rVert^2 - \kappa \log V^2 , \qquad p = \textstyle\sum_j c_j v_j , $$
#
#   where $V^2$ is the squared volume of the drawn sub-simplex; the volume bonus (weight
#   $\kappa$: `volume_weight`) keeps the sub-simplices from collapsing onto their edges.
# - **Volume.** For a $k$-simplex with vertices $p_0, \dots, p_k$ and squared distances
#   $D_{ij} = \lVert p_i - p_j \rVert^2$, the Cayley–Menger determinant gives
#
#   $$ V^2 = \frac{(-1)^{k+1}}{2^k (k!)^2} \det \begin{pmatrix} 0 & \mathbf 1^\top \\ \mathbf 1 & D \end{pmatrix} , $$
#
#   whose logarithm is taken through a signed log-determinant for stability.
# - **Evaluation.** The loss and error over a barycentric grid of the triangle, and along
#   every edge, with BatchNorm recalibrated at every point ({ref}`BatchNorm recalibration <methods-bn>`).
#
# (methods-tunnel)=
# ### A tunnel between two solutions
#
# A point $\theta$ on the hyperplane halfway between $w_1$ and $w_2$ starts at their midpoint
# and descends the training loss (plus the weight penalty) by SGD with momentum, with every
# gradient projected orthogonal to $u = (w_2 - w_1)/\lVert w_2 - w_1 \rVert$:
#
# $$ g \leftarrow g - (g^\top u)\, u , $$
#
# so that $\theta$ stays equidistant from the two solutions (rounding drift along $u$ is
# removed after every epoch). The path $w_1 \to \theta \to w_2$ is then evaluated like any other.
#
# (methods-ensembles)=
# ### Ensembles of solutions
#
# For a set of networks evaluated in eval mode on the test split: the mean accuracy of the
# members, the accuracy of the ensemble (the arg max of the averaged softmax outputs), the
# gain of the ensemble over its mean member, the **disagreement** (over pairs of members, the
# fraction of test inputs on which their predicted labels differ, averaged) and the mean
# pairwise CKA. Independent solutions are compared with points sampled uniformly from the
# connecting complex.
#
# (methods-wedges)=
# ### Radial and random cuts
#
# - **Radial cut**: the loss along $\theta (1 + s)$, from the origin ($s = -1$) through the
#   solution ($s = 0$) and beyond; all trainable parameters are scaled.
# - **Random cuts at several radii**: from centres $r\,\theta$ on the ray through the solution,
#   the loss along $r\theta + \delta u$ for isotropic Gaussian directions $u$ of unit norm over
#   all trainable parameters; the same directions are used at every radius.
# - **Escape distance**: along a cut with increasing distances $\delta_0 = 0 < \delta_1 < \dots$,
#   the first $\delta$ at which the training error (or loss) reaches its value at the centre
#   of the cut plus a stated rise, interpolated linearly between the two grid points around
#   the crossing; infinite (censored) if the cut never reaches it within the measured range.
#   The wedge picture predicts that the escape distance grows with the radius.
# - **Reach of a solution**: the mean escape distance from the solution itself, along
#   isotropic directions (in parameter units) and along filter-normalized directions
#   ({ref}`filter normalization <methods-filter-norm>`, in units of each filter's own norm),
#   compared across runs that differ in one knob (load, temperature, learning rate, weight
#   decay). Fort and Jastrzebski predict that these knobs change how far a solution reaches in
#   similar ways.
#
# BatchNorm is recalibrated at every point of every cut.
#
# (methods-subspace)=
# ### Training in a random subspace
#
# Following Li, Farkhoor, Liu and Yosinski (2018), only $z \in \mathbb R^d$ is trained in
#
# $$ \theta = \theta_0 + P z, \qquad P \in \mathbb R^{D \times d} , $$
#
# where $\theta_0$ is an initialization, $P$ is a fixed random matrix with Gaussian entries and
# unit-norm columns, and $z$ starts at 0 and is optimized by Adam on the minibatch
# cross-entropy. A run **succeeds** when its training accuracy reaches a stated target; the
# success rate over seeds is reported against $d$. Wedges with many long directions imply that
# a large enough random subspace meets the low-loss region.

# %% [markdown]
# (methods-weight-matching)=
# ## Weight matching
#
# The hidden units of a layer can be permuted, together with the matching inputs of the next
# layer, without changing the function a network computes. A barrier between two seeds may
# therefore be only a permutation. Weight matching (Ainsworth, Hayase and Srinivasa 2023)
# permutes the units of network $B$ to line up with those of network $A$ before the barrier is
# measured. With one permutation matrix $\Pi_\ell$ per hidden layer $\ell$ (and
# $\Pi_0 = \Pi_{L} = I$ for the inputs and outputs), it maximizes
#
# $$ J(\Pi) = \sum_\ell \Big\langle W^A_\ell,\ \Pi_\ell\, W^B_\ell\, \Pi_{\ell-1}^\top \Big\rangle_F , $$
#
# summed over every trainable tensor a permutation acts on (weights, biases and BatchNorm
# scales and shifts; convolution kernels over their spatial positions too).
#
# - **Coordinate descent.** In each sweep the layers are visited in a seeded random order.
#   With all other permutations fixed, $J$ is linear in $\Pi_\ell$, and the best $\Pi_\ell$
#   solves a linear assignment problem on the $n_\ell \times n_\ell$ score matrix collected from
#   every tensor that $\Pi_\ell$ touches (an exact linear assignment solver, maximizing). A layer's
#   permutation changes only if it raises its score. The sweeps stop when one full sweep
#   improves nothing (at most 100).
# - **What moves with a unit.** Its row of the layer's weight, its bias, its BatchNorm
#   scale, shift **and running statistics**, and its column in the next layer's weight. The
#   permuted network computes exactly the same function.
# - **Scope.** MLPs, the small CNN, and plain sequential chains. Residual networks need one
#   shared permutation for every layer that writes into a residual stream and are not
#   supported.
# - **Report.** The linear barrier (and optionally the Bezier mc), the loss barrier of
#   {ref}`the linear barrier <methods-linear-barrier>` and the L2 distance, before and after alignment.

# %% [markdown]
# (methods-filter-norm)=
# ## Filter-normalized directions and 2D loss surfaces
#
# A random direction in parameter space means little unless it is scaled like the network
# it perturbs: ReLU networks are invariant to rescaling a unit's incoming weights against its
# outgoing ones, so raw Gaussian directions exaggerate or hide curvature depending on the
# scale of each layer. Li, Xu, Taylor, Studer and Goldstein (2018) rescale the direction
# filter by filter. For every trainable tensor $\theta_k$ with more than one dimension, a
# standard Gaussian tensor $d_k$ of the same shape is drawn and each output slice $i$ (a row of
# a linear layer, one filter of a convolution) is rescaled to the norm of the matching slice
# of the solution:
#
# $$ d_{k,i} \leftarrow \frac{d_{k,i}}{\lVert d_{k,i} \rVert}\, \lVert \theta_{k,i} \rVert . $$
#
# Tensors of one dimension or less (biases, BatchNorm scales and shifts) get a zero direction.
# A **2D loss surface** is the training loss on a plane through a solution $\theta$,
#
# $$ \mathcal L(\alpha, \beta) = \mathcal L\big(\theta + \alpha\, d_1 + \beta\, d_2\big) , $$
#
# on a grid of $(\alpha, \beta)$, with BatchNorm recalibrated at every grid point; the 1D cut
# $\theta + \alpha d$ is the same with one direction. Li et al. take two independent
# filter-normalized directions. To show a solution together with its seed partner
# $\theta_b$, the book's plane instead contains both:
#
# $$ d_1 = \theta_b - \theta, \qquad d_2 = d - \frac{\langle d, d_1 \rangle}{\langle d_1, d_1 \rangle}\, d_1 , $$
#
# with $d$ a filter-normalized direction at $\theta$, so that $(0, 0)$ is the solution,
# $(1, 0)$ its partner, and the two axes are orthogonal.

# %% [markdown]
# (methods-references)=
# ## References
#
# - Ainsworth, S. K., Hayase, J., Srinivasa, S. (2023). Git Re-Basin: merging models modulo
#   permutation symmetries. *ICLR*.
# - Avron, H., Toledo, S. (2011). Randomized algorithms for estimating the trace of an
#   implicit symmetric positive semi-definite matrix. *Journal of the ACM* 58(2).
# - Benton, G. W., Maddox, W. J., Lotfi, S., Wilson, A. G. (2021). Loss surface simplexes for
#   mode connecting volumes and fast ensembling. *ICML*.
# - Chan, T. F., Golub, G. H., LeVeque, R. J. (1983). Algorithms for computing the sample
#   variance: analysis and recommendations. *The American Statistician* 37(3).
# - Entezari, R., Sedghi, H., Saukh, O., Neyshabur, B. (2022). The role of permutation
#   invariance in linear mode connectivity of neural networks. *ICLR*.
# - Efron, B., Stein, C. (1981). The jackknife estimate of variance. *The Annals of
#   Statistics* 9(3).
# - Fort, S., Jastrzebski, S. (2019). Large scale structure of neural network loss landscapes.
#   *NeurIPS*.
# - Frankle, J., Dziugaite, G. K., Roy, D. M., Carbin, M. (2020). Linear mode connectivity and
#   the lottery ticket hypothesis. *ICML*.
# - Garipov, T., Izmailov, P., Podoprikhin, D., Vetrov, D., Wilson, A. G. (2018). Loss
#   surfaces, mode connectivity, and fast ensembling of DNNs. *NeurIPS*.
# - Ghorbani, B., Krishnan, S., Xiao, Y. (2019). An investigation into neural net
#   optimization via Hessian eigenvalue density. *ICML*.
# - Golub, G. H., Meurant, G. (2010). *Matrices, Moments and Quadrature with Applications*.
#   Princeton University Press.
# - Goodfellow, I. J., Vinyals, O., Saxe, A. M. (2015). Qualitatively characterizing neural
#   network optimization problems. *ICLR*.
# - Holm, S. (1979). A simple sequentially rejective multiple test procedure. *Scandinavian
#   Journal of Statistics* 6(2).
# - Hutchinson, M. F. (1990). A stochastic estimator of the trace of the influence matrix for
#   Laplacian smoothing splines. *Communications in Statistics – Simulation and Computation*
#   19(2).
# - Kornblith, S., Norouzi, M., Lee, H., Hinton, G. (2019). Similarity of neural network
#   representations revisited. *ICML*.
# - Lanczos, C. (1950). An iteration method for the solution of the eigenvalue problem of
#   linear differential and integral operators. *Journal of Research of the National Bureau
#   of Standards* 45(4).
# - Li, C., Farkhoor, H., Liu, R., Yosinski, J. (2018). Measuring the intrinsic dimension of
#   objective landscapes. *ICLR*.
# - Li, H., Xu, Z., Taylor, G., Studer, C., Goldstein, T. (2018). Visualizing the loss
#   landscape of neural nets. *NeurIPS*.
# - Lucas, J., Bae, J., Zhang, M. R., Fort, S., Zemel, R., Grosse, R. (2021). Analyzing
#   monotonic linear interpolation in neural network loss landscapes. *ICML*.
# - Meyer, R. A., Musco, C., Musco, C., Woodruff, D. P. (2021). Hutch++: optimal stochastic
#   trace estimation. *SOSA*.
# - Nguyen, T., Raghu, M., Kornblith, S. (2021). Do wide and deep networks learn the same
#   things? Uncovering how neural network representations vary with width and depth. *ICLR*.
# - Pearlmutter, B. A. (1994). Fast exact multiplication by the Hessian. *Neural Computation*
#   6(1).
# - Song, L., Smola, A., Gretton, A., Bedo, J., Borgwardt, K. (2012). Feature selection via
#   dependence maximization. *Journal of Machine Learning Research* 13.
# - Welch, B. L. (1947). The generalization of "Student's" problem when several different
#   population variances are involved. *Biometrika* 34(1/2).
# - Yang, Y., Hodgkinson, L., Theisen, R., Zou, J., Gonzalez, J. E., Ramchandran, K.,
#   Mahoney, M. W. (2021). Taxonomizing local versus global structure in neural network loss
#   landscapes. *NeurIPS*.
# - Yao, Z., Gholami, A., Keutzer, K., Mahoney, M. W. (2020). PyHessian: neural networks
#   through the lens of the Hessian. *IEEE BigData*.
# - Zhang, H., Cisse, M., Dauphin, Y. N., Lopez-Paz, D. (2018). mixup: beyond empirical risk
#   minimization. *ICLR*.
