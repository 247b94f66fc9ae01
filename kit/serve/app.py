"""`make serve`: a web page to draw a digit on and watch the network read it, and its JSON API.

An ASGI app (FastAPI) under uvicorn. `create_app(model)` builds the app around a loaded Model,
so tests and the bench start it on a free loopback port (`BackgroundServer`); `run_server` is
`kit serve`: it loads the model once, binds, prints the URL and stops cleanly on Ctrl-C.

Routes (all answers JSON except the page; every error is a 4xx with {"error": "<one line>"}):
    GET  /              the page (kit/static/index.html, read once; no request path reaches the disk)
    POST /api/predict   an image (raw image/png or image/jpeg body, multipart field "image", or
                        JSON {"image": "data:image/png;base64,..."}) or JSON {"pixels": [784 x 0..255]}
                        -> {"blank", "label", "probabilities", "pixels", "ms"}
    GET  /api/model     run id, preset, validation accuracy, architecture
    GET  /healthz       {"status": "ok"}
    GET  /docs          FastAPI's interactive API documentation (its Swagger UI comes from a CDN)
Request bodies over 1 MB are refused with 413 while they are read, whatever Content-Length says.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import re
import socket
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from kit.core.console import log
from kit.core.errors import KitError
from kit.core.mnist import N_PIXELS
from kit.data.preprocess import ImageProblem, decode_image, to_mnist
from kit.data.split import to_float
from kit.run.model import Model

MAX_BODY_BYTES = 1_000_000
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")
BLANK_MESSAGE = "draw a digit"
DECODE_SLOTS = 4


# --------------------------------------------------------------------------- the model


class ServedModel:
    """A loaded Model behind a lock (layers keep per-call state, so one forward pass at a time)
    and the functions that turn requests into answers."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.lock = threading.Lock()
        # at most this many images decoded at once: a 4096x4096 PNG takes 67 MB while it is decoded,
        # and two cores gain nothing from more
        self.decoding = threading.BoundedSemaphore(DECODE_SLOTS)
        self.predict(np.zeros(N_PIXELS, dtype=np.uint8))  # warm up: the first call allocates

    def info(self) -> dict:
        from kit.config import describe

        meta, config = self.model.meta, self.model.config
        return {
            "run_id": meta.get("run_id"),
            "preset": meta.get("preset", config.preset),
            "val_accuracy": meta.get("val_accuracy"),
            "arch": config.arch,
            "members": len(self.model.members),
            "description": describe(config),
        }

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """(784,) uint8 -> (10,) probabilities."""
        x = to_float(pixels.reshape(1, N_PIXELS))
        with self.lock:
            return self.model.predict_proba(x)[0]

    def answer(self, pixels: np.ndarray | None, started: float) -> dict:
        """The JSON answer for the 28x28 image the network sees (None: nothing drawn)."""
        if pixels is None:
            return {
                "blank": True,
                "message": BLANK_MESSAGE,
                "label": None,
                "probabilities": None,
                "pixels": None,
                "ms": _ms_since(started),
            }
        probabilities = self.predict(pixels.ravel())
        return {
            "blank": False,
            "label": int(probabilities.argmax()),
            "probabilities": [round(float(p), 6) for p in probabilities],
            "pixels": pixels.ravel().tolist(),
            "ms": _ms_since(started),
        }

    def from_image(self, data: bytes, started: float) -> dict:
        with self.decoding:
            pixels = to_mnist(decode_image(data))
        return self.answer(pixels, started)

    def from_pixels(self, values: list[float], preprocess: bool, started: float) -> dict:
        pixels = np.rint(np.asarray(values, dtype=np.float64)).astype(np.uint8)
        square = pixels.reshape(28, 28)
        if preprocess or to_mnist(square) is None:  # the blank test is the same for every input
            return self.answer(to_mnist(square), started)
        return self.answer(square, started)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


# --------------------------------------------------------------------------- errors


class BodyTooLarge(Exception):
    pass


def one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": one_line(message)}, status_code=status, headers=headers)


def validation_message(errors: list[dict]) -> str:
    """Pydantic's list of errors -> one line about the first: 'pixels: got 783 values, need 784'."""
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{where}: {message}{more}" if where else f"{message}{more}"


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


# --------------------------------------------------------------------------- the app


class PredictJSON(BaseModel):
    """A JSON request: exactly one of `image` or `pixels`."""

    model_config = ConfigDict(extra="forbid")
    image: str | None = Field(None, description="a data URL, e.g. data:image/png;base64,iVBOR...")
    pixels: list[Annotated[float, Strict()]] | None = Field(
        None, description="784 values 0..255, white ink on black, row by row (a train.csv row)"
    )
    preprocess: bool = Field(False, description="pixels only: centre and scale them as MNIST did first")

    @field_validator("pixels")
    @classmethod
    def _pixels(cls, values):
        if values is None:
            return values
        if len(values) != N_PIXELS:
            raise ValueError(f"got {len(values)} values, need {N_PIXELS} (28x28, row by row as in train.csv)")
        bad = next((i for i, v in enumerate(values) if not 0 <= v <= 255), None)
        if bad is not None:
            raise ValueError(f"value {values[bad]:g} at index {bad} is outside 0..255")
        return values


class Prediction(BaseModel):
    blank: bool = Field(description="true when nothing (or only a dot) was drawn; then no guess")
    label: int | None = Field(description="the predicted digit 0..9")
    probabilities: list[float] | None = Field(description="10 probabilities, for digits 0..9")
    pixels: list[int] | None = Field(description="the 28x28 image the network saw, 784 values 0..255")
    ms: float = Field(description="server-side milliseconds: decoding, preprocessing, prediction")
    message: str | None = None


def page_html() -> str:
    return resources.files("kit.serve").joinpath("static/index.html").read_text(encoding="utf-8")


def content_security_policy(html: str) -> str:
    """Only the page's own inline script and style (by hash) and requests to this server."""

    def hashes(tag: str) -> str:
        found = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        return " ".join(
            f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in found
        )

    return (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def create_app(model: Model, max_body_bytes: int = MAX_BODY_BYTES):
    """The FastAPI app serving `model` (loaded once, shared by all requests)."""
    served = ServedModel(model)
    html = page_html()
    page_headers = {
        "Content-Security-Policy": content_security_policy(html),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }

    app = FastAPI(
        title="Digit Recognizer kit",
        redoc_url=None,
        description="Draw a digit at `/`; predictions from a NumPy network trained with the kit.",
    )

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

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(html, headers=page_headers)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/api/model")
    async def model_info() -> dict:
        """The served run: id, preset, validation accuracy, architecture."""
        return served.info()

    examples = {
        "pixels": {"value": {"pixels": [0] * N_PIXELS}},
        "image": {"value": {"image": "data:image/png;base64,iVBORw0KGgo..."}},
    }
    request_body = {
        "required": True,
        "content": {
            "application/json": {"schema": PredictJSON.model_json_schema(), "examples": examples},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}},
                    "required": ["image"],
                }
            },
        },
    }

    @app.post(
        "/api/predict",
        response_model=Prediction,
        openapi_extra={"requestBody": request_body},
        responses={
            413: {"description": "body over 1 MB"},
            415: {"description": "unsupported content type"},
            422: {"description": "not an image / bad pixels, one line in `error`"},
        },
    )
    async def predict(request: Request):
        """Predict the digit in an image (PNG/JPEG body, multipart field `image`, or JSON data URL)
        or in 784 raw pixels (JSON). The image is preprocessed as MNIST was made."""
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if media in IMAGE_TYPES:
                data = await request.body()
                started = time.perf_counter()
                answer = await run_in_threadpool(served.from_image, data, started)
            elif media == "multipart/form-data":
                data = await _uploaded_file(request)
                started = time.perf_counter()
                answer = await run_in_threadpool(served.from_image, data, started)
            elif media == "application/json":
                body = _parse_json(await request.body())
                started = time.perf_counter()
                try:
                    fields = PredictJSON.model_validate(body)
                except ValidationError as error:
                    return error_response(422, validation_message(error.errors()))
                if fields.image is None and fields.pixels is None:
                    return error_response(422, 'give "image" (a data URL) or "pixels" (784 values 0..255)')
                if fields.image is not None and fields.pixels is not None:
                    return error_response(422, 'give "image" or "pixels", not both')
                if fields.pixels is not None:
                    answer = await run_in_threadpool(
                        served.from_pixels, fields.pixels, fields.preprocess, started
                    )
                else:
                    data = _data_url_bytes(fields.image)
                    answer = await run_in_threadpool(served.from_image, data, started)
            else:
                return error_response(
                    415,
                    f"Content-Type {media or 'missing'}: send image/png, image/jpeg, "
                    "multipart/form-data (field image) or application/json",
                )
        except ImageProblem as problem:
            return error_response(problem.status, str(problem))
        headers = {"Server-Timing": f"predict;dur={answer['ms']}"}
        return JSONResponse(answer, headers=headers)

    async def _uploaded_file(request: Request) -> bytes:
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get("image") or form.get("file")
        if upload is None or isinstance(upload, str):
            raise ImageProblem('multipart upload without a file field "image"')
        return await upload.read()

    def _parse_json(body: bytes) -> Any:
        def no_constants(name):
            raise ValueError(f"{name} is not a number JSON allows")

        try:
            return json.loads(body, parse_constant=no_constants)
        except RecursionError:
            raise ImageProblem("malformed JSON: nested too deeply", status=400) from None
        except (UnicodeDecodeError, ValueError) as error:
            raise ImageProblem(f"malformed JSON: {one_line(error)}", status=400) from None

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.state.served = served
    return app


def _data_url_bytes(url: str) -> bytes:
    """'data:image/png;base64,....' -> the image bytes (ImageProblem 415/422 otherwise)."""
    match = re.match(r"data:([\w.+-]+/[\w.+-]+)?((?:;[\w=.+-]+)*),", url[:200])
    if not match:
        raise ImageProblem('image: not a data URL; give "data:image/png;base64,..."')
    media = (match.group(1) or "text/plain").lower()
    if media not in IMAGE_TYPES:
        raise ImageProblem(f"image: a data URL of type {media}; send a PNG or JPEG image", status=415)
    if ";base64" not in match.group(2):
        raise ImageProblem("image: the data URL must be base64-encoded (data:image/png;base64,...)")
    try:
        return base64.b64decode(url[match.end() :], validate=True)
    except (binascii.Error, ValueError):
        raise ImageProblem("image: the data URL's base64 is corrupt") from None


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


def _uvicorn_server(app):
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
        self.server = _uvicorn_server(app)
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


def run_server(model_path: str | Path = "models", host: str = "127.0.0.1", port: int = 8000) -> None:
    """`kit serve`: load the model (one line and no server when it fails), serve until Ctrl-C."""
    from kit.core.blas import limit_blas
    from kit.run.folders import resolve_model

    model_file = resolve_model(model_path, demo_fallback=True)
    model = Model.load(model_file)
    with limit_blas(1):  # one image per call: more BLAS threads only fight the request threads
        app = create_app(model)
        sock = bind(host, port)
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{sock.getsockname()[1]}/"
        meta = model.meta
        accuracy = meta.get("val_accuracy")
        log(
            f"model {model_file} (run {meta.get('run_id', '?')}, preset "
            f"{meta.get('preset', model.config.preset)}"
            + (f", validation accuracy {accuracy:.4f})" if accuracy is not None else ")")
        )
        if not is_loopback(host):
            log(
                f"warning: HOST={host} serves every machine that can reach this one; there is no "
                "authentication"
            )
        log(f"serving at {url}  (open it in a browser; Ctrl-C stops)")
        server = _uvicorn_server(app)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass
        finally:
            sock.close()
    log("stopped")
