"""`make demo`: the whole job on the bundled real sample, offline.

Installs data/sample/digit-recognizer-sample.zip into data/demo/ (the same checked, atomic
install as `kit data --zip`), trains the default preset for DEMO_EPOCHS epochs (or what the
training variables say: `make demo PRESET=best EPOCHS=2`) into models/demo/, writes
submissions/demo/submission.csv and the run's report. The user's data/*.csv, models/latest and
submissions/submission.csv are never touched.
"""

from __future__ import annotations

from pathlib import Path

from kit.config import Config, make_config
from kit.core.console import log
from kit.kaggle.archive import install_archive, installed_problem
from kit.run.train import train_run

SAMPLE_ZIP = Path(__file__).resolve().parent.parent / "data" / "sample" / "digit-recognizer-sample.zip"
DEMO_DATA = Path("data/demo")
DEMO_MODELS = Path("models/demo")
DEMO_SUBMISSION = Path("submissions/demo/submission.csv")
DEMO_EPOCHS = 15


def run_demo(config: Config | None = None) -> None:
    """The demo with this config (default: the default preset, DEMO_EPOCHS epochs)."""
    from kit.report.page import write_report
    from kit.run.predict import submit_run

    if installed_problem(DEMO_DATA) is None:
        log(f"sample already installed in {DEMO_DATA}/")
    else:
        install_archive(SAMPLE_ZIP, DEMO_DATA)
    config = config or make_config("default", epochs=DEMO_EPOCHS)
    run_dir = train_run(config, DEMO_DATA / "train.csv", DEMO_MODELS)
    submit_run(run_dir, DEMO_DATA / "test.csv", DEMO_SUBMISSION, DEMO_DATA / "sample_submission.csv")
    report = write_report(run_dir, DEMO_SUBMISSION.parent)  # after the submission: its least-sure rows
    log(f"\ndemo done: data in {DEMO_DATA}/, model in {run_dir}/, submission in {DEMO_SUBMISSION}")
    log("with the real competition files: make data && make train && make submit")
    log(f"report (open it in a browser): {report.path}")
