"""The Kaggle boundary (`kit data`, `kit upload`) against a fake Kaggle on localhost, offline.

The real `kaggle` client is used throughout: KAGGLE_API_ENVIRONMENT=LOCALHOST sends its calls to
http://localhost, and http_proxy points them at tests/fake_kaggle.py on a free port. Credentials
are fake and live in a temporary HOME; the user's ~/.kaggle is never read.

Most scenarios run the CLI in a subprocess (the client reads its settings when imported). The
many failure cases run in this process through `run_data` / `run_upload` directly, with the
client imported once under the fake environment (`inproc`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from fake_kaggle import (
    COMPETITION,
    KEY,
    SCORE,
    TOKEN,
    USERNAME,
    FakeKaggle,
    archive,
    competition_files,
    make_zip,
)
from kit.core.errors import KitError
from kit.kaggle import archive as kaggle_archive
from kit.kaggle import auth, download, upload
from kit.kaggle.client import quiet

TOKEN_HINT = "https://www.kaggle.com/settings/api"
CLIENT_VARS = (
    "KAGGLE_API_TOKEN",
    "KAGGLE_USERNAME",
    "KAGGLE_KEY",
    "KAGGLE_CONFIG_DIR",
    "KAGGLE_API_ENVIRONMENT",
    "KAGGLE_KERNEL_RUN_TYPE",
    "KAGGLE_DATA_PROXY_URL",
    "KAGGLE_API_V1_TOKEN",
    "VERBOSE",
    "VERBOSE_OUTPUT",
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "XDG_CONFIG_HOME",
    "KIT_KAGGLE_TIMEOUT",
)


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def server():
    fake = FakeKaggle().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(server):
    server.reset()
    yield server
    server.reset()


def make_home(folder: Path, key: bool = True) -> Path:
    """A HOME with ~/.kaggle/kaggle.json (mode 600) for the fake account."""
    (folder / ".kaggle").mkdir(parents=True, exist_ok=True)
    if key:
        config = folder / ".kaggle" / "kaggle.json"
        config.write_text(json.dumps({"username": USERNAME, "key": KEY}))
        config.chmod(0o600)
    return folder


def client_env(home: Path, proxy: str, **extra: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_VARS and not k.startswith("KAGGLE_")}
    env.update(
        HOME=str(home),
        KAGGLE_CONFIG_DIR=str(home / ".kaggle"),
        XDG_CONFIG_HOME=str(home / ".config"),
        KAGGLE_API_ENVIRONMENT="LOCALHOST",
        http_proxy=proxy,
        HTTP_PROXY=proxy,
        no_proxy="",
        NO_PROXY="",
    )
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def closed_port_url() -> str:
    """An address where nothing listens: a port the system just handed out and took back."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def run_kit(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kit", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line the CLI printed for a failure (progress bars and notes aside)."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every file and folder under `folder` with its content hash and modification time."""
    if not folder.exists():
        return {}
    state = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_dir():
            state[rel] = ("dir",)
        else:
            state[rel] = (hashlib.sha1(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return state


def leftovers(data_dir: Path) -> list[str]:
    return [p.name for p in data_dir.resolve().parent.iterdir() if ".download-" in p.name]


def install_old_data(data_dir: Path, tmp_path: Path) -> dict:
    """Valid files that differ from the server's, installed before a failing run."""
    old = tmp_path / "old.zip"
    old.write_bytes(make_zip(competition_files(n_train=30, n_test=20, seed=7)))
    kaggle_archive.install_archive(old, data_dir)
    return snapshot(data_dir)


def write_submission(folder: Path, n: int = 20, meta: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "submission.csv"
    path.write_text("ImageId,Label\n" + "".join(f"{i},{i * 7 % 10}\n" for i in range(1, n + 1)))
    if meta is not None:
        (folder / "submission.json").write_text(json.dumps(meta))
    return path


# --------------------------------------------------------------------------- through the CLI, in a subprocess


def test_data_installs_then_does_nothing_then_force_downloads_again(fake, tmp_path):
    home = make_home(tmp_path / "home")
    work = tmp_path / "work"
    work.mkdir()
    # VERBOSE / VERBOSE_OUTPUT would make the client print every request header, the key included.
    env = client_env(home, fake.proxy_url, VERBOSE="1", VERBOSE_OUTPUT="true")
    first = run_kit(["data"], env, work)
    assert first.returncode == 0, first.stderr
    assert KEY not in first.stdout + first.stderr and "Authorization" not in first.stdout + first.stderr
    expected = competition_files()
    for name, content in expected.items():
        assert (work / "data" / name).read_bytes() == content
    assert "installed data/train.csv (50 rows), test.csv (20 rows)" in first.stdout
    assert fake.endpoints() == ["DownloadDataFiles", "storage"]
    assert {r["host"] for r in fake.requests} == {"localhost"}
    assert (
        fake.requests[0]["body"] == {"competitionName": COMPETITION} and fake.requests[0]["auth"] == "Basic"
    )
    assert leftovers(work / "data") == []

    fake.reset()
    second = run_kit(["data"], env, work)
    assert second.returncode == 0 and "nothing to do" in second.stdout
    assert fake.requests == []

    fake.archive = make_zip(competition_files(n_train=40, n_test=20, seed=3))  # Kaggle updated the files
    third = run_kit(["data", "--force"], env, work)
    assert third.returncode == 0, third.stderr
    assert fake.endpoints() == ["DownloadDataFiles", "storage"]
    assert (work / "data" / "train.csv").read_bytes() == competition_files(n_train=40, n_test=20, seed=3)[
        "train.csv"
    ]
    assert leftovers(work / "data") == []


def test_rejected_credentials_give_one_line_and_leave_data_untouched(fake, tmp_path):
    home = make_home(tmp_path / "home")
    work = tmp_path / "work"
    before = install_old_data(work / "data", tmp_path)
    fake.valid_keys = set()  # the key in kaggle.json was revoked
    result = run_kit(["data", "--force"], client_env(home, fake.proxy_url), work)
    line = error_line(result)
    assert "credentials rejected (HTTP 401)" in line and str(home / ".kaggle" / "kaggle.json") in line
    assert "Authentication required" not in result.stdout + result.stderr
    assert snapshot(work / "data") == before and leftovers(work / "data") == []


def test_no_credentials_gives_the_kits_line_not_the_clients_help(fake, tmp_path):
    home = make_home(tmp_path / "home", key=False)
    work = tmp_path / "work"
    work.mkdir()
    write_submission(work / "submissions")
    env = client_env(home, fake.proxy_url)
    for args in (["data"], ["upload"]):
        code = (
            f"import sys; from kit.cli import main; rc = main({args!r}); "
            "print('client imported' if 'kaggle' in sys.modules else 'client not imported'); sys.exit(rc)"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=work, capture_output=True, text=True, timeout=60
        )
        line = error_line(result)
        assert "no Kaggle credentials found" in line and "chmod 600" in line and "access_token" in line
        assert "client not imported" in result.stdout
        assert "Authentication required" not in result.stdout + result.stderr
        assert "kaggle auth login" not in result.stdout + result.stderr
    assert fake.requests == [] and not (work / "data").exists()


def test_a_token_the_client_refuses_gives_the_kits_line_not_its_exit(fake, tmp_path):
    home = make_home(tmp_path / "home", key=False)  # only a token, and Kaggle says it is not active
    work = tmp_path / "work"
    work.mkdir()
    fake.introspect_open = True
    result = run_kit(["data"], client_env(home, fake.proxy_url, KAGGLE_API_TOKEN="revoked-token"), work)
    line = error_line(result)  # the client printed its help and raised SystemExit(1) inside the kit
    assert (
        "credentials rejected" in line
        and "the API token from KAGGLE_API_TOKEN" in line
        and TOKEN_HINT in line
    )
    assert "Authentication required" not in result.stdout + result.stderr
    assert fake.endpoints() and set(fake.endpoints()) == {"IntrospectToken"} and not (work / "data").exists()


def test_upload_sends_exactly_the_file_and_prints_the_score(fake, tmp_path):
    home = make_home(tmp_path / "home")
    work = tmp_path / "work"
    meta = {"run_id": "20250102-030405-ab12", "preset": "best", "val_accuracy": 0.98123}
    sub = write_submission(work / "submissions", meta=meta)
    fake.pending_polls = 1  # pending at the first look, scored at the second
    result = run_kit(["upload", "--wait", "5"], client_env(home, fake.proxy_url), work)
    assert result.returncode == 0, result.stderr
    assert list(fake.uploads.values()) == [sub.read_bytes()]
    start = next(r for r in fake.requests if r["endpoint"] == "StartSubmissionUpload")["body"]
    assert start["fileName"] == "submission.csv" and int(start["contentLength"]) == sub.stat().st_size
    create = next(r for r in fake.requests if r["endpoint"] == "CreateSubmission")["body"]
    assert create["submissionDescription"] == "run 20250102-030405-ab12, preset best, val acc 98.12%"
    assert create["competitionName"] == COMPETITION
    assert "status: pending" in result.stdout and f"status: complete, public score: {SCORE}" in result.stdout


def test_refused_upload_is_a_failure(fake, tmp_path):
    home = make_home(tmp_path / "home")
    work = tmp_path / "work"
    write_submission(work / "submissions")
    fake.fail["upload"] = 403  # the storage refuses the PUT; the client does not raise
    result = run_kit(["upload", "--message", "try"], client_env(home, fake.proxy_url), work)
    line = error_line(result)
    assert "upload of submissions/submission.csv to Kaggle failed" in line and "nothing was submitted" in line
    assert "CreateSubmission" not in fake.endpoints() and fake.submissions == []


def test_bad_submission_is_refused_before_any_request(fake, tmp_path):
    home = make_home(tmp_path / "home")
    work = tmp_path / "work"
    sub = write_submission(work / "submissions")
    sub.write_text(sub.read_text().replace("\n3,1\n", "\n3,12\n"))
    result = run_kit(["upload"], client_env(home, fake.proxy_url), work)
    line = error_line(result)
    assert "submissions/submission.csv, line 4, column Label: 12 is not a digit" in line
    assert fake.requests == []


def test_import_kit_and_zip_install_need_no_client(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    zip_path = tmp_path / "digit-recognizer.zip"
    zip_path.write_bytes(archive("ok"))
    code = (
        "import sys, kit, kit.cli, kit.kaggle.download, kit.kaggle.upload, kit.data.load, kit.run.predict; "
        "assert 'kaggle' not in sys.modules and 'requests' not in sys.modules; "
        f"rc = kit.cli.main(['data', '--zip', {str(zip_path)!r}]); "
        "assert 'kaggle' not in sys.modules; sys.exit(rc)"
    )
    env = client_env(make_home(tmp_path / "home", key=False), closed_port_url())
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=work, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert (work / "data" / "test.csv").read_bytes() == competition_files()["test.csv"]


# -------------------------------------------------------------- in this process: every failure line


@pytest.fixture(scope="module")
def inproc(server, tmp_path_factory):
    """Point this process's environment at the fake server and import the client once under it."""
    home = make_home(tmp_path_factory.mktemp("inproc") / "home")
    saved = {name: os.environ.get(name) for name in CLIENT_VARS + ("HOME",)}
    for name in CLIENT_VARS:
        os.environ.pop(name, None)
    os.environ.update(client_env(home, server.proxy_url))
    try:
        if "kaggle" in sys.modules:
            from kaggle.api.kaggle_api_extended import KaggleApi

            if "--local" not in getattr(KaggleApi, "args", []):
                pytest.skip("the kaggle client was imported before the fake environment was set")
        with quiet():
            import kaggle  # noqa: F401 - reads KAGGLE_API_ENVIRONMENT and the config folder now
        yield home
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def env_for(inproc, fake, monkeypatch):
    """Per-test changes to the in-process client environment, undone afterwards."""

    def apply(**values):
        for name, value in values.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)

    for name in ("KAGGLE_API_TOKEN", "KIT_KAGGLE_TIMEOUT", "VERBOSE", "VERBOSE_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    return apply


DATA_FAILURES = {
    "rules not accepted": (
        {"fail": {"DownloadDataFiles": 403}},
        ["HTTP 403", "/competitions/digit-recognizer/rules"],
    ),
    "unknown competition": (
        {"competition": "no-such-competition"},
        ["'no-such-competition' not found (HTTP 404)"],
    ),
    "server error": ({"fail": {"DownloadDataFiles": 500}}, ["Kaggle's server failed (HTTP 500)", "later"]),
    "storage error": ({"fail": {"storage": 503}}, ["HTTP 503"]),
    "too many requests": ({"rate_limit": {"DownloadDataFiles": 9}}, ["too many requests (HTTP 429)", "wait"]),
    "timeout": (
        {"delay": {"DownloadDataFiles": 3}, "env": {"KIT_KAGGLE_TIMEOUT": "0.3"}},
        ["did not answer within 0.3 s", "KIT_KAGGLE_TIMEOUT"],
    ),
    "unreachable": (
        {"env": {"http_proxy": "closed", "HTTP_PROXY": "closed"}},
        ["cannot reach Kaggle", "refused"],
    ),
    "truncated archive": ({"archive": "truncated"}, ["truncated or corrupt", "FORCE=1"]),
    "corrupt archive": ({"archive": "corrupt"}, ["truncated or corrupt"]),
    "not a zip": ({"archive": "not-zip"}, ["truncated or corrupt"]),
    "path traversal": ({"archive": "traversal"}, ["'../evil.csv'", "refusing"]),
    "absolute path": ({"archive": "absolute"}, ["'/tmp/evil.csv'", "refusing"]),
    "missing csv": ({"archive": "missing"}, ["test.csv missing from the archive"]),
    "csv fails the checks": (
        {"archive": "bad-csv"},
        ["train.csv, line 4, column pixel4: 300 is out of range", "data/ was left unchanged"],
    ),
    "bad sample header": ({"archive": "bad-sample"}, ["sample_submission.csv, line 1", "ImageId,Label"]),
}


@pytest.mark.parametrize("case", list(DATA_FAILURES), ids=list(DATA_FAILURES))
def test_data_failures_leave_data_untouched(case, fake, env_for, tmp_path, capsys):
    setup, fragments = DATA_FAILURES[case]
    fake.fail.update(setup.get("fail", {}))
    fake.rate_limit.update(setup.get("rate_limit", {}))
    fake.delay.update(setup.get("delay", {}))
    if "archive" in setup:
        fake.archive = archive(setup["archive"])
    closed = closed_port_url()
    env_for(**{k: closed if v == "closed" else v for k, v in setup.get("env", {}).items()})
    data_dir = tmp_path / "data"
    before = install_old_data(data_dir, tmp_path)
    with pytest.raises(KitError) as raised:
        download.run_data(setup.get("competition", COMPETITION), data_dir, force=True)
    message = str(raised.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert ".download-" not in message  # the temporary folder is not what the user needs to see
    assert snapshot(data_dir) == before and leftovers(data_dir) == []
    assert {r["host"] for r in fake.requests} <= {"localhost"}


def test_too_many_requests_is_retried_with_backoff_then_succeeds(fake, env_for, tmp_path, capsys):
    fake.rate_limit["DownloadDataFiles"] = 2
    download.run_data(COMPETITION, tmp_path / "data", force=False)
    assert fake.endpoints() == ["DownloadDataFiles"] * 3 + ["storage"]
    assert capsys.readouterr().err.count("too many requests (HTTP 429); retrying") == 2
    assert (tmp_path / "data" / "train.csv").read_bytes() == competition_files()["train.csv"]


def test_a_token_is_used_and_a_stale_one_is_named(fake, env_for, tmp_path, capsys):
    env_for(KAGGLE_API_TOKEN=TOKEN)
    download.run_data(COMPETITION, tmp_path / "data", force=False)
    err = capsys.readouterr().err
    assert "the client uses the token" in err  # kaggle.json is there too
    assert {r["auth"] for r in fake.requests if r["endpoint"] == "DownloadDataFiles"} == {"Bearer"}

    fake.reset()
    env_for(KAGGLE_API_TOKEN="expired-token")  # a stale token wins over the good key in kaggle.json
    before = snapshot(tmp_path / "data")
    with pytest.raises(KitError) as raised:
        download.run_data(COMPETITION, tmp_path / "data", force=True)
    message = str(raised.value)
    assert (
        "credentials rejected" in message
        and "KAGGLE_API_TOKEN" in message
        and "unset KAGGLE_API_TOKEN" in message
    )
    assert snapshot(tmp_path / "data") == before


UPLOAD_FAILURES = {
    "refused (daily limit)": (
        {"fail": {"CreateSubmission": 400}},
        ["Kaggle refused the submission (HTTP 400)", "Submission limit reached", "/submissions"],
    ),
    "rules not accepted": ({"fail": {"StartSubmissionUpload": 403}}, ["HTTP 403", "/rules"]),
    "credentials rejected": ({"keys": set()}, ["credentials rejected (HTTP 401)"]),
    "server error": ({"fail": {"StartSubmissionUpload": 502}}, ["HTTP 502"]),
    "storage refuses the file": ({"fail": {"upload": 403}}, ["failed, so nothing was submitted"]),
    "scoring failed": (
        {"score_error": "Submission must have 28000 rows"},
        ["could not score the submission", "28000 rows"],
    ),
}


@pytest.mark.parametrize("case", list(UPLOAD_FAILURES), ids=list(UPLOAD_FAILURES))
def test_upload_failures(case, fake, env_for, tmp_path, capsys):
    setup, fragments = UPLOAD_FAILURES[case]
    fake.fail.update(setup.get("fail", {}))
    if "keys" in setup:
        fake.valid_keys = setup["keys"]
    fake.score_error = setup.get("score_error")
    sub = write_submission(tmp_path / "submissions")
    with pytest.raises(KitError) as raised:
        upload.run_upload(sub, "a message", COMPETITION, 2.0, tmp_path / "data")
    message = str(raised.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_upload_says_how_to_look_later_when_the_score_is_slow(fake, env_for, tmp_path, capsys):
    fake.pending_polls = 1000
    sub = write_submission(tmp_path / "submissions")
    upload.run_upload(sub, None, COMPETITION, 1.0, tmp_path / "data")
    out = capsys.readouterr().out
    assert "status: pending" in out and "no score yet after 1 s" in out
    assert "kaggle.com/competitions/digit-recognizer/submissions" in out
    assert fake.submissions[0]["description"] == "digit-kit submission"
    assert 2 <= fake.endpoints().count("ListSubmissions") <= 3  # bounded polling


def test_upload_checks_against_the_sample_before_any_request(fake, env_for, tmp_path, capsys):
    data_dir = tmp_path / "data"
    install_old_data(data_dir, tmp_path)  # its sample has 20 rows
    sub = write_submission(tmp_path / "submissions", n=19)
    with pytest.raises(KitError, match="19 rows, but the test set has 20"):
        upload.run_upload(sub, None, COMPETITION, 0, data_dir)
    with pytest.raises(KitError, match="no submission there; run `make submit` first"):
        upload.run_upload(tmp_path / "absent.csv", None, COMPETITION, 0, data_dir)
    assert fake.requests == []


# --------------------------------------------------------- offline: archives, credentials, messages


def test_zip_install_is_idempotent_and_forced_again(tmp_path, capsys):
    zip_path = tmp_path / "digit-recognizer.zip"
    zip_path.write_bytes(archive("ok"))
    data_dir = tmp_path / "data"
    download.run_data(COMPETITION, data_dir, force=False, zip_path=zip_path)
    assert sorted(p.name for p in data_dir.iterdir()) == ["sample_submission.csv", "test.csv", "train.csv"]
    before = snapshot(data_dir)
    download.run_data(COMPETITION, data_dir, force=False, zip_path=zip_path)
    assert "nothing to do" in capsys.readouterr().out and snapshot(data_dir) == before
    zip_path.write_bytes(make_zip(competition_files(n_train=60, n_test=20, seed=5)))
    download.run_data(COMPETITION, data_dir, force=True, zip_path=zip_path)
    assert "(60 rows)" in capsys.readouterr().out
    assert leftovers(data_dir) == []


def test_a_damaged_install_is_replaced_without_force(tmp_path, capsys):
    zip_path = tmp_path / "digit-recognizer.zip"
    zip_path.write_bytes(archive("ok"))
    data_dir = tmp_path / "data"
    kaggle_archive.install_archive(zip_path, data_dir)
    (data_dir / "test.csv").write_text("pixel0\n1\n")
    download.run_data(COMPETITION, data_dir, force=False, zip_path=zip_path)
    assert "installing them again" in capsys.readouterr().out
    assert (data_dir / "test.csv").read_bytes() == competition_files()["test.csv"]


@pytest.mark.parametrize("kind", ["truncated", "traversal", "bad-csv", "missing"])
def test_bad_zip_for_zip_install_leaves_data_untouched(kind, tmp_path):
    data_dir = tmp_path / "data"
    before = install_old_data(data_dir, tmp_path)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(archive(kind))
    with pytest.raises(KitError) as raised:
        download.run_data(COMPETITION, data_dir, force=True, zip_path=bad)
    assert str(bad) in str(raised.value)
    assert snapshot(data_dir) == before and leftovers(data_dir) == []
    with pytest.raises(KitError, match="no such file"):
        download.run_data(COMPETITION, data_dir, force=True, zip_path=tmp_path / "absent.zip")


def test_a_failed_rename_puts_the_old_files_back(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    before = install_old_data(data_dir, tmp_path)
    good = tmp_path / "good.zip"
    good.write_bytes(archive("ok"))
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(KitError, match="No space left on device"):
        kaggle_archive.install_archive(good, data_dir)
    monkeypatch.setattr(os, "replace", real_replace)
    assert snapshot(data_dir) == before and leftovers(data_dir) == []


def test_an_interrupted_install_leaves_no_trace(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    good = tmp_path / "good.zip"
    good.write_bytes(archive("ok"))

    def interrupt(*args):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        kaggle_archive.install_archive(good, data_dir, check=interrupt)
    assert not data_dir.exists() and leftovers(data_dir) == []


def creds_env(home: Path, **values: str) -> dict:
    return {"HOME": str(home), **values}


def test_credentials_found_in_the_clients_order(tmp_path):
    home = make_home(tmp_path / "home")
    config = home / ".kaggle" / "kaggle.json"
    found = auth.find_credentials(creds_env(home))
    assert (found.kind, found.source, found.notes) == ("key", str(config), [])

    found = auth.find_credentials(creds_env(home, KAGGLE_USERNAME="u", KAGGLE_KEY="k"))
    assert found.source == "KAGGLE_USERNAME/KAGGLE_KEY"

    (home / ".kaggle" / "access_token").write_text(TOKEN + "\n")
    found = auth.find_credentials(creds_env(home))
    assert found.kind == "token" and found.source == str(home / ".kaggle" / "access_token")
    assert found.shadowed == str(config) and any("the client uses the token" in n for n in found.notes)

    found = auth.find_credentials(creds_env(home, KAGGLE_API_TOKEN=TOKEN))
    assert found.source == "KAGGLE_API_TOKEN"
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    assert auth.find_credentials(creds_env(home, KAGGLE_API_TOKEN=str(token_file))).source.startswith(
        "KAGGLE_API_TOKEN (file"
    )


def test_credential_trip_wires(tmp_path):
    home = make_home(tmp_path / "home")
    config = home / ".kaggle" / "kaggle.json"
    config.chmod(0o644)
    notes = auth.find_credentials(creds_env(home)).notes
    assert notes == [f"warning: {config} is readable by other users of this machine; run: chmod 600 {config}"]

    with pytest.raises(KitError, match=r"KAGGLE_CONFIG_DIR=.*kaggle.json is a file, not a folder"):
        auth.find_credentials(creds_env(home, KAGGLE_CONFIG_DIR=str(config)))
    with pytest.raises(KitError, match="does not expand '~'"):
        auth.find_credentials(creds_env(home, KAGGLE_CONFIG_DIR="~/.kaggle"))
    with pytest.raises(KitError, match="looks like a file path, but there is no such file"):
        auth.find_credentials(creds_env(home, KAGGLE_API_TOKEN="~/.kaggle/token"))
    with pytest.raises(KitError, match="KAGGLE_USERNAME is set but a key"):
        auth.find_credentials(creds_env(tmp_path / "empty", KAGGLE_USERNAME="someone"))
    config.write_text("{not json")
    with pytest.raises(KitError, match="cannot be read as JSON"):
        auth.find_credentials(creds_env(home))


def test_no_credentials_message_says_where_and_chmod(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with pytest.raises(KitError) as raised:
        auth.find_credentials(creds_env(home))
    message = str(raised.value)
    assert (
        f"save it in {home}/.kaggle/access_token" in message
        and f"chmod 600 {home}/.kaggle/access_token" in message
    )
    assert str(home / ".config" / "kaggle") in message  # no ~/.kaggle: the client would use the XDG folder
    # An OAuth login from `kaggle auth login` counts.
    (home / ".kaggle").mkdir()
    (home / ".kaggle" / "credentials.json").write_text(
        json.dumps({"refresh_token": "r", "username": USERNAME})
    )
    assert auth.find_credentials(creds_env(home)).kind == "oauth"


def test_default_message_names_the_run(tmp_path):
    meta = {"run_id": "20250101-000000", "preset": "default", "val_accuracy": 0.97456}
    sub = write_submission(tmp_path / "s", meta=meta)
    assert upload.default_message(sub) == "run 20250101-000000, preset default, val acc 97.46%"
    copy = tmp_path / "s" / "submission-20250101-000000.csv"
    copy.write_bytes(sub.read_bytes())
    assert upload.default_message(copy) == "run 20250101-000000, preset default, val acc 97.46%"
    other = tmp_path / "s" / "mine.csv"
    other.write_bytes(sub.read_bytes())
    assert upload.default_message(other) == "digit-kit submission"
    (tmp_path / "s" / "submission.json").write_text("{broken")
    assert upload.default_message(sub) == "digit-kit submission"


@pytest.mark.parametrize("name", ["", "Digit Recognizer", "../x", "digit_recognizer!"])
def test_competition_name_is_checked_before_anything(name, tmp_path):
    with pytest.raises(KitError, match="is not a competition name"):
        download.run_data(name, tmp_path / "data", force=True)
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------- upload history, timeouts, credentials as sent


def history_rows(folder: Path) -> tuple[str, list[dict]]:
    """(header line, rows) of history.csv in `folder`."""
    text = (folder / "history.csv").read_text(encoding="utf-8")
    return text.splitlines()[0], list(csv.DictReader(io.StringIO(text)))


def test_each_accepted_upload_appends_one_row_with_what_kaggle_returned(fake, env_for, tmp_path, capsys):
    meta = {"run_id": "20250102-030405-ab12", "preset": "best", "val_accuracy": 0.98123}
    sub = write_submission(tmp_path / "submissions", meta=meta)
    upload.run_upload(sub, "first try", COMPETITION, 5.0, tmp_path / "data")
    history = tmp_path / "submissions" / "history.csv"
    assert f"recorded in {history}" in capsys.readouterr().out
    header, rows = history_rows(tmp_path / "submissions")
    assert header == "date,run_id,file,message,status,public_score,ref"
    assert len(rows) == 1
    first = rows[0]
    assert (first["run_id"], first["file"], first["message"]) == (meta["run_id"], str(sub), "first try")
    assert (first["status"], first["public_score"]) == ("complete", SCORE)
    assert first["ref"] == str(fake.submissions[0]["ref"])
    assert datetime.strptime(first["date"], "%Y-%m-%dT%H:%M:%SZ")  # ISO-8601, UTC

    upload.run_upload(sub, None, COMPETITION, 5.0, tmp_path / "data")  # the default message has commas
    header, rows = history_rows(tmp_path / "submissions")
    assert len(rows) == 2 and rows[0] == first
    assert rows[1]["message"] == "run 20250102-030405-ab12, preset best, val acc 98.12%"
    assert rows[1]["ref"] == str(fake.submissions[0]["ref"]) != first["ref"]  # newest first on the server
    assert [
        p.name for p in history.parent.iterdir() if p.name.startswith(".")
    ] == []  # no temporary file left


def test_an_upload_not_scored_in_time_is_recorded_as_pending(fake, env_for, tmp_path, capsys):
    sub = write_submission(tmp_path / "submissions")
    upload.run_upload(sub, "no wait", COMPETITION, 0, tmp_path / "data")
    _, rows = history_rows(tmp_path / "submissions")
    assert [(r["status"], r["public_score"], r["run_id"]) for r in rows] == [("pending", "", "")]
    assert rows[0]["ref"] == str(fake.submissions[0]["ref"])


def test_a_submission_kaggle_could_not_score_is_recorded_then_reported(fake, env_for, tmp_path, capsys):
    fake.score_error = "Submission must have 28000 rows"
    sub = write_submission(tmp_path / "submissions")
    with pytest.raises(KitError, match="could not score the submission"):
        upload.run_upload(sub, "bad", COMPETITION, 2.0, tmp_path / "data")
    _, rows = history_rows(tmp_path / "submissions")
    assert [(r["status"], r["public_score"]) for r in rows] == [("error", "")]


@pytest.mark.parametrize(
    "failure", [{"upload": 403}, {"CreateSubmission": 400}, {"StartSubmissionUpload": 403}]
)
def test_a_failed_upload_records_nothing(failure, fake, env_for, tmp_path, capsys):
    sub = write_submission(tmp_path / "submissions")
    fake.fail.update(failure)
    with pytest.raises(KitError):
        upload.run_upload(sub, "refused", COMPETITION, 0, tmp_path / "data")
    assert not (tmp_path / "submissions" / "history.csv").exists()
    assert "recorded in" not in capsys.readouterr().out


def test_a_token_kaggle_calls_inactive_is_still_what_the_client_sends(fake, env_for, tmp_path, capsys):
    """The client then reports a username/key sign-in but sends the token: the error line names the token."""
    fake.introspect_open = (
        True  # {"active": false} for the stale token, so the client falls back to kaggle.json
    )
    env_for(KAGGLE_API_TOKEN="stale-token")
    with pytest.raises(KitError) as raised:
        download.run_data(COMPETITION, tmp_path / "data", force=True)
    message = str(raised.value)
    assert "credentials rejected (HTTP 401) using the API token from KAGGLE_API_TOKEN" in message
    assert "unset KAGGLE_API_TOKEN" in message
    assert {r["auth"] for r in fake.requests if r["endpoint"] == "DownloadDataFiles"} == {"Bearer"}


def test_requests_get_the_timeout_without_patching_requests(fake, env_for, tmp_path, capsys):
    from requests.adapters import HTTPAdapter

    send = HTTPAdapter.send
    fake.delay["StartSubmissionUpload"] = 3
    env_for(KIT_KAGGLE_TIMEOUT="0.3")
    with pytest.raises(KitError, match=r"did not answer within 0.3 s while submitting"):
        upload.run_upload(
            write_submission(tmp_path / "submissions"), "slow", COMPETITION, 0, tmp_path / "data"
        )
    assert HTTPAdapter.send is send


@pytest.mark.slow
def test_the_sign_in_at_import_is_bounded_by_the_timeout(fake, tmp_path):
    """`import kaggle` asks Kaggle about a token at once; a stall there ends after KIT_KAGGLE_TIMEOUT."""
    home = make_home(tmp_path / "home", key=False)
    work = tmp_path / "work"
    work.mkdir()
    fake.delay["IntrospectToken"] = 5
    result = run_kit(
        ["data"], client_env(home, fake.proxy_url, KAGGLE_API_TOKEN=TOKEN, KIT_KAGGLE_TIMEOUT="0.5"), work
    )
    line = error_line(result)
    assert "did not answer within 0.5 s while signing in to Kaggle" in line
    assert fake.endpoints() == [
        "IntrospectToken"
    ]  # the kit stopped during the import, before its own sign-in
    assert not (work / "data").exists()


def test_make_runs_shows_the_public_score_an_upload_recorded(fake, env_for, tmp_path, capsys):
    """train -> submit -> upload (fake Kaggle) -> runs: the run's row carries the score Kaggle returned."""
    from kit.cli import main
    from synthetic import train_argv, write_competition

    data = write_competition(tmp_path / "data", n_train=200, n_test=30)
    models, subs = tmp_path / "models", tmp_path / "submissions"
    assert (
        main(
            [
                *train_argv(data / "train.csv", models),
                "--preset",
                "reference",
                "--epochs",
                "1",
                "--hidden",
                "8",
                "--report",
                "0",
            ]
        )
        == 0
    )
    run_id = (models / "latest").resolve().name
    assert (
        main(
            [
                "submit",
                "--model",
                str(models),
                "--test",
                str(data / "test.csv"),
                "--sample",
                str(data / "sample_submission.csv"),
                "--out",
                str(subs / "submission.csv"),
            ]
        )
        == 0
    )
    assert (
        main(["upload", "--file", str(subs / "submission.csv"), "--wait", "5", "--data-dir", str(data)]) == 0
    )
    capsys.readouterr()
    assert main(["runs", "--models", str(models), "--uploads", str(subs / "history.csv")]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if run_id in line]
    assert SCORE in row
