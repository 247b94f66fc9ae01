"""`make upload`: a submission checked as `make submit` checks it, sent with the official Kaggle
client, its public score waited for (a bounded time) and recorded.

From the client (kaggle 2.2.4 and 2.2.5; 1.7's different return values are tolerated):
- `competition_submit(file_name, message, competition, quiet)` does not raise when the upload of
  the file fails (it returns the message "Could not submit to competition"; 1.7 returns that
  string), so the kit checks the outcome;
- `competition_submissions(competition)` lists submissions (newest first) with `ref`, `status`
  and `public_score`.
Each upload that Kaggle accepted adds a row to history.csv in the uploaded file's folder
(HISTORY_HEADER), also when no score came back in time (status pending); `make runs` reads it.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kit.core.atomic import atomic_open
from kit.core.console import log, note, one_line
from kit.core.errors import KitError
from kit.kaggle.auth import find_credentials
from kit.kaggle.client import (
    ClientSession,
    call,
    check_competition,
    kaggle_session,
    quiet,
    status_code,
    submissions_url,
    translate,
)

DEFAULT_MESSAGE = "digit-kit submission"
UPLOAD_FAILED_MESSAGE = (
    "Could not submit to competition"  # KaggleApi.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE
)
HISTORY_NAME = "history.csv"
HISTORY_HEADER = ("date", "run_id", "file", "message", "status", "public_score", "ref")


def submission_meta(file: Path) -> dict | None:
    """The submission.json `make submit` wrote for this file, if there is one."""
    file = Path(file)
    candidates = [file.with_suffix(".json")]
    shared = file.parent / "submission.json"
    if shared != candidates[0]:
        candidates.append(shared)
    for path in candidates:
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(meta, dict):
            continue
        if path == shared and path != candidates[0]:
            # submission.json describes submission.csv and its copy submission-<run_id>.csv only
            if file.stem != f"submission-{meta.get('run_id')}":
                continue
        return meta
    return None


def default_message(file: Path) -> str:
    """'run <id>, preset <p>, val acc 98.12%' from the model that wrote the file, else a plain message."""
    meta = submission_meta(file)
    if not meta:
        return DEFAULT_MESSAGE
    parts = []
    if meta.get("run_id"):
        parts.append(f"run {meta['run_id']}")
    if meta.get("preset"):
        parts.append(f"preset {meta['preset']}")
    try:
        parts.append(f"val acc {100 * float(meta['val_accuracy']):.2f}%")
    except (KeyError, TypeError, ValueError):
        pass
    return ", ".join(parts) or DEFAULT_MESSAGE


def _field(item, *names):
    for name in names:
        value = item.get(name) if isinstance(item, dict) else getattr(item, name, None)
        if value is not None:
            return value
    return None


def _status_name(submission) -> str:
    status = _field(submission, "status")
    if status is None:
        return "pending"
    status = getattr(status, "name", status)
    return str(status).rsplit(".", 1)[-1].lower()


def _find_submission(submissions, ref, message: str):
    for item in submissions or []:
        if ref and _field(item, "ref") == ref:
            return item
    if not ref:
        for item in submissions or []:  # the list is newest first
            if _field(item, "description") == message:
                return item
    return None


def _upload_failed(result) -> bool:
    if result is None or isinstance(result, str):  # 1.7 returns the failure message as a string
        return True
    message = _field(result, "message")
    from kaggle.api.kaggle_api_extended import KaggleApi

    sentinel = getattr(KaggleApi, "COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE", UPLOAD_FAILED_MESSAGE)
    return message in (sentinel, UPLOAD_FAILED_MESSAGE)


@dataclass
class Outcome:
    """What Kaggle said about a submission: its final status name and public score (None when none
    came back)."""

    status: str
    public_score: str | None = None
    error: str | None = None  # Kaggle's reason when it could not score the file


def _poll(session: ClientSession, ref, message: str, wait_seconds: float) -> Outcome:
    import requests

    c = session.competition
    later = f"see {submissions_url(c)} (or run: kaggle competitions submissions {c})"
    if wait_seconds <= 0:
        log(f"not waiting for the score; {later}")
        return Outcome("pending")
    log(f"waiting up to {wait_seconds:g} s for the score ...")
    deadline = time.monotonic() + wait_seconds
    interval = min(5.0, max(1.0, wait_seconds / 10))
    status, last = "pending", None
    while True:
        try:
            with quiet(stderr=False):
                listed = session.api.competition_submissions(c)
        except KeyboardInterrupt:
            raise
        except SystemExit:
            note("warning: the Kaggle client stopped while reading the submission list")
            break
        except Exception as error:  # noqa: BLE001 - the submission is made; only the waiting fails
            transient = isinstance(error, requests.exceptions.RequestException) and (
                status_code(error) in (None, 429) or (status_code(error) or 0) >= 500
            )
            if not transient:
                note(f"warning: could not read the submission list: {translate(error, session, 'polling')}")
                break
            listed = None
        submission = _find_submission(listed, ref, message)
        status = _status_name(submission) if submission is not None else "pending"
        if status == "complete":
            score = _field(submission, "public_score", "publicScore")
            score = None if score in (None, "") else str(score)
            log(f"status: complete, public score: {score or 'not published yet'}")
            return Outcome(status, score)
        if status == "error":
            reason = _field(submission, "error_description", "errorDescription") or "no reason given"
            return Outcome(status, error=one_line(reason, 200))
        if status != last:
            log(f"status: {status}")
            last = status
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    log(f"no score yet after {wait_seconds:g} s; {later}")
    return Outcome(status)


def record_upload(file: Path, message: str, outcome: Outcome, ref, when: datetime) -> Path:
    """Append one row to history.csv beside `file` (old rows + the new one to a temporary file, renamed).

    Columns: HISTORY_HEADER; date is `when` (the upload) in ISO-8601 UTC, run_id from the file's
    submission.json, public_score empty when none came back.
    """
    history = Path(file).parent / HISTORY_NAME
    try:
        old = history.read_text(encoding="utf-8")
    except FileNotFoundError:
        old = ""
    if old and not old.endswith("\n"):
        old += "\n"
    row = io.StringIO()
    writer = csv.writer(row, lineterminator="\n")
    if not old.strip():
        old = ""
        writer.writerow(HISTORY_HEADER)
    run_id = (submission_meta(file) or {}).get("run_id") or ""
    date = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    writer.writerow(
        [
            date,
            run_id,
            str(file),
            message,
            outcome.status,
            outcome.public_score or "",
            "" if ref is None else ref,
        ]
    )
    with atomic_open(history, "w", encoding="utf-8", newline="") as handle:
        handle.write(old + row.getvalue())
    return history


def run_upload(
    file: Path,
    message: str | None,
    competition: str,
    wait_seconds: float = 60.0,
    data_dir: Path = Path("data"),
) -> None:
    """`kit upload`: check the file as `make submit` does, submit it, wait a bounded time for the
    score, record it."""
    from kit.data.submission import check_submission_file

    file, data_dir = Path(file), Path(data_dir)
    check_competition(competition)
    if wait_seconds is None or not wait_seconds >= 0:
        raise KitError(f"WAIT={wait_seconds}: give the seconds to wait for the score (0 = do not wait)")
    if file.is_dir():
        raise KitError(f"{file}: is a folder; give the submission .csv file (FILE=path)")
    sample = data_dir / "sample_submission.csv"
    n_rows = check_submission_file(file, sample_path=sample if sample.is_file() else None)
    message = (message or "").strip() or default_message(file)
    creds = find_credentials()
    for line in creds.notes:
        note(line)
    with kaggle_session(creds, competition, "upload") as session:
        log(
            f"uploading {file} ({n_rows} rows) to {competition} as {message!r} using "
            f"{session.creds.describe()} ..."
        )
        result = call(
            session,
            f"submitting {file}",
            session.api.competition_submit,
            file_name=str(file),
            message=message,
            competition=competition,
            quiet=True,
        )
        if _upload_failed(result):
            raise KitError(
                f"the upload of {file} to Kaggle failed, so nothing was submitted (the client said "
                f"{UPLOAD_FAILED_MESSAGE!r}); run `make upload` again"
            )
        submitted_at = datetime.now(UTC)
        ref = _field(result, "ref") or None
        server_message = _field(result, "message")
        log(
            f"submitted{f' (ref {ref})' if ref else ''}: "
            f"{one_line(server_message, 160) if server_message else 'ok'}"
        )
        outcome = _poll(session, ref, message, float(wait_seconds))
    try:
        log(f"recorded in {record_upload(file, message, outcome, ref, submitted_at)}")
    except OSError as error:  # the submission is made; only its note here failed
        note(
            f"warning: could not record the upload in {file.parent / HISTORY_NAME} "
            f"({error.strerror or error})"
        )
    if outcome.status == "error":
        raise KitError(
            f"Kaggle could not score the submission{f' {ref}' if ref else ''}: {outcome.error}; "
            f"fix the file and upload again ({submissions_url(competition)})"
        )
