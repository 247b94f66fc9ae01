"""Many runs: `make sweep` over a search space, in local processes or on a Dask cluster.

    space.py         a space file (TOML/JSON): read, checked against the config, the trials planned
    runner.py        the sweep: trials trained, results.csv after each, resume, the ranking
    dask_cluster.py  trials on a Dask scheduler's workers, no shared filesystem needed

May import: core, nn, data, config, run
"""
