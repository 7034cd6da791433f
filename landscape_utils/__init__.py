"""landscape_utils: the numerics behind landscape-book.

Modules (one concern each):
    utils        device resolution, seeding, atomic file writes
    data         datasets by name, load-like knobs (data_fraction, label_noise)
    models       width-scalable MLP, CNN and ResNet18
    train        SGD training of one run (or a population of seeds)
    store        one folder per run, keyed by a hash of the full config
    runner       the grid runner with resumable, pluggable executors
    hessian      Hessian-vector products, top eigenvalues, trace, spectral density
    connectivity Bezier curves, path evaluation, mode connectivity, MLI
    similarity   CKA (linear, RBF, debiased, minibatch), mixup, L2 distance
    taxonomy     per-cell tables and the phase classifier
    reference    the authors' released metrics, read safely
    rugged       the one-dimensional rugged-convexity model
    plotting     one altair theme and one table of metric -> label, scale, colours
    book         the papermill/jupytext driver that builds the HTML book
"""

__version__ = "0.1.0"
