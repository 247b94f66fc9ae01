"""Measuring on a shared machine: repeated timings with their spread, and publishing a result.

Speed on a 2-core VM drifts by up to 2x between hours, so a figure means something only beside
another measured in the same run, interleaved; every part of the bench reports medians with
their min-max range, and the machine and its load with every table (kit.core.machine).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from kit.core.atomic import atomic_open
from kit.core.console import log


def repeat_timing(fn: Callable[[], object], repeats: int, min_seconds: float = 0.02) -> list[float]:
    """Seconds per call of fn, once per repetition; each repetition loops enough calls to last
    at least min_seconds, so the clock's resolution does not matter."""
    fn()
    started = time.perf_counter()
    fn()
    once = max(time.perf_counter() - started, 1e-7)
    number = max(1, math.ceil(min_seconds / once))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - started) / number)
    return times


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def spread(values: list[float], fmt: str = "{:.3f}") -> str:
    """'median (min-max, n=5)'."""
    s = summary(values)
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])}, n={s['n']})"


def publish(out: str | Path, name: str, result: dict, markdown: str) -> Path:
    """One bench part's result: <out>/<name>.json (every number) and <out>/<name>.md (the table),
    each written atomically, and the table printed. Returns the .md path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / f"{name}.json", "w") as handle:
        handle.write(json.dumps(result, indent=2) + "\n")
    with atomic_open(out / f"{name}.md", "w") as handle:
        handle.write(markdown)
    log("\n" + markdown + f"\n(written to {out / name}.md)\n")
    return out / f"{name}.md"
