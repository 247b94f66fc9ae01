"""The session with the official Kaggle client: loading it, signing in, timeouts, calls, one-line errors.

Used by kit/kaggle/download.py and upload.py (`make data`, `make upload`); nothing here runs
before one of those commands has found credentials (kit/kaggle/auth.py). What the kit relies on
in the client (read in the source of kaggle 2.2.4 and 2.2.5, both tested against
tests/fake_kaggle.py):

- `import kaggle` signs in at once (kaggle/__init__.py); without credentials
  `KaggleApi.authenticate()` prints a long help text and raises SystemExit(1) (1.7: OSError).
  The kit clears VERBOSE / VERBOSE_OUTPUT (they make the client print every request header, the
  key included), imports with stdout/stderr captured and signs in with its own `KaggleApi`.
- Timeouts: the client's calls set none. Every API call (and the download it redirects to) goes
  through the session of the `KaggleClient` that `KaggleApi.build_kaggle_client()` makes; the
  kit's `KaggleApi` subclass mounts on that session an adapter whose default timeout is
  KIT_KAGGLE_TIMEOUT seconds (default 60). The upload's PUT runs in a session that
  `KaggleApi.upload_complete` makes itself, so the subclass does that one PUT the client's way
  (same retries, same outcome) in a session with the timeout. The sign-in at import time, the
  one request no caller can reach, runs in a thread that the kit waits for that long.
  Nothing in `requests` or in the client is patched.
- Errors are `requests.HTTPError` whose `response.status_code` decides the kit's message, never
  the text; HTTP 429 is retried a bounded number of times with backoff.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import threading
import time
from dataclasses import dataclass

from kit.core.console import note, one_line
from kit.core.errors import KitError
from kit.kaggle.auth import Credentials

DEFAULT_TIMEOUT = 60.0  # seconds a request may stall before the kit gives up (KIT_KAGGLE_TIMEOUT)
UPLOAD_RETRIES = 10  # what KaggleApi.upload_complete gives its PUT: Retry(total=10, backoff_factor=0.5)
UPLOAD_BACKOFF = 0.5
RATE_LIMIT_ATTEMPTS = 4  # tries of one call answered 429 (too many requests), with backoff between
RATE_LIMIT_FIRST_DELAY = 2.0
RATE_LIMIT_MAX_DELAY = 30.0
SECRET_ENV = ("VERBOSE", "VERBOSE_OUTPUT")


_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


def check_competition(competition: str | None) -> str:
    """The slug is always given explicitly (never taken from the client's config)."""
    if not competition or not _SLUG.match(competition):
        raise KitError(
            f"COMPETITION={competition!r} is not a competition name; use the lower-case name from the "
            "competition's URL, e.g. digit-recognizer for kaggle.com/competitions/digit-recognizer"
        )
    return competition


def rules_url(competition: str) -> str:
    return f"https://www.kaggle.com/competitions/{competition}/rules"


def submissions_url(competition: str) -> str:
    return f"https://www.kaggle.com/competitions/{competition}/submissions"


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
def quiet(stderr: bool = True):
    """Keep the client's prints (help texts, warnings, retries) off the user's terminal."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        if stderr:
            with contextlib.redirect_stderr(sink):
                yield sink
        else:
            yield sink


def client_version() -> str:
    try:
        from importlib.metadata import version

        return version("kaggle")
    except Exception:  # noqa: BLE001 - only for a progress line
        return "?"


def _timed_out(seconds: float, doing: str, command: str, what: str = "") -> KitError:
    return KitError(
        f"Kaggle did not answer within {seconds:g} s while {doing}{f' ({what})' if what else ''}; "
        f"check the connection and run `make {command}` again (KIT_KAGGLE_TIMEOUT=seconds waits longer)"
    )


def _import_client(seconds: float, command: str) -> None:
    """`import kaggle`, its sign-in at import time given `seconds` (call with output captured).

    kaggle/__init__.py runs `KaggleApi().authenticate()`, which with a token asks Kaggle whether
    it is active, in a session no caller can reach. So the import runs in a thread; once the
    client's code is loaded (`kaggle.__version__` is set, just before that sign-in) the kit waits
    `seconds` more at most. Errors of the import are raised here.
    """
    if hasattr(sys.modules.get("kaggle"), "api"):
        return
    failures: list[BaseException] = []

    def load() -> None:
        try:
            import kaggle  # noqa: F401
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
            failures.append(error)

    thread = threading.Thread(target=load, name="import kaggle", daemon=True)
    thread.start()
    deadline = None
    while thread.is_alive():
        thread.join(0.05)
        if deadline is None and hasattr(sys.modules.get("kaggle"), "__version__"):
            deadline = time.monotonic() + seconds
        if deadline is not None and thread.is_alive() and time.monotonic() > deadline:
            raise _timed_out(seconds, "signing in to Kaggle", command)
    if failures:
        raise failures[0]


def _api_with_timeouts(seconds: float):
    """A `KaggleApi` whose HTTP sessions default to a timeout of `seconds` (the client's code is imported)."""
    import requests
    from kaggle.api.kaggle_api_extended import KaggleApi
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    class TimeoutAdapter(HTTPAdapter):
        def send(self, request, stream=False, timeout=None, **kwargs):
            return super().send(
                request, stream=stream, timeout=seconds if timeout is None else timeout, **kwargs
            )

    def give_timeout(session, **adapter_options) -> None:
        for prefix in ("https://", "http://"):
            session.mount(prefix, TimeoutAdapter(**adapter_options))

    class KitKaggleApi(KaggleApi):
        def build_kaggle_client(self):
            client = super().build_kaggle_client()
            http = client.http_client()  # kagglesdk's KaggleHttpClient: one requests.Session per client
            http._init_session()  # made now instead of on entering `with`, so that it can get the adapter
            if isinstance(getattr(http, "_session", None), requests.Session):
                give_timeout(http._session)
            return client

        def upload_complete(self, path, url, quiet, resume=False):
            if resume:  # competition_submit never resumes
                return super().upload_complete(path, url, quiet, resume)
            from kaggle.models.kaggle_models_extended import ResumableUploadResult

            try:
                with requests.Session() as session, open(path, "rb") as handle:
                    give_timeout(
                        session, max_retries=Retry(total=UPLOAD_RETRIES, backoff_factor=UPLOAD_BACKOFF)
                    )
                    response = session.put(url, data=handle)
            except Exception as error:  # noqa: BLE001 - as the client: print it, report the upload incomplete
                print(error)
                return ResumableUploadResult.INCOMPLETE
            if self._is_upload_successful(response):
                return ResumableUploadResult.COMPLETE
            return (
                ResumableUploadResult.INCOMPLETE
                if response.status_code == 503
                else ResumableUploadResult.FAILED
            )

    return KitKaggleApi()


@dataclass
class ClientSession:
    api: object
    creds: Credentials
    competition: str
    command: str  # "data" or "upload", for the hint "run `make ...` again"
    timeout: float


@contextlib.contextmanager
def kaggle_session(creds: Credentials, competition: str, command: str):
    """Import the client and sign in (output captured, SystemExit caught), every request with a timeout."""
    for name in SECRET_ENV:
        os.environ.pop(name, None)
    timeout = _timeout_seconds()
    try:
        import requests  # noqa: F401 - the client's HTTP library
    except ImportError as error:
        raise KitError(
            f"the Kaggle client's dependencies are missing ({error}); reinstall with `make venv`"
        ) from None
    session = ClientSession(None, creds, competition, command, timeout)
    try:
        with quiet():
            _import_client(timeout, command)
            api = _api_with_timeouts(timeout)
            api.authenticate()
    except SystemExit:
        raise KitError(
            f"credentials rejected: the Kaggle client did not accept {creds.describe()}; {creds.fix()}"
        ) from None
    except ImportError as error:
        raise KitError(
            f"the Kaggle client cannot be imported ({type(error).__name__}: {one_line(error, 120)}); "
            "reinstall the environment with `make venv` (pip install -e .)"
        ) from None
    except KitError:
        raise
    except Exception as error:  # noqa: BLE001 - every failure becomes one line
        raise translate(error, session, "signing in to Kaggle") from None
    session.api = api
    yield session


def status_code(error: BaseException) -> int | None:
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
    return f" ({one_line(message, 160)})" if message else ""


def _os_reason(error: BaseException) -> str:
    """The innermost system reason of a connection error ('Connection refused'), for display only."""
    match = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", str(error))
    if match:
        return match[-1].strip()
    return type(error).__name__


def translate(error: BaseException, session: ClientSession, doing: str) -> KitError:
    """One line for a failure while talking to Kaggle, decided by the HTTP status code or the error type."""
    import requests

    c = session.competition
    again = f"`make {session.command}`"
    status = status_code(error) if isinstance(error, requests.exceptions.RequestException) else None
    if status is not None:
        response = error.response
        method = getattr(getattr(response, "request", None), "method", "POST")
        if status == 401:
            return KitError(
                f"credentials rejected (HTTP 401) using {session.creds.describe()}; {session.creds.fix()}"
            )
        if status == 429:
            extra = (
                "; if you have used today's submissions, try again after 00:00 UTC"
                if session.command == "upload"
                else ""
            )
            return KitError(
                "too many requests (HTTP 429): Kaggle is limiting this account; wait a few minutes and "
                f"run {again} again{extra}"
            )
        if status >= 500:
            return KitError(
                f"Kaggle's server failed (HTTP {status}) while {doing}; this is on Kaggle's side, try "
                f"{again} again later"
            )
        if method != "POST":  # the storage link (GET download, PUT upload), not the API
            return KitError(f"Kaggle's file storage answered HTTP {status} while {doing}; run {again} again")
        if status == 403:
            closed = (
                " (or the competition no longer accepts submissions)" if session.command == "upload" else ""
            )
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
                f"Kaggle refused the submission (HTTP {status}){_server_message(error)}; see your "
                "submissions "
                f"and today's limit at {submissions_url(c)}"
            )
        return KitError(f"Kaggle refused the request (HTTP {status}){_server_message(error)} while {doing}")
    if isinstance(error, requests.exceptions.Timeout):
        return _timed_out(session.timeout, doing, session.command, type(error).__name__)
    if (
        isinstance(
            error, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)
        )
        or type(error).__module__.startswith("urllib3")
        and "Protocol" in type(error).__name__
    ):
        return KitError(f"the connection broke while {doing} ({type(error).__name__}); run {again} again")
    if isinstance(error, requests.exceptions.ConnectionError):
        return KitError(
            f"cannot reach Kaggle while {doing} ({_os_reason(error)}); check the internet connection and any "
            f"proxy settings (https_proxy), then run {again} again"
        )
    if isinstance(error, OSError) and not isinstance(error, requests.exceptions.RequestException):
        where = f" {error.filename}" if getattr(error, "filename", None) else ""
        return KitError(f"file error while {doing}:{where} {error.strerror or error}")
    return KitError(f"{doing} failed ({type(error).__name__}: {one_line(error, 200)}); run {again} again")


def call(session: ClientSession, doing: str, function, *args, **kwargs):
    """Call the client with its output captured; retry a bounded number of times on HTTP 429."""
    import requests

    delay = RATE_LIMIT_FIRST_DELAY
    for attempt in range(1, RATE_LIMIT_ATTEMPTS + 1):
        try:
            with quiet(stderr=False):
                return function(*args, **kwargs)
        except KeyboardInterrupt:
            raise
        except SystemExit:
            raise KitError(f"the Kaggle client stopped while {doing}; {session.creds.fix()}") from None
        except Exception as error:  # noqa: BLE001 - every failure becomes one line
            if (
                isinstance(error, requests.exceptions.RequestException)
                and status_code(error) == 429
                and attempt < RATE_LIMIT_ATTEMPTS
            ):
                wait = _retry_after(error.response)
                wait = min(RATE_LIMIT_MAX_DELAY, delay if wait is None else wait)
                note(
                    f"Kaggle says too many requests (HTTP 429); retrying in {wait:.1f} s "
                    f"(attempt {attempt + 1} of {RATE_LIMIT_ATTEMPTS})"
                )
                time.sleep(wait)
                delay *= 2
                continue
            raise translate(error, session, doing) from None
    raise AssertionError("unreachable")


def _retry_after(response) -> float | None:
    try:
        value = float(response.headers.get("Retry-After"))
    except (TypeError, ValueError, AttributeError):
        return None
    return max(0.0, value)
