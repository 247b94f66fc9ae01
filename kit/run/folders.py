"""Run folders: naming, writing and finding them, and scoring a saved run again.

A run folder `models/<run-id>/` holds:
    model.npz      every array needed to predict, plus the config (np.load(allow_pickle=False))
    config.json    the full resolved Config
    history.csv    member, epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds
    metrics.json   best epoch, validation accuracy and loss, per-class accuracy, confusion matrix
`models/latest` links to the newest run (`latest.txt` names it where links fail).
"""

from __future__ import annotations

import csv
import json
import os
from datetime import datetime
from pathlib import Path

from kit.config import Config, validate
from kit.core.atomic import atomic_open
from kit.core.console import log
from kit.core.errors import KitError
from kit.core.mnist import N_CLASSES
from kit.run.model import Model

HISTORY_FIELDS = ["member", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]


def new_run_id(config: Config, model_dir: Path) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{config.preset}-s{config.seed}"
    run_id, n = base, 1
    while (model_dir / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def start_run(config: Config, model_dir: Path) -> Path:
    """Claim a new run folder (its name cannot be taken twice, even by a parallel run) and
    write its config.json."""
    model_dir.mkdir(parents=True, exist_ok=True)
    while True:
        run_dir = model_dir / new_run_id(config, model_dir)
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            continue
    with atomic_open(run_dir / "config.json", "w") as handle:
        handle.write(config.to_json() + "\n")
    return run_dir


def save_checkpoint(run_dir: Path, model: Model, history: list[dict]) -> None:
    """The best weights so far and the epochs behind them, written whenever they improve, so
    that a crash or a kill loses no more than the epoch in progress. `make submit
    MODEL=<run folder>` can use them; metrics.json comes only with the finished run."""
    model.meta = {
        "run_id": run_dir.name,
        "preset": model.config.preset,
        "val_accuracy": None,
        "partial": True,
    }
    write_history(run_dir / "history.csv", history)
    model.save(run_dir / "model.npz")


def load_run_config(run_dir: Path) -> Config:
    """A run's config.json, its types and values checked (a resumed run trains with it)."""
    path = run_dir / "config.json"
    try:
        config = Config.from_dict(json.loads(path.read_text()), where=str(path))
        validate(config)
        return config
    except FileNotFoundError:
        raise KitError(f"{run_dir}: not a run folder (no config.json); give models/<run-id>") from None
    except ValueError as error:
        raise KitError(f"{run_dir / 'config.json'}: unreadable ({error})") from None


def write_history(path: Path, history: list[dict]) -> None:
    with atomic_open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        for row in history:
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})


def save_run(run_dir: Path, model: Model, history: list[dict], metrics: dict) -> None:
    """Write the finished run's files, each atomically (model.npz last: it marks the run complete
    together with metrics.json)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_history(run_dir / "history.csv", history)
    with atomic_open(run_dir / "config.json", "w") as handle:
        handle.write(model.config.to_json() + "\n")
    with atomic_open(run_dir / "metrics.json", "w") as handle:
        json.dump(metrics, handle, indent=2)
        handle.write("\n")
    model.save(run_dir / "model.npz")


def point_latest(model_dir: Path, run_id: str) -> None:
    """Make model_dir/latest a symlink to the run (swapped atomically); a file naming it where links fail."""
    latest = model_dir / "latest"
    tmp = model_dir / f".latest.{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(run_id, tmp, target_is_directory=True)
        if latest.exists() and not latest.is_symlink() and latest.is_dir():
            raise OSError("models/latest is a real folder")
        os.replace(tmp, latest)
    except OSError:
        if tmp.is_symlink():
            tmp.unlink()
        with atomic_open(model_dir / "latest.txt", "w") as handle:
            handle.write(run_id + "\n")


def resolve_model(path: str | os.PathLike, demo_fallback: bool = False) -> Path:
    """A run folder, a model.npz, or models/ (its latest run) -> the model.npz path. With
    demo_fallback, a models/ without runs of its own gives `make demo`'s latest run
    (models/demo/), so that `make demo && make serve` (or `make export`) works on a fresh clone."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / "model.npz").exists():
        return path / "model.npz"
    if (path / "latest" / "model.npz").exists():
        return path / "latest" / "model.npz"
    if (path / "latest.txt").exists():
        return path / (path / "latest.txt").read_text().strip() / "model.npz"
    if demo_fallback and (path / "demo").is_dir():
        model_file = resolve_model(path / "demo")
        log(f"no run of `make train` in {path}/; using the demo's latest run ({model_file.parent})")
        return model_file
    raise KitError(
        f"{path}: no trained model there; run `make demo` (on the bundled sample) or "
        f"`make train` first, or give MODEL=path/to/run"
    )


def resolve_run_dir(path: str | os.PathLike, demo_fallback: bool = False) -> Path:
    """Like resolve_model, but the run's own folder (models/latest followed to models/<run-id>)."""
    return resolve_model(path, demo_fallback).resolve().parent


def summary(run_dir: Path, metrics: dict) -> str:
    lines = ["", f"run saved in {run_dir}/ (model.npz, config.json, history.csv, metrics.json)"]
    lines.append(
        f"best epoch {metrics['best_epoch']}" + (" (refit on all rows)" if metrics.get("refit") else "")
    )
    if "val_accuracy" in metrics:
        lines.append(
            f"validation accuracy {metrics['val_accuracy']:.4f}, loss {metrics['val_loss']:.4f} "
            f"on {metrics['n_val']} rows"
        )
    if "confusion_matrix" in metrics:
        lines.append("confusion matrix (rows: true label, columns: predicted):")
        lines.append("      " + " ".join(f"{c:>5}" for c in range(N_CLASSES)))
        for label, row in enumerate(metrics["confusion_matrix"]):
            lines.append(f"  {label:>2}  " + " ".join(f"{v:>5}" for v in row))
    lines.append(f"total {metrics['seconds']:.1f}s")
    return "\n".join(lines)
