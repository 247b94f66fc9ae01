"""`make bench PART=sweep`: the same short sweep one trial after another, in 2 local processes,
and on a 2-worker Dask LocalCluster (separate processes on 127.0.0.1), interleaved round by
round so that all three see the same machine load. Tables: bench/sweep.md, bench/sweep.json.

What it reports per backend and round: wall seconds of the whole sweep (from planning to the
ranking, results written), the trials' own seconds summed (as each process timed its run),
the speed-up over one-by-one, and the overhead per trial: for the parallel backends
(wall x 2 slots - trial seconds) / trials, the time a slot was not training; for Dask also the
difference to the 2 local processes per trial. The Dask cluster is started once before the
rounds (its start-up is reported on its own, not charged to trials); each Dask sweep pays its
connection, the scatter of train.csv and sending the runs back.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

from kit.core.console import log

MODES = ("one by one", "2 processes", "dask 2 workers")


def sweep_bench(
    train_path: str | os.PathLike,
    trials: int = 8,
    epochs: int = 3,
    preset: str = "reference",
    rounds: int = 2,
    say=log,
) -> dict:
    """Time a grid of `trials` learning rates (the preset, `epochs` epochs) with each backend,
    `rounds` times interleaved. Returns the measurements (see the module docstring)."""
    from kit.core.machine import load_average, machine_info
    from kit.sweep.dask_cluster import local_cluster
    from kit.sweep.runner import run_sweep

    lrs = [round(0.005 * 1.35**i, 4) for i in range(trials)]
    space_text = f'method = "grid"\n\n[fixed]\nepochs = {epochs}\n\n[space]\nlr = {lrs}\n'
    result = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_average_before": load_average(),
        "train": str(train_path),
        "preset": preset,
        "epochs": epochs,
        "trials": trials,
        "rounds": [],
    }
    with tempfile.TemporaryDirectory(prefix="kit-sweep-bench-") as tmp:
        space = Path(tmp) / "bench.toml"
        space.write_text(space_text)
        say(
            f"sweep bench: {trials} trials ({preset}, {epochs} epochs), {rounds} rounds of: "
            + ", ".join(MODES)
        )
        started = time.perf_counter()
        with local_cluster(n_workers=2) as cluster:
            result["cluster_start_seconds"] = time.perf_counter() - started
            for number in range(rounds):
                measured = {}
                for mode in MODES:
                    folder = Path(tmp) / f"round{number}-{mode.replace(' ', '-')}"
                    options = {
                        "one by one": dict(n_jobs=1),
                        "2 processes": dict(n_jobs=2, threads=1),
                        "dask 2 workers": dict(scheduler=cluster.scheduler_address, threads=1),
                    }[mode]
                    began = time.perf_counter()
                    with contextlib.redirect_stdout(io.StringIO()):  # the trials' lines and rankings
                        sweep = run_sweep(
                            space, preset, {}, train_path, folder / "models", folder / "sweeps", **options
                        )
                    wall = time.perf_counter() - began
                    rows = [sweep.rows[n] for n in sorted(sweep.rows)]
                    measured[mode] = {
                        "wall_seconds": wall,
                        "trial_seconds": sum(float(r["seconds"]) for r in rows),
                        "val_accuracy": [r["val_accuracy"] for r in rows],
                        "workers": sorted({r["worker"] for r in rows}),
                    }
                    say(f"  round {number + 1}, {mode}: {wall:.1f} s")
                result["rounds"].append(measured)
    result["load_average_after"] = load_average()
    return result


def sweep_markdown(result: dict) -> str:
    trials = result["trials"]
    lines = [
        "# Sweep backends (`make bench PART=sweep`)",
        "",
        f"Measured {result['date']} on {result['train']}: {trials} trials of the {result['preset']} preset "
        f"({result['epochs']} epochs each, a grid of learning rates), each backend in turn, "
        f"{len(result['rounds'])} rounds interleaved.",
        "",
    ]
    from kit.core.machine import describe_machine

    lines += describe_machine(result["machine"])
    lines += [
        f"- Load average before: {result['load_average_before']}, after: {result['load_average_after']}",
        f"- Dask LocalCluster start (2 worker processes, once): {result['cluster_start_seconds']:.1f} s",
        "",
        "| round | backend | wall s | trials' own s | speed-up | overhead per trial |",
        "|---|---|---|---|---|---|",
    ]
    for number, measured in enumerate(result["rounds"], start=1):
        alone = measured["one by one"]["wall_seconds"]
        local = measured["2 processes"]["wall_seconds"]
        for mode, m in measured.items():
            wall, own = m["wall_seconds"], m["trial_seconds"]
            if mode == "one by one":
                overhead = f"{(wall - own) / trials:.2f} s (outside the trials)"
            else:
                overhead = f"{(wall * 2 - own) / trials:.2f} s idle per slot"
                if mode.startswith("dask"):
                    overhead += f"; {(wall - local) / trials:+.2f} s vs 2 processes"
            lines.append(f"| {number} | {mode} | {wall:.1f} | {own:.1f} | {alone / wall:.2f}x | {overhead} |")
    same = all(
        r["2 processes"]["val_accuracy"] == r["dask 2 workers"]["val_accuracy"] for r in result["rounds"]
    )
    lines += [
        "",
        f"Validation accuracies of the {trials} trials: 2 processes and Dask "
        f"{'identical' if same else 'DIFFERENT'} in every round (both one BLAS thread per trial); "
        "one by one uses every core's BLAS thread for its one trial.",
        "",
        "On 2 cores the parallel backends can at best halve the wall time. *Idle per slot*: "
        "(wall x 2 - the trials' own seconds) / trials, time a slot spent not training (process "
        "start, imports, loading the data, writing runs, waiting for the last trial); the Dask row's "
        "second figure is its extra wall time per trial over 2 local processes (connection, "
        "scatter of train.csv, runs sent back).",
    ]
    return "\n".join(lines) + "\n"


def run_sweep_bench(train_path: Path, out: Path, rounds: int = 3) -> dict:
    """The sweep part: measure the three backends, interleaved, publish."""
    from kit.bench.measure import publish

    result = sweep_bench(train_path, rounds=rounds)
    publish(out, "sweep", result, sweep_markdown(result))
    return result
