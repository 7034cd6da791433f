"""The foundation: what every other layer may import (no book machinery).

Modules
    utils        device resolution, full-precision scope, seeding, atomic file writes
    settings     the settings dataclasses' ``from_params`` and the executor options
    params       parameter vectors: a network's weights as a point of weight space
    axes         what a grid's axes mean: load or temperature, and which end is hot
    data         datasets by name, load-like knobs (data_fraction, label_noise)
    models       width-scalable MLP, CNN and ResNet18, and their evaluation
    train        RunConfig and SGD training of one run
    population   the seeds of one grid cell trained together as one stacked model
    plotting     one visual language: theme, colour rule, phase diagrams, widths
"""
