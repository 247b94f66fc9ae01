"""The HTTP plumbing of `make serve`: one-line JSON errors for everything, the request-body
limit, binding a port, and running the app under uvicorn (in a thread for tests and the bench).

    with BackgroundServer(create_app(model)) as server:
        httpx.get(server.url + "/healthz")
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from kit.core.console import log, one_line
from kit.core.errors import KitError

MAX_BODY_BYTES = 1_000_000


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": one_line(message)}, status_code=status, headers=headers)


def validation_message(errors: list[dict]) -> str:
    """Pydantic's list of errors -> one line about the first: 'pixels: got 783 values, need 784'."""
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{where}: {message}{more}" if where else f"{message}{more}"


def add_error_handlers(app: FastAPI) -> None:
    """Every error the app can meet answered as {"error": "<one line>"}: 404 and 405 saying
    where to go, 422 naming the field, and a bug as a 500 that names its type (no traceback)."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        message = str(error.detail)
        if error.status_code == 404 and message == "Not Found":
            message = (
                f"no such path {request.url.path}; the page is at /, the API at /api/predict, /api/model, "
                "/healthz"
            )
        elif error.status_code == 405 and message == "Method Not Allowed":
            allowed = (error.headers or {}).get("Allow", "")
            message = (
                f"{request.method} is not allowed on {request.url.path}; use {allowed or 'another method'}"
            )
        return error_response(error.status_code, message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, error: RequestValidationError):
        return error_response(422, validation_message(list(error.errors())))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):  # a bug: still one line, no traceback
        log(f"error: {request.method} {request.url.path}: {type(error).__name__}: {one_line(error)}")
        return error_response(500, f"internal error ({type(error).__name__}); the server keeps running")


# --------------------------------------------------------------------------- the body limit


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: refuse request bodies over max_bytes with 413, by the declared
    Content-Length and by counting what really arrives (a chunked body declares nothing).

    The refused body is read and thrown away up to DRAIN_BYTES before the 413 is sent: a
    server that answers and closes while the client is still sending makes the client see a
    connection reset instead of the answer. Larger bodies get the connection closed."""

    DRAIN_BYTES = 16 * MAX_BODY_BYTES

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope, receive, send, already: int, more: bool = True) -> None:
        """Read and drop what is left of the body (`more`: the client is still sending), then 413."""
        drained = already
        while more and drained <= self.DRAIN_BYTES:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            drained += len(message.get("body", b""))
            more = message.get("more_body", False)
        too_large = (
            f"request body over {self.max_bytes:,} bytes; send a smaller image (a 280x280 PNG is ~10 kB)"
        )
        await error_response(413, too_large, {"Connection": "close"})(scope, receive, send)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(scope, receive, send, 0)
        received = 0
        more_body = True
        response_started = False

        async def counting_receive():
            nonlocal received, more_body
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                more_body = message.get("more_body", False)
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message):
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                # when the message over the limit was the body's last, nothing more will come:
                # waiting for more would hold the client until it gives up
                await self._refuse(scope, receive, send, received, more=more_body)


# --------------------------------------------------------------------------- running it


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one); KitError when it cannot be had."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=256)
    except socket.gaierror:
        raise KitError(
            f"HOST={host}: not an address of this machine; use 127.0.0.1 (or 0.0.0.0 for every interface)"
        ) from None
    except OSError as error:
        if port and error.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise KitError(
                f"port {port} is in use (another `make serve`?); give another one, e.g. PORT={port + 1}"
            ) from None
        raise KitError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def uvicorn_server(app):
    import uvicorn

    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5
    )
    return uvicorn.Server(config)


class BackgroundServer:
    """The app served by uvicorn in a thread on host:port (0 = a free port), for tests and the bench.

    with BackgroundServer(create_app(model)) as server:
        httpx.get(server.url + "/healthz")
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0) -> None:
        sock = bind(host, port)
        self.port = sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn_server(app)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
