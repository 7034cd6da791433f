"""Runs: storing and running (imports only ``core``).

Modules
    store        one folder per run, keyed by a hash of the full config; cached records
    runner       grid expansion, the serial / process / Ray executors, the grid runner
    tasks        expensive measurements as store-cached tasks on any executor
    tables       the tables the chapters write and read
    reproducibility  how far a run's numbers depend on the CPU kernel and its population
"""
