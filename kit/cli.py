"""The `kit` command line: train, submit, validate, demo, data, upload, check, bench, export, report,
runs, serve, sweep, config. The Makefile's targets call it; each command calls the one function
of the kit that does its job.

Every KitError becomes one line on stderr and exit code 2; Ctrl-C exits 130 after the run in
progress has saved its best epoch.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from kit import config
from kit.core.console import log
from kit.core.errors import KitError

DEFAULT_COMPETITION = "digit-recognizer"
MODEL_HELP = "run folder, model.npz, or models/ for the latest run"

# --------------------------------------------------------------------------- settings from the command line


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Config field (kit/config.py); None means 'keep the preset's value'."""
    group = parser.add_argument_group("hyperparameters (override the preset; each also a Make variable)")
    for name in config.CONFIG_FIELDS:
        kind = config.field_type(name)
        metavar = {bool: "0|1", tuple: "N,N", int: "N", float: "X"}.get(kind, name.split("_")[0].upper())
        help = f"{help_text(name)} ({config.make_variable(name)}=)"
        group.add_argument(config.flag(name), dest=name, metavar=metavar, help=help)
    group.add_argument(
        "--make-vars",
        metavar="NAMES",
        default="",
        help="the variables given on make's command "
        "line (the Makefile passes them): each setting among them is read from the environment",
    )


def given_settings(args: argparse.Namespace, environ=None) -> dict[str, str]:
    """Config field -> its text, for the settings given: the Make variables named in --make-vars
    (read from the environment, where make puts its command-line variables), then the flags.
    A variable that is only exported in the shell is not on make's command line: not given."""
    environ = os.environ if environ is None else environ
    named = set(getattr(args, "make_vars", "").split())
    texts = {}
    for name in config.CONFIG_FIELDS:
        variable = config.make_variable(name)
        if variable in named and environ.get(variable, "").strip():
            texts[name] = environ[variable]
        if getattr(args, name, None) is not None:
            texts[name] = getattr(args, name)
    return texts


def config_from_args(
    args: argparse.Namespace, environ=None, preset: str = "default", **defaults
) -> config.Config:
    """The preset, then `defaults`, then the settings given (given_settings); a note for each
    given setting the config makes do nothing."""
    texts = given_settings(args, environ)
    preset = texts.pop("preset", preset).strip()
    values = {**defaults, **{name: config.parse_value(name, text) for name, text in texts.items()}}
    made = config.make_config(preset, **values)
    for line in config.ignored_settings(made, list(texts)):
        log(f"note: {line}")
    return made


def _bool(text: str) -> bool:
    """argparse type of a 0|1 flag."""
    if text.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if text.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r}: give 1 or 0")


# --------------------------------------------------------------------------- the settings table
# What `make help`, `kit train --help` and the README's variables table show.


def help_text(name: str) -> str:
    """The field's help line, with its choices when it has any."""
    text, names = config.CONFIG_FIELDS[name].metadata["help"], config.choices(name)
    return f"{text}: {', '.join(names)}" if names else text


def preset_values(name: str) -> list[str]:
    """The field's value in each preset, in PRESETS order."""
    defaults = config.Config()
    return [
        config.format_value(values.get(name, getattr(defaults, name))) for values in config.PRESETS.values()
    ]


def markdown_table() -> str:
    """The README's variables table: one row per Config field."""
    names = config.PRESETS
    rows = [f"| variable | flag | meaning | {' | '.join(names)} |", "|---|---|---|" + "---|" * len(names)]
    for name in config.CONFIG_FIELDS:
        values = " | ".join(preset_values(name)) if name != "preset" else " | " * (len(names) - 1)
        rows.append(
            f"| `{config.make_variable(name)}` | `{config.flag(name)}` | {help_text(name)} | {values} |"
        )
    return "\n".join(rows) + "\n"


def make_help() -> str:
    """`make help`'s variables part: one line per Config field, with each preset's value."""
    lines = [f"Hyperparameters (empty = the preset's value; presets: {', '.join(config.PRESETS)}):"]
    for name in config.CONFIG_FIELDS:
        values = "" if name == "preset" else "  [" + " / ".join(preset_values(name)) + "]"
        lines.append(f"  {config.make_variable(name) + '=':<17}{help_text(name)}{values}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the parser


# fmt: off
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kit",
                                     description="NumPy neural network kit for Kaggle's Digit Recognizer.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a network on train.csv and save the run under models/")
    p.add_argument("--train", default="data/train.csv", help="training CSV (default: data/train.csv)")
    p.add_argument("--model-dir", default="models", help="where runs are saved (default: models)")
    p.add_argument("--resume", metavar="RUN", help="continue a stopped run (its folder, or its id under "
                   "--model-dir) from its last finished epoch, with its own settings")
    p.add_argument("--report", type=_bool, default=True, metavar="0|1",
                   help="write the run's report.html (default 1)")
    add_config_flags(p)

    p = sub.add_parser("submit", help="predict test.csv with a trained model and write submission.csv")
    p.add_argument("--model", default="models", help=MODEL_HELP)
    p.add_argument("--test", default="data/test.csv", help="test CSV (default: data/test.csv)")
    p.add_argument("--sample", default="data/sample_submission.csv", help="checked against when present")
    p.add_argument("--out", default="submissions/submission.csv", help="where to write the submission")
    p.add_argument("--tta", type=_bool, metavar="0|1", help="override the model's test-time augmentation")
    p.add_argument("--onnx", help="predict with this exported model.onnx through onnxruntime instead")

    p = sub.add_parser("export", help="write a run's network as ONNX (and QUANTIZE=1: an int8 copy)")
    p.add_argument("--model", default="models", help=MODEL_HELP)
    p.add_argument("--out", help="the .onnx file (default: models/<run-id>/model.onnx)")
    p.add_argument("--quantize", type=_bool, metavar="0|1", default=False,
                   help="also write <out>.int8.onnx (static int8, calibrated on the run's training rows)")
    p.add_argument("--train",
                   help="the run's train.csv, for quantizing (default: the one its metrics.json names)")
    p.add_argument("--tta", type=_bool, metavar="0|1",
                   help="TTA inside the graph (default: the model's setting)")

    p = sub.add_parser("validate",
                       help="score a saved run again on its own validation rows (with and without TTA)")
    p.add_argument("--model", default="models", help=MODEL_HELP)
    p.add_argument("--train", default="data/train.csv", help="the train.csv the run was trained on")
    p.add_argument("--tta", type=_bool, metavar="0|1",
                   help="only without (0) or with (1) test-time augmentation")

    p = sub.add_parser("report",
                       help="write a run's report.html: learning curves, confusion matrix, mistakes")
    p.add_argument("--model", default="models", help="run folder, or models/ for the latest run")
    p.add_argument("--submissions", default="submissions",
                   help="where `make submit` wrote (for the test rows)")

    p = sub.add_parser("runs", help="table of every run with validation and public leaderboard scores")
    p.add_argument("--models", default="models", help="folder of runs (default: models)")
    p.add_argument("--uploads", default="submissions/history.csv", help="what `make upload` recorded")

    p = sub.add_parser("demo", help="train, submit and report on the bundled real sample, offline")
    add_config_flags(p)  # every training setting works here too; EPOCHS defaults to the demo's

    p = sub.add_parser("data",
                       help="download the competition files into data/ with the official Kaggle client")
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

    p = sub.add_parser("config", help="the settings table: --markdown (README), --make-help (make help)")
    p.add_argument("--markdown", action="store_true", help="the README's variables table")
    p.add_argument("--make-help", action="store_true", help="the variables part of `make help`")

    p = sub.add_parser("check", help="check a submission file against Kaggle's format rules")
    p.add_argument("file", nargs="?", default="submissions/submission.csv")
    p.add_argument("--sample", default="data/sample_submission.csv")

    p = sub.add_parser("sweep", help="train one run per trial of a search space (local processes or a Dask "
                       "cluster), rank them; resumes")
    p.add_argument("--space", default="sweeps/default-mlp.toml", help="the space file (.toml or .json)")
    p.add_argument("--trials", type=int, help="trials to run (default: the space file's, or its whole grid)")
    p.add_argument("--jobs", type=int, default=1,
                   help="local trials trained at once in processes (default 1)")
    p.add_argument("--scheduler", default=os.environ.get("DASK_SCHEDULER") or None,
                   help="a Dask scheduler, e.g. tcp://host:8786: its workers train the trials "
                   "(default: $DASK_SCHEDULER; unset: local processes)")
    p.add_argument("--train", default="data/train.csv", help="training CSV (default: data/train.csv)")
    p.add_argument("--model-dir", default="models", help="where the trials' runs are saved (default: models)")
    p.add_argument("--sweep-dir", default="sweeps", help="where the sweep's folder goes (default: sweeps)")
    add_config_flags(p)

    p = sub.add_parser("serve",
                       help="a web page to draw digits on and watch the model read them, and a JSON API")
    p.add_argument("--model", default="models", help=MODEL_HELP + " (falls back to models/demo)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")

    p = sub.add_parser("bench", help="benchmark speed and accuracy; prints tables and writes bench/")
    p.add_argument("--train", default="data/train.csv")
    p.add_argument("--part", choices=("speed", "accuracy", "all", "onnx", "serve", "sweep"), default="all",
                   help="all = speed and accuracy; onnx, serve and sweep run only on their own")
    p.add_argument("--model", default="models",
                   help="onnx part: the runs to export and time (default: latest)")
    p.add_argument("--seeds", type=int, default=3, help="seeds for the default preset's accuracy")
    p.add_argument("--presets", default="reference,default,best",
                   help="presets to train in the accuracy part")
    p.add_argument("--jobs", type=int, default=1,
                   help="accuracy runs trained at once (default 1: undisturbed)")
    p.add_argument("--out", default="bench", help="folder for the result files")
    return parser
# fmt: on


# --------------------------------------------------------------------------- the commands

COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {}


def command(name: str):
    """Register the function that runs `kit <name>`."""

    def register(function):
        COMMANDS[name] = function
        return function

    return register


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("train", "submit", "validate", "demo", "bench", "export", "sweep"):
        from kit.core.blas import cap_blas_threads

        cap_blas_threads()  # no more BLAS threads than cores (a container's quota included)
    try:
        COMMANDS[args.command](args)
        return 0
    except KitError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


@command("train")
def _train(args) -> None:
    from kit.run.train import resume_run, train_run

    if args.resume:
        given = given_settings(args)
        if given:
            name = next(iter(given))
            raise KitError(
                f"{config.make_variable(name)}={given[name]}: a resumed run keeps its own settings; "
                "drop it, or train a new run without RESUME="
            )
        run_dir = Path(args.resume)
        run_dir = resume_run(run_dir if run_dir.is_dir() else Path(args.model_dir) / args.resume, args.train)
    else:
        run_dir = train_run(config_from_args(args), args.train, args.model_dir)
    if args.report:
        from kit.report.page import write_report

        try:
            log(f"report: {write_report(run_dir).path}")
        except KitError as error:  # the run is saved; a report that cannot be written does not undo it
            log(f"report not written: {error}; `make report MODEL={run_dir}` tries again")


@command("demo")
def _demo(args) -> None:
    from kit.demo import DEMO_EPOCHS, run_demo

    run_demo(config_from_args(args, epochs=DEMO_EPOCHS))


@command("submit")
def _submit(args) -> None:
    if args.onnx:
        from kit.onnx.predict import submit_onnx

        submit_onnx(args.onnx, args.test, args.out, args.sample, tta=args.tta)
    else:
        from kit.run.predict import submit_run

        submit_run(args.model, args.test, args.out, args.sample, tta=args.tta)


@command("validate")
def _validate(args) -> None:
    from kit.run.predict import validate_run

    validate_run(args.model, args.train, args.tta)


@command("export")
def _export(args) -> None:
    from kit.onnx.export import export_run

    export_run(args.model, args.out, quantize=args.quantize, train_path=args.train, tta=args.tta)


@command("report")
def _report(args) -> None:
    from kit.report.page import write_report

    log(f"report: {write_report(args.model, args.submissions).path}")


@command("runs")
def _runs(args) -> None:
    from kit.report.runs_table import list_runs

    list_runs(args.models, args.uploads)


@command("data")
def _data(args) -> None:
    from kit.kaggle.download import run_data

    run_data(args.competition, Path(args.data_dir), args.force, Path(args.zip) if args.zip else None)


@command("upload")
def _upload(args) -> None:
    from kit.kaggle.upload import run_upload

    run_upload(Path(args.file), args.message, args.competition, args.wait, Path(args.data_dir))


@command("check")
def _check(args) -> None:
    from kit.data.submission import check_submission_file

    n = check_submission_file(args.file, sample_path=args.sample)
    log(f"{args.file}: OK, {n} rows, header ImageId,Label, ids 1..{n}, labels 0..9")


@command("config")
def _config(args) -> None:
    print(markdown_table() if args.markdown else make_help(), end="")


@command("serve")
def _serve(args) -> None:
    from kit.serve.app import run_server

    run_server(args.model, args.host, args.port)


@command("bench")
def _bench(args) -> None:
    from kit.bench.parts import run_bench

    run_bench(args.part, args.train, args.out, args.model, args.seeds, args.presets, args.jobs)


@command("sweep")
def _sweep(args) -> None:
    from kit.sweep.runner import run_sweep

    base = config_from_args(args)
    preset = config.make_config(base.preset)  # the base's own values; the command line's differ
    overrides = {n: getattr(base, n) for n in config.CONFIG_FIELDS if getattr(base, n) != getattr(preset, n)}
    run_sweep(
        args.space,
        base.preset,
        overrides,
        args.train,
        args.model_dir,
        args.sweep_dir,
        n_trials=args.trials,
        n_jobs=args.jobs,
        scheduler=args.scheduler,
    )
