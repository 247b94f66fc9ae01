"""Resuming a stopped run: what a run's progress is, and the resume.npz that holds it.

After every epoch a run writes resume.npz into its folder (atomically): the running weights,
optimiser moments, schedule and random state, the best epoch so far, and the ensemble members
already finished. `make train RESUME=<run-id>` reads it and the run goes on exactly as if it
had not stopped (same seed, same BLAS threads: the same weights, bit for bit); the file is
removed when the run finishes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.config import Config
from kit.core.atomic import atomic_path
from kit.core.errors import KitError
from kit.nn.network import Network
from kit.run.model import MODEL_FORMAT, build_network
from kit.run.trainer import FitState


@dataclass
class Trained:
    """The members a run has trained so far, with their history and scores: what
    kit.run.train.train_members hands to finish_run, and the finished part of a resumed run."""

    members: list[Network]
    history: list[dict]
    member_metrics: list[dict]  # per member: best_epoch and, with validation rows, its own val score
    val_probs: list[np.ndarray]  # per member: validation probabilities (n_val, 10) from before any refit
    interrupted: bool


@dataclass
class Resume:
    """A stopped run's progress (load_resume): the members finished before the stop, the
    member it stopped in and in which phase ("fit", or "refit" on all rows), and that fit's state."""

    trained: Trained  # in the refit phase it holds the current member's scores too
    member: int
    phase: str
    fit: FitState
    current: Network | None  # refit phase: the member's network before the refit
    seconds: float  # training time before the stop


def pack_resume(
    trained: Trained,
    member: int,
    phase: str,
    state: FitState,
    running: dict,
    current: Network | None,
    seconds: float,
    train_path,
) -> tuple[dict, dict[str, np.ndarray]]:
    """(JSON-able meta, arrays) of a run's progress after an epoch; unpack_resume reverses it."""
    meta = {
        "format": MODEL_FORMAT,
        "member": member,
        "phase": phase,
        "seconds": seconds,
        "train_path": str(train_path),
        "history": trained.history,
        "member_metrics": trained.member_metrics,
        "n_members": len(trained.members),
        "fit": {
            "epoch": state.epoch,
            "history": state.history,
            "best_epoch": state.best_epoch,
            "best_key": state.best_key,
            "since_best": state.since_best,
            "schedule": running["schedule"],
            "rng": running["rng"],
        },
    }
    arrays = {f"network/{k}": v for k, v in running["network"].items()}
    arrays.update({f"optimizer/{k}": v for k, v in running["optimizer"].items()})
    arrays.update({f"best/{k}": v for k, v in (state.best or {}).items()})
    for i, network in enumerate(trained.members):
        arrays.update({f"member{i}/{k}": v for k, v in network.state().items()})
    for i, probs in enumerate(trained.val_probs):
        arrays[f"val_probs{i}"] = probs
    if current is not None:
        arrays.update({f"current/{k}": v for k, v in current.state().items()})
    return meta, arrays


def unpack_resume(config: Config, meta: dict, arrays: dict[str, np.ndarray]) -> Resume:
    def part(prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}

    def network(prefix: str) -> Network:
        # weights replaced by the stored ones; a run started by an older kit keeps its layer order
        built = build_network(config, np.random.default_rng(0), model_format=meta.get("format", 1))
        built.load_state(part(prefix))
        return built

    members = [network(f"member{i}/") for i in range(meta["n_members"])]
    val_probs = [
        arrays[f"val_probs{i}"] for i in range(len(meta["member_metrics"])) if f"val_probs{i}" in arrays
    ]
    trained = Trained(members, meta["history"], meta["member_metrics"], val_probs, False)
    fit_meta = meta["fit"]
    state = FitState(
        epoch=fit_meta["epoch"],
        history=fit_meta["history"],
        best_epoch=fit_meta["best_epoch"],
        best_key=tuple(fit_meta["best_key"]) if fit_meta["best_key"] else None,
        since_best=fit_meta["since_best"],
        best=part("best/") or None,
        running={
            "network": part("network/"),
            "optimizer": part("optimizer/"),
            "schedule": fit_meta["schedule"],
            "rng": fit_meta["rng"],
        },
    )
    current = network("current/") if meta["phase"] == "refit" else None
    return Resume(trained, meta["member"], meta["phase"], state, current, meta["seconds"])


RESUME_FILE = "resume.npz"


def save_resume(run_dir: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """A run's progress after an epoch (pack_resume), written atomically for `make train RESUME=`."""
    with atomic_path(run_dir / RESUME_FILE) as tmp:
        np.savez(tmp, meta_json=np.array(json.dumps(meta)), **arrays)


def load_resume(run_dir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a stopped run's resume.npz; one line when there is none or it is unreadable."""
    path = run_dir / RESUME_FILE
    if not path.exists():
        if (run_dir / "metrics.json").exists():
            raise KitError(
                f"{run_dir}: this run finished; nothing to resume (train a new one with `make train`)"
            )
        raise KitError(
            f"{run_dir}: no {RESUME_FILE} there; give the folder of a run that stopped after "
            f"at least one epoch (models/<run-id>)"
        )
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {k: stored[k] for k in stored.files}
        return json.loads(str(arrays.pop("meta_json"))), arrays
    except (OSError, ValueError, KeyError) as error:
        raise KitError(f"{path}: unreadable ({error}); the run cannot be resumed") from None


def drop_resume(run_dir: Path) -> None:
    (run_dir / RESUME_FILE).unlink(missing_ok=True)
