"""landscape_utils: the numerics behind landscape-book.

Modules, one concern each, in five layers: a module imports only from its own layer or
the layers above it in this list (``tests/test_imports.py`` checks every import, those
inside functions included). The Methods appendix, ``book/07_methods.py``, defines every
metric and procedure.

Foundation
    utils        device resolution, full-precision scope, seeding, atomic file writes
    settings     the settings dataclasses' ``from_params`` and the executor options
    params       parameter vectors: a network's weights as a point of weight space
    axes         what a grid's axes mean: load or temperature, and which end is hot
    data         datasets by name, load-like knobs (data_fraction, label_noise)
    models       width-scalable MLP, CNN and ResNet18, and their evaluation
    train        RunConfig and SGD training of one run
    population   the seeds of one grid cell trained together as one stacked model
    plotting     one visual language: theme, colour rule, phase diagrams, widths

Runs: storing and running
    store        one folder per run, keyed by a hash of the full config; cached records
    runner       grid expansion, the serial / process / Ray executors, the grid runner
    tasks        expensive measurements as store-cached tasks on any executor
    tables       the tables the chapters write and read
    reproducibility  how far a run's numbers depend on the CPU kernel and its population

Metrics
    profiles     what a profile along a path says: the mc metric, MLI bumps (no torch)
    hessian      Hessian-vector products, top eigenvalues, trace, spectral density
    similarity   CKA (linear, RBF, debiased, minibatch), mixup, L2 distance
    connectivity Bezier curves, path evaluation, the SGD loop of every path fit, MLI
    directions   directions through weight space, cuts, 2D loss surfaces
    simplex      low-loss simplices and tunnels between solutions
    align        weight matching (permutation alignment)

Experiments (chapters 2 to 6)
    local        the Hessian metrics of every run of a grid, as tasks (chapter 2)
    global_metrics  the pair metrics and MLI of every cell of a grid, as tasks (chapter 3)
    taxonomy     per-cell tables, the phase classifier and phases with a confidence
    findings     claims, verdicts and evidence computed from the tables
    sweeps       chapter 4's epochs and label-noise sweeps
    protocol     how far a grid reproduces the paper's phase table (the default's targets)
    reference    the authors' released metrics, read safely, and the shipped tables
    authors_grid the authors' grid classified like ours
    zoo          the Phase Transition Model Zoo's ten released grids in the book's columns
    rugged       the one-dimensional rugged-convexity model (chapter 5)
    large_scale  chapter 6's experiments as tasks, its tables and findings

The book
    chapters     the chapter files and their parameters cells
    book         the papermill/jupytext driver that builds the HTML book
    plan         the cost plan of a params file (``--plan``)
    doctor       a self-check of the machine (``python -m landscape_utils.doctor``)
    widgets      live explorers in JupyterLab, static charts in the book
"""

__version__ = "0.1.0"
