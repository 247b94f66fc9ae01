"""The `kit` command line: train, submit, validate, demo, data, upload, check, bench, sweep.

Every KitError becomes one line on stderr and exit code 2; Ctrl-C exits 130 after the run in
progress has saved its best epoch.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .config import PRESETS, make_config, parse_int_tuple
from .errors import KitError

DEFAULT_COMPETITION = "digit-recognizer"


def _add_training_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that override the preset; None means 'keep the preset's value'."""
    g = parser.add_argument_group("hyperparameters (override the preset)")
    g.add_argument("--preset", default="default", choices=list(PRESETS), help="named configuration (default: default)")
    g.add_argument("--epochs", type=int, help="passes over the training rows")
    g.add_argument("--lr", type=float, help="(peak) learning rate")
    g.add_argument("--batch", dest="batch_size", type=int, help="rows per gradient step")
    g.add_argument("--hidden", help="hidden layer sizes, e.g. 128,64")
    g.add_argument("--channels", dest="conv_channels", help="cnn conv channels, e.g. 32,64")
    g.add_argument("--arch", choices=["mlp", "cnn"], help="network family")
    g.add_argument("--optimizer", help="sgd, momentum, nesterov, adam, adamw")
    g.add_argument("--schedule", help="constant, step, cosine, warmup_cosine, onecycle, plateau")
    g.add_argument("--momentum", type=float, help="momentum (adam: beta1)")
    g.add_argument("--weight-decay", type=float, help="L2 (sgd, adam) or decoupled (adamw) weight decay")
    g.add_argument("--dropout", type=float, help="dropout rate after hidden dense layers")
    g.add_argument("--batch-norm", type=_bool, metavar="0|1", help="batch normalisation on/off")
    g.add_argument("--augment", type=_bool, metavar="0|1", help="on-the-fly augmentation on/off")
    g.add_argument("--label-smoothing", type=float, help="label smoothing share")
    g.add_argument("--patience", type=int, help="early stopping after N epochs without improvement (0 = off)")
    g.add_argument("--refit", type=_bool, metavar="0|1", help="retrain on all rows for the best epoch count")
    g.add_argument("--ensemble", type=int, help="members with different seeds, probabilities averaged")
    g.add_argument("--tta", type=_bool, metavar="0|1", help="test-time augmentation on/off")
    g.add_argument("--seed", type=int, help="the one seed for init, split, shuffle, dropout, augmentation")
    g.add_argument("--val-fraction", type=float, help="stratified validation share (0 = train on all)")
    g.add_argument("--threads", dest="blas_threads", type=int,
                   help="BLAS threads for training (0 = measure 1 vs all once per machine)")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"{text!r}: give 1 or 0")


def config_from_args(args: argparse.Namespace):
    overrides = {name: getattr(args, name, None) for name in (
        "epochs", "lr", "batch_size", "arch", "optimizer", "schedule", "momentum", "weight_decay", "dropout",
        "batch_norm", "augment", "label_smoothing", "patience", "refit", "ensemble", "tta", "seed", "val_fraction",
        "blas_threads",
    )}
    if args.hidden:
        overrides["hidden"] = parse_int_tuple(args.hidden, "hidden")
    if args.conv_channels:
        overrides["conv_channels"] = parse_int_tuple(args.conv_channels, "channels")
    return make_config(args.preset, **overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kit", description="NumPy neural network kit for Kaggle's Digit Recognizer.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a network on train.csv and save the run under models/")
    p.add_argument("--train", default="data/train.csv", help="training CSV (default: data/train.csv)")
    p.add_argument("--model-dir", default="models", help="where runs are saved (default: models)")
    _add_training_flags(p)

    p = sub.add_parser("submit", help="predict test.csv with a trained model and write submission.csv")
    p.add_argument("--model", default="models", help="run folder, model.npz, or models/ for the latest run")
    p.add_argument("--test", default="data/test.csv", help="test CSV (default: data/test.csv)")
    p.add_argument("--sample", default="data/sample_submission.csv", help="checked against when present")
    p.add_argument("--out", default="submissions/submission.csv", help="where to write the submission")
    p.add_argument("--tta", type=_bool, metavar="0|1", help="override the model's test-time augmentation")

    p = sub.add_parser("validate", help="score a saved run again on its own validation rows (with and without TTA)")
    p.add_argument("--model", default="models", help="run folder, model.npz, or models/ for the latest run")
    p.add_argument("--train", default="data/train.csv", help="the train.csv the run was trained on")
    p.add_argument("--tta", type=_bool, metavar="0|1", help="only without (0) or with (1) test-time augmentation")

    p = sub.add_parser("demo", help="train and submit on the bundled real sample (offline, ~1 minute)")
    p.add_argument("--epochs", type=int, help="epochs (default: the demo's 15)")
    p.add_argument("--seed", type=int, help="seed")

    p = sub.add_parser("data", help="download the competition files into data/ with the official Kaggle client")
    p.add_argument("--competition", default=DEFAULT_COMPETITION)
    p.add_argument("--data-dir", default="data")
    p.add_argument("--force", action="store_true", help="download again even if valid files are there")
    p.add_argument("--zip", help="install from an archive you already have (no network)")

    p = sub.add_parser("upload", help="send a submission to the leaderboard with the official Kaggle client")
    p.add_argument("--file", default="submissions/submission.csv")
    p.add_argument("--message", help="submission message (default: names the run, preset and val accuracy)")
    p.add_argument("--competition", default=DEFAULT_COMPETITION)
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the score (default 60)")
    p.add_argument("--data-dir", default="data")

    p = sub.add_parser("check", help="check a submission file against Kaggle's format rules")
    p.add_argument("file", nargs="?", default="submissions/submission.csv")
    p.add_argument("--sample", default="data/sample_submission.csv")

    p = sub.add_parser("sweep", help="train one run per trial of a search space (local processes or a Dask "
                       "cluster), rank them; resumes")
    p.add_argument("--space", default="sweeps/default-mlp.toml", help="the space file (.toml or .json)")
    p.add_argument("--trials", type=int, help="trials to run (default: the space file's, or its whole grid)")
    p.add_argument("--jobs", type=int, default=1, help="local trials trained at once in processes (default 1)")
    p.add_argument("--scheduler", default=os.environ.get("DASK_SCHEDULER") or None,
                   help="a Dask scheduler, e.g. tcp://host:8786: its workers train the trials "
                        "(default: $DASK_SCHEDULER; unset: local processes)")
    p.add_argument("--train", default="data/train.csv", help="training CSV (default: data/train.csv)")
    p.add_argument("--model-dir", default="models", help="where the trials' runs are saved (default: models)")
    p.add_argument("--sweep-dir", default="sweeps", help="where the sweep's folder goes (default: sweeps)")
    _add_training_flags(p)

    p = sub.add_parser("bench", help="benchmark speed and accuracy; prints tables and writes bench/")
    p.add_argument("--train", default="data/train.csv")
    p.add_argument("--part", choices=["speed", "accuracy", "all", "sweep"], default="all",
                   help="all = speed and accuracy; sweep (8 short trials: one by one, 2 processes, a 2-worker "
                        "Dask cluster) only on its own")
    p.add_argument("--seeds", type=int, default=3, help="seeds for the default preset's accuracy")
    p.add_argument("--presets", default="reference,default,best", help="presets to train in the accuracy part")
    p.add_argument("--jobs", type=int, default=1, help="accuracy runs trained at once in processes (default 1: "
                   "timings undisturbed)")
    p.add_argument("--out", default="bench", help="folder for the result files")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("train", "submit", "validate", "demo", "bench", "sweep"):
        from .blas import cap_blas_threads

        cap_blas_threads()  # no more BLAS threads than cores (a container's quota included)
    try:
        return COMMANDS[args.command](args) or 0
    except KitError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def cmd_train(args) -> int:
    from .train import train_run

    config = config_from_args(args)
    train_run(config, args.train, args.model_dir)
    return 0


def cmd_submit(args) -> int:
    from .submit import submit_run

    submit_run(args.model, args.test, args.out, args.sample, tta=args.tta)
    return 0


def cmd_validate(args) -> int:
    from .runs import validate_run

    validate_run(args.model, args.train, args.tta)
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(epochs=args.epochs, seed=args.seed)
    return 0


def cmd_data(args) -> int:
    from . import kaggle_io

    kaggle_io.run_data(args.competition, Path(args.data_dir), args.force, Path(args.zip) if args.zip else None)
    return 0


def cmd_upload(args) -> int:
    from . import kaggle_io

    kaggle_io.run_upload(Path(args.file), args.message, args.competition, args.wait, Path(args.data_dir))
    return 0


def cmd_check(args) -> int:
    from .submit import check_submission_file

    n = check_submission_file(args.file, sample_path=args.sample)
    print(f"{args.file}: OK, {n} rows, header ImageId,Label, ids 1..{n}, labels 0..9")
    return 0


def cmd_bench(args) -> int:
    from .bench import run_bench

    run_bench(args)
    return 0


def cmd_sweep(args) -> int:
    from .sweep import run_sweep

    base = config_from_args(args)
    preset = make_config(args.preset)
    overrides = {name: getattr(base, name) for name in base.to_dict()
                 if getattr(base, name) != getattr(preset, name)}  # what the command line changed
    run_sweep(args.space, args.preset, overrides, args.train, args.model_dir, args.sweep_dir,
              n_trials=args.trials, n_jobs=args.jobs, scheduler=args.scheduler)
    return 0


COMMANDS = {
    "train": cmd_train, "submit": cmd_submit, "validate": cmd_validate, "demo": cmd_demo, "data": cmd_data,
    "upload": cmd_upload, "check": cmd_check, "bench": cmd_bench, "sweep": cmd_sweep,
}
