"""A fake Kaggle on localhost for the tests (standard library only).

It speaks the protocol the installed `kaggle` client really uses (read from kaggle/api and
kagglesdk): with KAGGLE_API_ENVIRONMENT=LOCALHOST the client sends every API call as a JSON POST
to http://localhost/api/v1/<service>/<Method>; with http_proxy=http://127.0.0.1:PORT (and
no_proxy empty) those requests arrive here in absolute form ("POST http://localhost/api/v1/...").

    POST /api/v1/security.OAuthService/IntrospectToken            {"token"} -> {"active", "username"}
    POST /api/v1/competitions.CompetitionApiService/DownloadDataFiles  {"competitionName"}
         -> 302 Location: http://localhost/storage/<competition>.zip
    GET  /storage/<name>.zip                                       the archive (Content-Length, Last-Modified)
    POST .../StartSubmissionUpload   {"competitionName", "fileName", "contentLength", ...}
         -> {"token", "createUrl": "http://localhost/upload/<token>"}
    PUT  /upload/<token>                                            the file's bytes, recorded exactly
    POST .../CreateSubmission        {"competitionName", "blobFileTokens", "submissionDescription"}
         -> {"message", "ref"}
    POST .../ListSubmissions         {"competitionName", ...} -> {"submissions": [...]}, newest first

Errors are answered as Kaggle does: a JSON body {"code": N, "message": ...} with HTTP status N.
API calls need `Authorization: Basic <username:key>` or `Bearer <token>` matching the fake account.
A test steers it by setting attributes between runs (see `reset`): `fail` (endpoint -> status),
`valid_keys` / `valid_tokens` / `introspect_open` (the account), `rate_limit` (endpoint -> how
many 429 answers before success), `delay` (endpoint -> seconds to stall), `archive` (the bytes
served), `pending_polls`, `score_error`. Every request is recorded in `requests`. Request
handling is bounded: each connection has a socket timeout and is closed after one answer, stalls
end when the server stops.
"""

from __future__ import annotations

import base64
import email.utils
import functools
import io
import json
import random
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

PIXELS = 784
TRAIN_HEADER = "label," + ",".join(f"pixel{i}" for i in range(PIXELS))
TEST_HEADER = ",".join(f"pixel{i}" for i in range(PIXELS))

USERNAME = "fake-user"
KEY = "fake-key-0123456789abcdef"
TOKEN = "KGAT_fake_token_0123456789"
COMPETITION = "digit-recognizer"
SCORE = "0.98765"


# --------------------------------------------------------------------------- archives


def competition_files(n_train: int = 50, n_test: int = 20, seed: int = 0) -> dict[str, bytes]:
    """train.csv, test.csv and sample_submission.csv in Kaggle's exact layout, generated."""
    return dict(_competition_files(n_train, n_test, seed))


@functools.lru_cache(maxsize=8)
def _competition_files(n_train: int, n_test: int, seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)

    def pixels() -> str:
        return ",".join(str(rng.choice((0, 0, 0, rng.randrange(256)))) for _ in range(PIXELS))

    train = [TRAIN_HEADER] + [f"{i % 10},{pixels()}" for i in range(n_train)]
    test = [TEST_HEADER] + [pixels() for _ in range(n_test)]
    sample = ["ImageId,Label"] + [f"{i},0" for i in range(1, n_test + 1)]
    return {
        "train.csv": ("\n".join(train) + "\n").encode(),
        "test.csv": ("\n".join(test) + "\n").encode(),
        "sample_submission.csv": ("\n".join(sample) + "\n").encode(),
    }


def make_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def archive(kind: str = "ok", n_train: int = 50, n_test: int = 20) -> bytes:
    """The competition archive, or a broken variant of it for the failure tests."""
    files = competition_files(n_train, n_test)
    if kind == "ok":
        return make_zip(files)
    if kind == "truncated":  # cut in the middle: no central directory
        data = make_zip(files)
        return data[: len(data) // 2]
    if kind == "corrupt":  # the right size and zip signature, damaged bytes inside
        data = bytearray(make_zip(files))
        for i in range(200, min(len(data) - 200, 4000)):
            data[i] ^= 0x5A
        return bytes(data)
    if kind == "not-zip":
        return b"<html><body>Please sign in</body></html>\n"
    if kind == "traversal":
        return make_zip({**files, "../evil.csv": b"owned\n"})
    if kind == "absolute":
        return make_zip({**files, "/tmp/evil.csv": b"owned\n"})
    if kind == "missing":
        return make_zip({k: v for k, v in files.items() if k != "test.csv"})
    if kind == "bad-csv":  # row 3 of train.csv has a pixel value out of range
        lines = files["train.csv"].decode().split("\n")
        cells = lines[3].split(",")
        cells[5] = "300"
        lines[3] = ",".join(cells)
        return make_zip({**files, "train.csv": "\n".join(lines).encode()})
    if kind == "bad-sample":
        return make_zip({**files, "sample_submission.csv": b"id,label\n1,0\n"})
    raise ValueError(kind)


# --------------------------------------------------------------------------- the server


class FakeKaggle:
    def __init__(self) -> None:
        self.competitions = {COMPETITION}
        self.lock = threading.Lock()
        self._stopping = threading.Event()
        self.httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.reset()

    def reset(self) -> None:
        """Back to a healthy server with no history."""
        with self.lock:
            self.archive = archive("ok")
            self.fail: dict[str, int] = {}
            self.rate_limit: dict[str, int] = {}
            self.retry_after = "0.1"
            self.delay: dict[str, float] = {}
            self.pending_polls = 0
            self.score_error: str | None = None
            self.valid_tokens = {TOKEN}
            self.introspect_open = False  # True: IntrospectToken answers {"active": false} instead of 401
            self.valid_keys = {(USERNAME, KEY)}
            self.requests: list[dict] = []
            self.uploads: dict[str, bytes] = {}
            self.uploads_expected: dict[str, dict] = {}
            self.submissions: list[dict] = []
            self._counter = 0

    # ---- lifecycle

    def start(self) -> FakeKaggle:
        fake = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        class Handler(_Handler):
            server_fake = fake

        self._stopping.clear()
        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- views for the tests

    def endpoints(self) -> list[str]:
        with self.lock:
            return [r["endpoint"] for r in self.requests]

    # ---- request handling

    def _next(self) -> int:
        with self.lock:
            self._counter += 1
            return self._counter

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if scheme == "Bearer":
            return value in self.valid_tokens
        if scheme == "Basic":
            try:
                user, _, key = base64.b64decode(value).decode().partition(":")
            except Exception:  # noqa: BLE001
                return False
            return (user, key) in self.valid_keys
        return False

    def _steer(self, endpoint: str) -> tuple[int, dict] | None:
        """The scripted answer for this endpoint, if any: a stall, a 429, or a failure status."""
        with self.lock:  # decided first, so a stalled answer cannot consume a later test's script
            stall = self.delay.get(endpoint)
            answer = None
            if self.rate_limit.get(endpoint, 0) > 0:
                self.rate_limit[endpoint] -= 1
                answer = 429, {"code": 429, "message": "Too many requests"}
            elif self.fail.get(endpoint):
                status = self.fail[endpoint]
                messages = {
                    401: "Unauthenticated",
                    403: "You must accept this competition's rules",
                    404: "Not found",
                    400: "Submission limit reached",
                    500: "Internal error",
                }
                answer = status, {"code": status, "message": messages.get(status, "error")}
        if stall:
            self._stopping.wait(stall)
            return 503, {"code": 503, "message": "stalled"}  # the client has given up by now
        return answer

    def handle_api(self, handler: _Handler, service: str, method: str, body: dict) -> None:
        open_call = method == "IntrospectToken" and self.introspect_open
        if not open_call and not self._authorized(handler.headers.get("Authorization")):
            return handler.send_json(401, {"code": 401, "message": "Unauthenticated"})
        scripted = self._steer(method)
        if scripted:
            return handler.send_json(*scripted)
        if method == "IntrospectToken":
            active = body.get("token") in self.valid_tokens
            return handler.send_json(200, {"active": active, "username": USERNAME} if active else {})
        competition = body.get("competitionName")
        if (
            method in ("DownloadDataFiles", "StartSubmissionUpload", "CreateSubmission", "ListSubmissions")
            and competition not in self.competitions
        ):
            return handler.send_json(404, {"code": 404, "message": f"Competition {competition} not found"})
        if method == "DownloadDataFiles":
            return handler.send_redirect(f"http://localhost/storage/{competition}.zip")
        if method == "StartSubmissionUpload":
            token = f"blob-{self._next()}"
            with self.lock:
                self.uploads_expected[token] = body
            return handler.send_json(200, {"token": token, "createUrl": f"http://localhost/upload/{token}"})
        if method == "CreateSubmission":
            token = body.get("blobFileTokens")
            with self.lock:
                if token not in self.uploads:
                    return handler.send_json(400, {"code": 400, "message": "Unknown upload token"})
                ref = 40000 + self._counter
                self._counter += 1
                self.submissions.insert(
                    0,
                    {
                        "ref": ref,
                        "fileName": self.uploads_expected[token].get("fileName"),
                        "description": body.get("submissionDescription", ""),
                        "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                        "totalBytes": len(self.uploads[token]),
                        "polls": 0,
                    },
                )
            return handler.send_json(
                200, {"message": "Successfully submitted to Digit Recognizer", "ref": ref}
            )
        if method == "ListSubmissions":
            listed = []
            with self.lock:
                for sub in self.submissions:
                    sub["polls"] += 1
                    item = {k: v for k, v in sub.items() if k != "polls"}
                    if sub["polls"] > self.pending_polls:
                        if self.score_error:
                            item.update(status="ERROR", errorDescription=self.score_error)
                        else:
                            item.update(status="COMPLETE", publicScore=SCORE)
                    else:
                        item["status"] = "PENDING"
                    listed.append(item)
            return handler.send_json(200, {"submissions": listed})
        return handler.send_json(404, {"code": 404, "message": f"no method {service}/{method}"})

    def handle_storage(self, handler: _Handler) -> None:
        scripted = self._steer("storage")
        if scripted:
            return handler.send_json(*scripted)
        data = self.archive
        handler.send_response(200)
        handler.send_header("Content-Type", "application/zip")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Last-Modified", email.utils.formatdate(time.time() - 3600, usegmt=True))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(data)

    def handle_upload(self, handler: _Handler, token: str, data: bytes) -> None:
        scripted = self._steer("upload")
        if scripted:
            status, _ = scripted
            return handler.send_body(status, b"<Error><Code>AccessDenied</Code></Error>", "application/xml")
        with self.lock:
            if token not in self.uploads_expected:
                return handler.send_body(404, b"no such upload", "text/plain")
            self.uploads[token] = data
        return handler.send_body(200, b"", "text/plain")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # a stalled client cannot hold a thread for longer
    server_fake: FakeKaggle

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    # ---- answers

    def send_body(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (a timeout test)
        self.close_connection = True

    def send_json(self, status: int, payload: dict) -> None:
        headers = {"Retry-After": self.server_fake.retry_after} if status == 429 else None
        self.send_body(status, json.dumps(payload).encode(), "application/json", headers)

    def send_redirect(self, location: str) -> None:
        self.send_body(302, b"", "text/plain", {"Location": location})

    # ---- requests

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _route(self, verb: str) -> None:
        fake = self.server_fake
        url = urlsplit(self.path)
        host = url.hostname or (self.headers.get("Host") or "").split(":")[0]
        body = self._read_body() if verb in ("POST", "PUT") else b""
        parts = url.path.strip("/").split("/")
        record = {
            "verb": verb,
            "host": host,
            "path": url.path,
            "endpoint": "?",
            "auth": (self.headers.get("Authorization") or "").split(" ")[0],
            "body": None,
        }
        if verb == "POST" and len(parts) == 4 and parts[:2] == ["api", "v1"]:
            record["endpoint"] = parts[3]
            try:
                record["body"] = json.loads(body or b"{}")
            except ValueError:
                record["body"] = {}
        elif verb == "GET" and len(parts) == 2 and parts[0] == "storage":
            record["endpoint"] = "storage"
        elif verb == "PUT" and len(parts) == 2 and parts[0] == "upload":
            record["endpoint"] = "upload"
            record["body"] = body
        with fake.lock:
            fake.requests.append(record)
        if record["endpoint"] == "storage":
            return fake.handle_storage(self)
        if record["endpoint"] == "upload":
            return fake.handle_upload(self, parts[1], body)
        if record["endpoint"] != "?":
            return fake.handle_api(self, parts[2], parts[3], record["body"] or {})
        return self.send_json(404, {"code": 404, "message": f"unknown path {url.path}"})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")
