"""The boundary to the official Kaggle client: `kit data` (download and install) and `kit upload`.

Only the two entry points `run_data` and `run_upload` import the `kaggle` package, lazily, after
the kit has checked for itself that credentials exist; `import kit`, training, `make submit` and
the tests need neither credentials nor network. What the kit relies on in the client (read in
the source of kaggle 2.2.4 and 2.2.5, both tested against tests/fake_kaggle.py; 1.7's different
return values are tolerated):

- `import kaggle` authenticates at import time; without credentials `KaggleApi.authenticate()`
  prints a long help text and raises SystemExit(1) (1.7: OSError). The kit looks for the
  credentials itself first (`find_credentials`), clears VERBOSE / VERBOSE_OUTPUT (they make the
  client print every request header, the key included), and imports and authenticates with
  stdout/stderr captured and SystemExit caught.
- `competition_download_files(competition, path, force, quiet)` writes `<path>/<competition>.zip`;
  `competition_submit(file_name, message, competition, quiet)` does not raise when the upload of
  the file fails (it returns the message "Could not submit to competition"; 1.7 returns that
  string), so the kit checks the outcome; `competition_submissions(competition)` lists
  submissions with `status` and `public_score`.
- Errors are `requests.HTTPError` whose `response.status_code` decides the kit's message, never
  the text. The client's API calls have no timeout of their own: while the kit talks to Kaggle,
  requests without one get `KIT_KAGGLE_TIMEOUT` seconds (default 60).

The install into data/ is atomic: the archive is downloaded and unpacked into a temporary folder
beside data/, every file is checked, and only then are the three CSVs renamed into data/ (the
old ones are restored if a rename fails). A failed or interrupted run leaves data/ as it was.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import KitError

COMPETITION_FILES = ("train.csv", "test.csv", "sample_submission.csv")
SAMPLE_HEADER = "ImageId,Label"
TOKEN_URL = "https://www.kaggle.com/settings/api"
DEFAULT_MESSAGE = "digit-kit submission"
UPLOAD_FAILED_MESSAGE = "Could not submit to competition"  # KaggleApi.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE
DEFAULT_TIMEOUT = 60.0  # seconds a request may stall before the kit gives up (KIT_KAGGLE_TIMEOUT)
RATE_LIMIT_ATTEMPTS = 4  # tries of one call answered 429 (too many requests), with backoff between
RATE_LIMIT_FIRST_DELAY = 2.0
RATE_LIMIT_MAX_DELAY = 30.0
MAX_UNPACKED_BYTES = 2 * 1024**3  # the real three CSVs are about 130 MB
SECRET_ENV = ("VERBOSE", "VERBOSE_OUTPUT")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


def _say(text: str) -> None:
    print(text, flush=True)


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def rules_url(competition: str) -> str:
    return f"https://www.kaggle.com/competitions/{competition}/rules"


def submissions_url(competition: str) -> str:
    return f"https://www.kaggle.com/competitions/{competition}/submissions"


def check_competition(competition: str | None) -> str:
    """The slug is always given explicitly (never taken from the client's config)."""
    if not competition or not _SLUG.match(competition):
        raise KitError(
            f"COMPETITION={competition!r} is not a competition name; use the lower-case name from the "
            "competition's URL, e.g. digit-recognizer for kaggle.com/competitions/digit-recognizer"
        )
    return competition


# --------------------------------------------------------------------------- credentials


@dataclass
class Credentials:
    """Which credentials the client will use, found the way the client looks for them."""

    kind: str  # "token", "key" or "oauth"
    source: str  # where they come from: an environment variable or a file
    shadowed: str | None = None  # username/key that a token overrides
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.kind == "token":
            return f"the API token from {self.source}"
        if self.kind == "key":
            return f"the username/key from {self.source}"
        return f"the OAuth login in {self.source} (from `kaggle auth login`)"

    def fix(self) -> str:
        if self.kind == "token":
            hint = f"it may be expired or revoked: create a new token at {TOKEN_URL}"
            if self.shadowed:
                hint += f" (or unset {self.source} to use the username/key from {self.shadowed})" if \
                    self.source.startswith("KAGGLE_") else f" (or remove {self.source} to use {self.shadowed})"
            return hint
        if self.kind == "key":
            return f"check the username and key, or create a new API token at {TOKEN_URL}"
        return "run `kaggle auth login` again"


def _home(env) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))


def _world_readable_note(path: Path) -> str | None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if os.name != "nt" and mode & (stat.S_IRGRP | stat.S_IROTH):
        return f"warning: {path} is readable by other users of this machine; run: chmod 600 {path}"
    return None


def _read_secret_file(path: Path, what: str) -> str:
    if path.is_dir():
        raise KitError(f"{path}: is a folder, but {what} must be a file holding the token alone")
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError as error:
        raise KitError(f"{path}: cannot be read ({error.strerror or error}); fix its permissions (chmod 600 {path})")


def client_config_dir(env=None) -> Path:
    """The folder the client reads kaggle.json from (KAGGLE_CONFIG_DIR, ~/.kaggle or ~/.config/kaggle)."""
    env = os.environ if env is None else env
    home = _home(env)
    raw = env.get("KAGGLE_CONFIG_DIR")
    if raw:
        if raw.startswith("~"):
            raise KitError(
                f"KAGGLE_CONFIG_DIR={raw}: the client does not expand '~' there; "
                f"give the full path (e.g. {home}/.kaggle) or unset it"
            )
        path = Path(raw)
        if path.exists() and not path.is_dir():
            raise KitError(
                f"KAGGLE_CONFIG_DIR={raw} is a file, not a folder; set it to the folder that holds "
                f"kaggle.json (here {path.parent}) or unset it"
            )
        return path
    default = home / ".kaggle"
    if sys.platform.startswith("linux") and not default.exists():
        return Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"
    return default


def _token_source(env, home: Path, notes: list[str]) -> str | None:
    # Inside a Kaggle notebook the client reads the token file it is given.
    if env.get("KAGGLE_KERNEL_RUN_TYPE") and env.get("KAGGLE_DATA_PROXY_URL") and env.get("KAGGLE_API_V1_TOKEN"):
        path = Path(env["KAGGLE_API_V1_TOKEN"])
        if path.is_file() and _read_secret_file(path, "KAGGLE_API_V1_TOKEN"):
            return "KAGGLE_API_V1_TOKEN"
    raw = env.get("KAGGLE_API_TOKEN")
    if raw:
        path = Path(raw)
        if path.exists():  # the client accepts a path to a token file there too
            if not _read_secret_file(path, "KAGGLE_API_TOKEN"):
                notes.append(f"warning: KAGGLE_API_TOKEN names {path}, which is empty; the client ignores it")
                return None  # and, like the client, skip ~/.kaggle/access_token
            note = _world_readable_note(path)
            if note:
                notes.append(note)
            return f"KAGGLE_API_TOKEN (file {path})"
        if raw.startswith("~") or "/" in raw or "\\" in raw or raw.endswith((".txt", ".json")):
            raise KitError(
                f"KAGGLE_API_TOKEN={raw} looks like a file path, but there is no such file "
                "('~' is not expanded there); set it to the token itself or to the full path of the token file"
            )
        if raw != raw.strip():
            raise KitError("KAGGLE_API_TOKEN has spaces or a line break around the token; set it to the token alone")
        return "KAGGLE_API_TOKEN"
    for name in ("access_token", "access_token.txt"):
        path = home / ".kaggle" / name
        if path.exists() and _read_secret_file(path, "the access token"):
            note = _world_readable_note(path)
            if note:
                notes.append(note)
            return str(path)
    return None


def _key_source(env, config_dir: Path, notes: list[str]) -> tuple[str | None, str | None]:
    """(source of a complete username/key, or None; what is wrong when it is incomplete)."""
    config = config_dir / "kaggle.json"
    from_file: dict = {}
    problem = None
    if config.is_file():
        note = _world_readable_note(config)
        if note:
            notes.append(note)
        try:
            loaded = json.loads(config.read_text(encoding="utf-8"))
            from_file = loaded if isinstance(loaded, dict) else {}
            if not isinstance(loaded, dict):
                problem = f"{config} does not hold a JSON object"
        except (OSError, ValueError) as error:
            problem = f"{config} cannot be read as JSON ({_one_line(getattr(error, 'strerror', None) or error, 80)})"
    elif config.exists():
        problem = f"{config} is not a file"
    # The client overrides each value of kaggle.json with KAGGLE_USERNAME / KAGGLE_KEY when set.
    user_env, key_env = "KAGGLE_USERNAME" in env, "KAGGLE_KEY" in env
    user = env["KAGGLE_USERNAME"] if user_env else from_file.get("username")
    key = env["KAGGLE_KEY"] if key_env else from_file.get("key")
    if user and key:
        if user_env and key_env:
            return "KAGGLE_USERNAME/KAGGLE_KEY", None
        if not user_env and not key_env:
            return str(config), None
        return (f"KAGGLE_USERNAME and the key in {config}" if user_env else f"KAGGLE_KEY and the username in {config}"), None
    if user or key:
        have = ("KAGGLE_USERNAME" if user_env else f"the username in {config}") if user else \
            ("KAGGLE_KEY" if key_env else f"the key in {config}")
        missing = "a key (KAGGLE_KEY, or \"key\" in kaggle.json)" if user else \
            "a username (KAGGLE_USERNAME, or \"username\" in kaggle.json)"
        return None, f"{have} is set but {missing} is not"
    if problem is None and config.is_file():
        problem = f"{config} has no \"username\" and \"key\""
    return None, problem


def find_credentials(env=None) -> Credentials:
    """Find the credentials the client will use, in the client's order, or raise KitError.

    Order (as in the client): a token (KAGGLE_API_TOKEN, a value or a file path, then
    ~/.kaggle/access_token), then username/key (KAGGLE_USERNAME/KAGGLE_KEY over kaggle.json in
    KAGGLE_CONFIG_DIR, ~/.kaggle or ~/.config/kaggle), then an OAuth login (~/.kaggle/credentials.json).
    """
    env = os.environ if env is None else env
    home = _home(env)
    notes: list[str] = []
    config_dir = client_config_dir(env)
    token = _token_source(env, home, notes)
    key, key_problem = _key_source(env, config_dir, notes)
    if token:
        if key:
            notes.append(
                f"note: both a token ({token}) and a username/key ({key}) are set; the client uses the token"
            )
        return Credentials("token", token, shadowed=key, notes=notes)
    if key:
        return Credentials("key", key, notes=notes)
    oauth = home / ".kaggle" / "credentials.json"
    try:
        if oauth.is_file() and json.loads(oauth.read_text(encoding="utf-8")).get("refresh_token"):
            return Credentials("oauth", str(oauth), notes=notes)
    except (OSError, ValueError, AttributeError):
        pass
    for note in notes:
        _note(note)
    if key_problem:
        raise KitError(
            f"Kaggle credentials not usable: {key_problem}; create an API token at {TOKEN_URL} and save it "
            f"in {home}/.kaggle/access_token (then chmod 600 {home}/.kaggle/access_token)"
        )
    elsewhere = ""
    if env.get("KAGGLE_CONFIG_DIR") and (home / ".kaggle" / "kaggle.json").is_file():
        elsewhere = f" ({home}/.kaggle/kaggle.json is not read because KAGGLE_CONFIG_DIR={env['KAGGLE_CONFIG_DIR']})"
    raise KitError(
        f"no Kaggle credentials found{elsewhere}: create an API token at {TOKEN_URL}, save it in "
        f"{home}/.kaggle/access_token and run chmod 600 {home}/.kaggle/access_token "
        f"(or export KAGGLE_API_TOKEN=<token>; a legacy kaggle.json goes in {config_dir}/)"
    )


# --------------------------------------------------------------------------- the client


def _timeout_seconds() -> float:
    raw = os.environ.get("KIT_KAGGLE_TIMEOUT", "")
    if not raw.strip():
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise KitError(f"KIT_KAGGLE_TIMEOUT={raw!r}: give the seconds to wait for Kaggle, e.g. 120")
    return value


@contextlib.contextmanager
def _default_timeouts(seconds: float):
    """Give every request made without a timeout (the client's API calls) this one."""
    from requests.adapters import HTTPAdapter

    original = HTTPAdapter.send

    def send(self, request, *args, **kwargs):
        if len(args) >= 2:
            if args[1] is None:
                args = (args[0], seconds) + tuple(args[2:])
        elif kwargs.get("timeout") is None:
            kwargs["timeout"] = seconds
        return original(self, request, *args, **kwargs)

    HTTPAdapter.send = send
    try:
        yield
    finally:
        HTTPAdapter.send = original


@contextlib.contextmanager
def _quiet(stderr: bool = True):
    """Keep the client's prints (help texts, warnings, retries) off the user's terminal."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        if stderr:
            with contextlib.redirect_stderr(sink):
                yield sink
        else:
            yield sink


def _client_version() -> str:
    try:
        from importlib.metadata import version

        return version("kaggle")
    except Exception:  # noqa: BLE001 - only for a progress line
        return "?"


@dataclass
class _Session:
    api: object
    creds: Credentials
    competition: str
    command: str  # "data" or "upload", for the hint "run `make ...` again"
    timeout: float


@contextlib.contextmanager
def kaggle_session(creds: Credentials, competition: str, command: str):
    """Import and authenticate the client (output captured, SystemExit caught), with timeouts."""
    for name in SECRET_ENV:
        os.environ.pop(name, None)
    timeout = _timeout_seconds()
    try:
        import requests  # noqa: F401 - the client's HTTP library
    except ImportError as error:
        raise KitError(f"the Kaggle client's dependencies are missing ({error}); reinstall with `make venv`") from None
    with _default_timeouts(timeout):
        session = _Session(None, creds, competition, command, timeout)
        try:
            with _quiet():
                import kaggle  # noqa: F401 - authenticates at import time, guarded inside the client (2.x)
                from kaggle.api.kaggle_api_extended import KaggleApi

                api = KaggleApi()
                api.authenticate()
        except SystemExit:
            raise KitError(
                f"credentials rejected: the Kaggle client did not accept {creds.describe()}; {creds.fix()}"
            ) from None
        except ImportError as error:
            raise KitError(
                f"the Kaggle client cannot be imported ({type(error).__name__}: {_one_line(error, 120)}); "
                "reinstall the environment with `make venv` (pip install -e .)"
            ) from None
        except Exception as error:  # noqa: BLE001 - every failure becomes one line
            raise _translate(error, session, "signing in to Kaggle") from None
        session.api = api
        yield session


def _status_code(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    if response is None:
        return None
    code = getattr(response, "status_code", None)
    if isinstance(code, int) and code >= 400:
        return code
    try:  # an error carried in a 200 answer's JSON body, as the client also checks
        body_code = int(response.json().get("code"))
        return body_code if body_code >= 400 else code
    except Exception:  # noqa: BLE001
        return code


def _server_message(error: BaseException) -> str:
    response = getattr(error, "response", None)
    try:
        message = response.json().get("message")
    except Exception:  # noqa: BLE001
        message = None
    return f" ({_one_line(message, 160)})" if message else ""


def _os_reason(error: BaseException) -> str:
    """The innermost system reason of a connection error ('Connection refused'), for display only."""
    match = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", str(error))
    if match:
        return match[-1].strip()
    return type(error).__name__


def _translate(error: BaseException, session: _Session, doing: str) -> KitError:
    """One line for a failure while talking to Kaggle, decided by the HTTP status code or the error type."""
    import requests

    c = session.competition
    again = f"`make {session.command}`"
    status = _status_code(error) if isinstance(error, requests.exceptions.RequestException) else None
    if status is not None:
        response = error.response
        method = getattr(getattr(response, "request", None), "method", "POST")
        if status == 401:
            return KitError(f"credentials rejected (HTTP 401) using {session.creds.describe()}; {session.creds.fix()}")
        if status == 429:
            extra = "; if you have used today's submissions, try again after 00:00 UTC" if session.command == "upload" else ""
            return KitError(
                f"too many requests (HTTP 429): Kaggle is limiting this account; wait a few minutes and run {again} again{extra}"
            )
        if status >= 500:
            return KitError(f"Kaggle's server failed (HTTP {status}) while {doing}; this is on Kaggle's side, try {again} again later")
        if method != "POST":  # the storage link (GET download, PUT upload), not the API
            return KitError(f"Kaggle's file storage answered HTTP {status} while {doing}; run {again} again")
        if status == 403:
            closed = " (or the competition no longer accepts submissions)" if session.command == "upload" else ""
            return KitError(
                f"access denied (HTTP 403) to competition '{c}': accept its rules at {rules_url(c)} with the "
                f"account of {session.creds.describe()}, then run {again} again{closed}"
            )
        if status == 404:
            return KitError(
                f"competition '{c}' not found (HTTP 404): check the name in its URL, "
                f"kaggle.com/competitions/<name> (COMPETITION=digit-recognizer is the default)"
            )
        if session.command == "upload":
            return KitError(
                f"Kaggle refused the submission (HTTP {status}){_server_message(error)}; see your submissions "
                f"and today's limit at {submissions_url(c)}"
            )
        return KitError(f"Kaggle refused the request (HTTP {status}){_server_message(error)} while {doing}")
    if isinstance(error, requests.exceptions.Timeout):
        return KitError(
            f"Kaggle did not answer within {session.timeout:g} s while {doing} ({type(error).__name__}); "
            f"check the connection and run {again} again (KIT_KAGGLE_TIMEOUT=seconds waits longer)"
        )
    if isinstance(error, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)) \
            or type(error).__module__.startswith("urllib3") and "Protocol" in type(error).__name__:
        return KitError(f"the connection broke while {doing} ({type(error).__name__}); run {again} again")
    if isinstance(error, requests.exceptions.ConnectionError):
        return KitError(
            f"cannot reach Kaggle while {doing} ({_os_reason(error)}); check the internet connection and any "
            f"proxy settings (https_proxy), then run {again} again"
        )
    if isinstance(error, OSError) and not isinstance(error, requests.exceptions.RequestException):
        where = f" {error.filename}" if getattr(error, "filename", None) else ""
        return KitError(f"file error while {doing}:{where} {error.strerror or error}")
    return KitError(f"{doing} failed ({type(error).__name__}: {_one_line(error, 200)}); run {again} again")


def _call(session: _Session, doing: str, function, *args, **kwargs):
    """Call the client with its output captured; retry a bounded number of times on HTTP 429."""
    import requests

    delay = RATE_LIMIT_FIRST_DELAY
    for attempt in range(1, RATE_LIMIT_ATTEMPTS + 1):
        try:
            with _quiet(stderr=False):
                return function(*args, **kwargs)
        except KeyboardInterrupt:
            raise
        except SystemExit:
            raise KitError(f"the Kaggle client stopped while {doing}; {session.creds.fix()}") from None
        except Exception as error:  # noqa: BLE001 - every failure becomes one line
            if isinstance(error, requests.exceptions.RequestException) and _status_code(error) == 429 \
                    and attempt < RATE_LIMIT_ATTEMPTS:
                wait = _retry_after(error.response)
                wait = min(RATE_LIMIT_MAX_DELAY, delay if wait is None else wait)
                _note(f"Kaggle says too many requests (HTTP 429); retrying in {wait:.1f} s "
                      f"(attempt {attempt + 1} of {RATE_LIMIT_ATTEMPTS})")
                time.sleep(wait)
                delay *= 2
                continue
            raise _translate(error, session, doing) from None
    raise AssertionError("unreachable")


def _retry_after(response) -> float | None:
    try:
        value = float(response.headers.get("Retry-After"))
    except (TypeError, ValueError, AttributeError):
        return None
    return max(0.0, value)


# --------------------------------------------------------------------------- checking and installing the files


def _unsafe_entry(name: str) -> bool:
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return True
    return ".." in re.split(r"[/\\]", name)


def _unpack(archive: Path, dest: Path, label: str) -> None:
    """Unpack the three CSVs of `archive` into `dest`, refusing anything suspicious."""
    corrupt = (f"{label}: the archive is truncated or corrupt ({{}}); download it again "
               "(make data FORCE=1, or a fresh copy for ZIP=)")
    try:
        handle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, EOFError, ValueError) as error:
        raise KitError(corrupt.format(_one_line(error, 80))) from None
    except OSError as error:
        raise KitError(f"{label}: cannot be read ({error.strerror or error})") from None
    with handle:
        infos = handle.infolist()
        for info in infos:
            if _unsafe_entry(info.filename):
                raise KitError(
                    f"{label}: entry {info.filename!r} has an absolute path or '..'; refusing to unpack this archive"
                )
        found: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename[2:] if info.filename.startswith("./") else info.filename
            if name in COMPETITION_FILES and not info.is_dir():
                if name in found:
                    raise KitError(f"{label}: holds {name} twice; refusing an ambiguous archive")
                found[name] = info
        missing = [name for name in COMPETITION_FILES if name not in found]
        if missing:
            held = ", ".join(info.filename for info in infos[:6]) or "nothing"
            raise KitError(
                f"{label}: {', '.join(missing)} missing from the archive (it holds {held}); "
                "is this the competition's archive?"
            )
        if sum(info.file_size for info in found.values()) > MAX_UNPACKED_BYTES:
            raise KitError(f"{label}: the CSVs would unpack to more than {MAX_UNPACKED_BYTES >> 30} GB; not the competition's files")
        dest.mkdir(parents=True, exist_ok=True)
        for name, info in found.items():
            try:
                with handle.open(info) as source, open(dest / name, "wb") as target:
                    shutil.copyfileobj(source, target, 1 << 20)
            except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError, ValueError) as error:
                raise KitError(corrupt.format(f"{name}: {_one_line(error, 80)}")) from None
            except OSError as error:
                raise KitError(f"{label}: cannot unpack {name} into {dest} ({error.strerror or error})") from None


def _check_files(folder: Path, label: str) -> tuple[int, int]:
    """Strict checks of the three CSVs in `folder`; messages name `label` instead of the temporary path."""
    from .data import parse_csv
    from .submit import read_submission

    def relabel(error: KitError, name: str) -> KitError:
        text = str(error).replace(str(folder / name), f"{label}: {name}")
        return KitError(f"{text} (data/ was left unchanged)")

    counts = []
    for name, has_label in (("train.csv", True), ("test.csv", False)):
        try:
            x, _ = parse_csv(folder / name, has_label)
        except KitError as error:
            raise relabel(error, name) from None
        counts.append(len(x))
    sample = folder / "sample_submission.csv"
    with open(sample, encoding="utf-8-sig", errors="replace") as handle:
        header = handle.readline().strip()
    if header.replace(" ", "") != SAMPLE_HEADER:
        raise KitError(f"{label}: sample_submission.csv, line 1: header is {header[:60]!r}; it must be {SAMPLE_HEADER}")
    try:
        ids, _ = read_submission(sample)
    except KitError as error:
        raise relabel(error, "sample_submission.csv") from None
    n_test = counts[1]
    if len(ids) != n_test or list(ids) != list(range(1, n_test + 1)):
        raise KitError(
            f"{label}: sample_submission.csv has {len(ids)} rows (ImageId 1..N expected) but test.csv has {n_test}; "
            "the archive's files do not belong together"
        )
    return counts[0], counts[1]


def installed_problem(data_dir: Path) -> str | None:
    """None when data_dir holds the three valid files, else what is missing or wrong (one line)."""
    from .data import is_cached, parse_csv

    missing = [name for name in COMPETITION_FILES if not (data_dir / name).is_file()]
    if missing:
        return f"{data_dir}/ lacks {', '.join(missing)}"
    try:
        for name, has_label in (("train.csv", True), ("test.csv", False)):
            path = data_dir / name
            if not is_cached(path, has_label):  # a valid cache means the CSV was checked
                parse_csv(path, has_label)  # no cache written: data/ stays exactly as it is
        with open(data_dir / "sample_submission.csv", encoding="utf-8-sig", errors="replace") as handle:
            if handle.readline().strip().replace(" ", "") != SAMPLE_HEADER:
                return f"{data_dir}/sample_submission.csv does not start with {SAMPLE_HEADER}"
    except KitError as error:
        return str(error)
    except OSError as error:
        return f"{data_dir}: {error.strerror or error}"
    return None


STALE_STAGING_SECONDS = 24 * 3600


def _remove_stale_staging(parent: Path, prefix: str) -> None:
    """Temporary folders left by a run that was killed outright (kill -9, power cut), a day old or more."""
    with contextlib.suppress(OSError):
        for path in parent.glob(f"{prefix}*"):
            if path.is_dir() and time.time() - path.stat().st_mtime > STALE_STAGING_SECONDS:
                shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _staging(data_dir: Path):
    """A temporary folder beside data_dir (same file system, so the final renames are atomic)."""
    parent = data_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(parent, f".{data_dir.name}.download-")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.download-", dir=parent))
    except OSError as error:
        raise KitError(f"{parent}: cannot create a temporary folder there ({error.strerror or error})") from None
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(unpacked: Path, data_dir: Path, backup: Path) -> None:
    """Rename the three files into data_dir; if any rename fails, put the old files back."""
    created = not data_dir.exists()
    backup.mkdir()
    done: list[str] = []
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        for name in COMPETITION_FILES:
            target = data_dir / name
            if target.is_file():
                try:
                    os.link(target, backup / name)
                except OSError:
                    shutil.copy2(target, backup / name)
            os.replace(unpacked / name, target)
            done.append(name)
    except BaseException as error:
        for name in reversed(done):
            with contextlib.suppress(OSError):
                if (backup / name).exists():
                    os.replace(backup / name, data_dir / name)
                else:
                    (data_dir / name).unlink()
        if created:
            with contextlib.suppress(OSError):
                data_dir.rmdir()
        if isinstance(error, OSError):
            raise KitError(f"{data_dir}: cannot move the files into place ({error.strerror or error}); "
                           "data/ was left unchanged") from None
        raise


def _install_from(archive: Path, data_dir: Path, staging: Path, label: str) -> tuple[int, int]:
    unpacked = staging / "unpacked"
    _unpack(archive, unpacked, label)
    n_train, n_test = _check_files(unpacked, label)
    _move_into_place(unpacked, data_dir, staging / "previous")
    return n_train, n_test


def install_archive(archive: str | os.PathLike, data_dir: str | os.PathLike, label: str | None = None) -> tuple[int, int]:
    """Check a competition archive and install its three CSVs into data_dir atomically (no network).

    Returns (train rows, test rows). Raises KitError, leaving data_dir untouched, when the archive is
    not a zip, is truncated, has an entry with an absolute path or '..', lacks a CSV, or a CSV fails
    the checks.
    """
    archive, data_dir = Path(archive), Path(data_dir)
    label = label or str(archive)
    if not archive.exists():
        raise KitError(f"{archive}: no such file; give the path of the competition's .zip archive")
    if archive.is_dir():
        raise KitError(f"{archive}: is a folder; give the path of the competition's .zip archive")
    if data_dir.exists() and not data_dir.is_dir():
        raise KitError(f"{data_dir}: is a file, not a folder; give another data folder")
    with _staging(data_dir) as staging:
        return _install_from(archive, data_dir, staging, label)


# --------------------------------------------------------------------------- kit data


def _find_download(folder: Path, competition: str) -> Path:
    expected = folder / f"{competition}.zip"
    if expected.is_file():
        return expected
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".kaggle-partial"))
    if len(files) == 1:
        return files[0]
    if all((folder / name).is_file() for name in COMPETITION_FILES):
        return folder  # a client that unpacks by itself
    raise KitError(
        f"the Kaggle client reported success but left {', '.join(p.name for p in files) or 'nothing'} in {folder}; "
        "run `make data` again"
    )


def run_data(competition: str, data_dir: Path, force: bool = False, zip_path: Path | None = None) -> None:
    """`kit data`: download the competition's archive with the client (or take ZIP=), check it, install it."""
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise KitError(f"{data_dir}: is a file, not a folder; give another data folder")
    if zip_path is None:
        check_competition(competition)
    if not force:
        problem = installed_problem(data_dir)
        if problem is None:
            _say(f"{data_dir}/ already holds valid {', '.join(COMPETITION_FILES)}; nothing to do "
                 "(FORCE=1 installs them again)")
            return
        if any((data_dir / name).exists() for name in COMPETITION_FILES):
            _say(f"{problem}; installing them again")
    if zip_path is not None:
        zip_path = Path(zip_path)
        _say(f"checking {zip_path} ...")
        n_train, n_test = install_archive(zip_path, data_dir)
        _say(f"installed {data_dir}/train.csv ({n_train} rows), test.csv ({n_test} rows), "
             f"sample_submission.csv from {zip_path}")
        return

    creds = find_credentials()
    for note in creds.notes:
        _note(note)
    with _staging(data_dir) as staging:
        download = staging / "download"
        download.mkdir()
        with kaggle_session(creds, competition, "data") as session:
            _say(f"downloading {competition} with the Kaggle client {_client_version()} using {creds.describe()} ...")

            def fetch():
                for leftover in download.iterdir():  # a fresh start after a 429
                    if leftover.is_dir():
                        shutil.rmtree(leftover, ignore_errors=True)
                    else:
                        leftover.unlink()
                session.api.competition_download_files(competition, path=str(download), force=True, quiet=False)

            _call(session, f"downloading {competition}", fetch)
        archive = _find_download(download, competition)
        label = f"the archive downloaded for {competition}"
        if archive.is_dir():
            n_train, n_test = _check_files(archive, label)
            _move_into_place(archive, data_dir, staging / "previous")
        else:
            _say(f"checking {archive.name} ({archive.stat().st_size / 1e6:.1f} MB) ...")
            n_train, n_test = _install_from(archive, data_dir, staging, label)
    _say(f"installed {data_dir}/train.csv ({n_train} rows), test.csv ({n_test} rows), sample_submission.csv")


# --------------------------------------------------------------------------- kit upload


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


def _poll(session: _Session, ref, message: str, wait_seconds: float) -> None:
    import requests

    c = session.competition
    later = f"see {submissions_url(c)} (or run: kaggle competitions submissions {c})"
    if wait_seconds <= 0:
        _say(f"not waiting for the score; {later}")
        return
    _say(f"waiting up to {wait_seconds:g} s for the score ...")
    deadline = time.monotonic() + wait_seconds
    interval = min(5.0, max(1.0, wait_seconds / 10))
    last = None
    while True:
        try:
            with _quiet(stderr=False):
                listed = session.api.competition_submissions(c)
        except KeyboardInterrupt:
            raise
        except SystemExit:
            _note("warning: the Kaggle client stopped while reading the submission list")
            break
        except Exception as error:  # noqa: BLE001 - the submission is made; only the waiting fails
            transient = isinstance(error, requests.exceptions.RequestException) and (
                _status_code(error) in (None, 429) or (_status_code(error) or 0) >= 500)
            if not transient:
                _note(f"warning: could not read the submission list: {_translate(error, session, 'polling')}")
                break
            listed = None
        submission = _find_submission(listed, ref, message)
        status = _status_name(submission) if submission is not None else "pending"
        if status == "complete":
            score = _field(submission, "public_score", "publicScore")
            score = score if score not in (None, "") else "not published yet"
            _say(f"status: complete, public score: {score}")
            return
        if status == "error":
            reason = _field(submission, "error_description", "errorDescription") or "no reason given"
            raise KitError(
                f"Kaggle could not score the submission{f' {ref}' if ref else ''}: {_one_line(reason, 200)}; "
                f"fix the file and upload again ({submissions_url(c)})"
            )
        if status != last:
            _say(f"status: {status}")
            last = status
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    _say(f"no score yet after {wait_seconds:g} s; {later}")


def run_upload(file: Path, message: str | None, competition: str, wait_seconds: float = 60.0,
               data_dir: Path = Path("data")) -> None:
    """`kit upload`: check the file as `make submit` does, submit it, wait a bounded time for the score."""
    from .submit import check_submission_file

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
    for note in creds.notes:
        _note(note)
    with kaggle_session(creds, competition, "upload") as session:
        _say(f"uploading {file} ({n_rows} rows) to {competition} as {message!r} using {creds.describe()} ...")
        result = _call(session, f"submitting {file}", session.api.competition_submit,
                       file_name=str(file), message=message, competition=competition, quiet=True)
        if _upload_failed(result):
            raise KitError(
                f"the upload of {file} to Kaggle failed, so nothing was submitted (the client said "
                f"{UPLOAD_FAILED_MESSAGE!r}); run `make upload` again"
            )
        ref = _field(result, "ref") or None
        server_message = _field(result, "message")
        _say(f"submitted{f' (ref {ref})' if ref else ''}: {_one_line(server_message, 160) if server_message else 'ok'}")
        _poll(session, ref, message, float(wait_seconds))
