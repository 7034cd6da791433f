"""Experiments of chapters 2 to 6: grids of measurements, phases, findings (imports
``core``, ``runs`` and ``metrics``).

Modules
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
    derive       the command line that derives the shipped tables (reference and zoo)
"""
