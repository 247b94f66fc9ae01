"""Many runs: `make sweep` over a search space, in local processes or on a Dask cluster.

    space.py         a space file (TOML/JSON): read, checked against the config, its trials drawn
    plan.py          the sweep's trials, its id, and what an earlier run of it recorded
    runner.py        `make sweep`: the missing trials trained, each recorded as it finishes
    results.py       the sweep folder: results.csv, tagged runs, the ranking
    dask_cluster.py  trials on a Dask scheduler's workers, no shared filesystem needed

May import: core, nn, data, config, run
"""
