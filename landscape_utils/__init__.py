"""landscape_utils: the numerics behind landscape-book.

Modules, one concern each, grouped by where a reader would look for them (the Methods
appendix, ``book/07_methods.py``, defines every metric and procedure):

Foundation
    utils        device resolution, full-precision scope, seeding, atomic file writes
    data         datasets by name, load-like knobs (data_fraction, label_noise)
    models       width-scalable MLP, CNN and ResNet18, and their evaluation
    params       parameter vectors: a network's weights as a point of weight space
    train        RunConfig and SGD training of one run
    population   the seeds of one grid cell trained together as one stacked model

Running and storing
    store        one folder per run, keyed by a hash of the full config; cached records
    tasks        expensive measurements as store-cached tasks on any executor
    runner       grid expansion, the serial / process / Ray executors, the grid runner
    tables       the tables the chapters write and read, and the meaning of each axis
    reproducibility  how far a run's numbers depend on the CPU kernel and its population

Local metrics (chapter 2)
    hessian      Hessian-vector products, top eigenvalues, trace, spectral density
    local        the Hessian metrics of every run of a grid, as tasks

Global metrics (chapter 3)
    connectivity Bezier curves, path evaluation, mode connectivity, MLI
    similarity   CKA (linear, RBF, debiased, minibatch), mixup, L2 distance
    global_metrics  the pair metrics and MLI of every cell of a grid, as tasks

Phases (chapters 4 and 5)
    taxonomy     per-cell tables, the phase classifier and phases with a confidence
    sweeps       chapter 4's epochs and label-noise sweeps
    reference    the authors' released metrics, read safely, and the shipped tables
    authors_grid the authors' grid classified like ours
    zoo          the Phase Transition Model Zoo's ten released grids in the book's columns
    findings     claims, verdicts and evidence computed from the tables
    protocol     how far a grid reproduces the paper's phase table (the default's targets)
    rugged       the one-dimensional rugged-convexity model

Large-scale structure (chapter 6)
    directions   directions through weight space, cuts, 2D loss surfaces
    simplex      low-loss simplices and tunnels between solutions
    align        weight matching (permutation alignment)
    large_scale  chapter 6's experiments as tasks, its tables and findings

The book
    plotting     one visual language: theme, colour rule, phase diagrams, widths
    widgets      live explorers in JupyterLab, static charts in the book
    chapters     the chapter files and their parameters cells
    book         the papermill/jupytext driver that builds the HTML book
    plan         the cost plan of a params file (``--plan``)
    doctor       a self-check of the machine (``python -m landscape_utils.doctor``)
"""

__version__ = "0.1.0"
