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
# # landscape-book
#
# This book maps the loss landscapes of whole **grids** of trained neural networks and reads
# off which *phase of learning* each model is in. It reproduces, and extends, two papers:
#
# - Yang, Hodgkinson, Theisen, Zou, Gonzalez, Ramchandran and Mahoney, *Taxonomizing local
#   versus global structure in neural network loss landscapes* (NeurIPS 2021);
# - Fort and Jastrzebski, *Large Scale Structure of Neural Network Loss Landscapes* (NeurIPS 2019).
#
# ## What is measured
#
# Every grid cell is one setting of a **load-like** parameter (how much the model must fit
# relative to its capacity: width, amount of data, label noise) and a **temperature-like**
# parameter (how noisy the optimizer is: batch size, learning rate, weight decay). Several
# seeds are trained per cell. Then, per cell:
#
# | kind | metric | what it says |
# |---|---|---|
# | training | train loss, test accuracy | did the model fit, and does it generalize |
# | local | Hessian top eigenvalue $\lambda_{\max}$, trace | how sharp the minimum is |
# | global | mode connectivity $\mathrm{mc}$ along a fitted Bezier curve | is there a barrier between seeds |
# | global | CKA similarity of the seeds' outputs, $L_2$ distance | do the seeds compute the same function |
#
# The mode connectivity of a path with training error $L(t)$ (in %) is
#
# $$ \mathrm{mc} = \tfrac12\big(L(0) + L(1)\big) - L(t^*), \qquad
#    t^* = \arg\max_t \big|\tfrac12(L(0)+L(1)) - L(t)\big| . $$
#
# $\mathrm{mc} < 0$ is a barrier (poorly connected), $\mathrm{mc} \approx 0$ is well connected,
# and $\mathrm{mc} > 0$ means the path beats its endpoints, which have not converged.
#
# ## The phases
#
# Yang et al. sort the cells of a grid into five phases by these metrics. The table is
# their hypothesis, stated before any of our models is trained; chapter 4 checks it on this
# build's grid and on the authors' released metrics, and says where it does not hold.
#
# | phase | train loss | sharpness | mc | the paper's reading |
# |---|---|---|---|---|
# | I | high | large | < 0 | sharp and poorly connected |
# | II | high | large | > 0 | endpoints not converged |
# | III | small | small | < 0 | flat but poorly connected: training to zero loss can hurt |
# | IV-A | small | small | ≈ 0 | well connected, lower similarity |
# | IV-B | small | small | ≈ 0 | well connected, higher similarity: the paper's best test accuracy |
#
# ## How to read the book
#
# Each chapter is one experiment and begins with a `parameters` cell; the executed book was
# built with the values in `params/*.yaml`. Every phase diagram has the load on the x axis
# (left to right: more capacity per sample) and the temperature on the y axis, with the
# hottest setting (for batch size: the smallest batch) at the top. Hover over a cell to see
# its values and the spread over seeds. Wherever a colour scale means better or worse, the
# worse end (higher loss, sharper, a larger barrier) is drawn the same way on every page.
#
# The text of each chapter states methods and the papers' hypotheses only. What this
# build's grid actually shows is computed from its tables: the numbers in the chapters'
# code cells, and the **What this grid shows** table of findings that closes each
# experiment (a claim, a verdict of *holds*, *fails* or *inconclusive*, the evidence, and
# the number of cells or seeds it rests on), all collected in `tables/findings.csv`. The
# seed is the unit of replication, so spreads come from resampling seeds; under each verdict
# stands the same verdict corrected for the number of tests in its chapter (Holm), and
# checks that can only go one way are marked as descriptions ({ref}`methods-statistics`).
#
# 1. **Training grid**: trains the grid and shows accuracy and loss per cell.
# 2. **Local metrics**: Hessian sharpness.
# 3. **Global connectivity**: Bezier curves, mc, CKA, L2, and linear interpolation from
#    initialization.
# 4. **Taxonomy**: the phase map, for our grid and for the paper's released metrics.
# 5. **The one-dimensional model**: rugged convexity and an effective landscape.
# 6. **Large-scale structure**: wedges, simplices and ensembles.
#
# The default book runs on MNIST-1D, generated offline, on a CPU. The same chapters run
# the paper's CIFAR-10 grid on a GPU server from `params/paper_cifar10.yaml`.

# %% tags=["parameters"]
device: str = "auto"              # unused here; every chapter takes it
workdir: str = "../build/work/lab"  # unused here; every chapter takes it

# %%
import torch

import landscape_utils
from landscape_utils.core.utils import resolve_device

print(f"landscape_utils {landscape_utils.__version__}, torch {torch.__version__}, "
      f"device {resolve_device(device)}")
