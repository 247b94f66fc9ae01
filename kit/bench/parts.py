"""`make bench PART=...`: which part measures what, and the one entry point for all of them.

    run_bench("speed", train_path="data/train.csv")    # bench/speed.md and bench/speed.json

Parts: speed and accuracy (PART=all runs both), onnx, serve and sweep (each only on its own).
Every part publishes a markdown table and the JSON behind it to bench/ (kit.bench.measure),
each with the machine and its load; the speed and accuracy targets live there, never in tests.
"""

from __future__ import annotations

from pathlib import Path

from kit.core.errors import KitError

PARTS = ("speed", "accuracy", "all", "onnx", "serve", "sweep")


def run_bench(
    part: str = "all",
    train_path: str | Path = "data/train.csv",
    out: str | Path = "bench",
    model: str = "models",
    seeds: int = 3,
    presets: str = "reference,default,best",
    jobs: int = 1,
    speed_sizes=None,
    accuracy_epochs: int | None = None,
) -> dict:
    """Run one part (or speed and accuracy for "all") and return {part: its result}. `model`:
    the onnx part's runs (comma-separated); `seeds`, `presets`, `jobs`: the accuracy part's;
    speed_sizes / accuracy_epochs make the parts small (the tests)."""
    out = Path(out)
    if part not in PARTS:
        raise KitError(f"PART={part}: choose one of {', '.join(PARTS)}")
    if part == "serve":  # needs no train.csv: untrained networks of each preset's shape
        from kit.bench.serve import run_serve_bench

        return {"serve": run_serve_bench(out)}
    train_path = Path(train_path)
    if not train_path.is_file():
        raise KitError(
            f"{train_path}: file not found; run `make data` first (the bench needs the "
            "competition's train.csv)"
        )
    results = {}
    if part == "onnx":
        from kit.bench.onnx import run_onnx_bench

        results["onnx"] = run_onnx_bench(train_path, model, out)
    if part in ("speed", "all"):
        from kit.bench.speed import run_speed_bench

        results["speed"] = run_speed_bench(train_path, out, speed_sizes)
    if part in ("accuracy", "all"):
        from kit.bench.accuracy import run_accuracy_bench

        names = [p.strip() for p in presets.split(",") if p.strip()]
        results["accuracy"] = run_accuracy_bench(train_path, out, names, seeds, jobs, accuracy_epochs)
    if part == "sweep":
        from kit.bench.sweep import run_sweep_bench

        results["sweep"] = run_sweep_bench(train_path, out)
    return results
