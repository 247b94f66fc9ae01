"""`make serve`: a web page to draw a digit on and watch the network read it, and its JSON API.

An ASGI app (FastAPI) under uvicorn. `create_app(model)` builds the app around a loaded Model
(kit.serve.served), so tests and the bench start it on a free loopback port
(kit.serve.http.BackgroundServer); `run_server` is `kit serve`: it loads the model once, binds,
prints the URL and stops cleanly on Ctrl-C.

Routes (all answers JSON except the page; every error is a 4xx with {"error": "<one line>"}):
    GET  /              the page (kit/serve/static/index.html, read once; no request path reaches the disk)
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
import hashlib
import re
import time
from importlib import resources
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool

from kit.core.console import log
from kit.core.mnist import N_PIXELS
from kit.data.preprocess import ImageProblem
from kit.run.model import Model
from kit.serve.http import (
    MAX_BODY_BYTES,
    BodyLimit,
    add_error_handlers,
    bind,
    error_response,
    is_loopback,
    uvicorn_server,
    validation_message,
)
from kit.serve.served import IMAGE_TYPES, ServedModel, data_url_bytes, parse_json


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


EXAMPLES = {
    "pixels": {"value": {"pixels": [0] * N_PIXELS}},
    "image": {"value": {"image": "data:image/png;base64,iVBORw0KGgo..."}},
}
BINARY = {"schema": {"type": "string", "format": "binary"}}
PREDICT_DOCS = {  # what /docs shows for POST /api/predict: the bodies it takes and the errors
    "response_model": Prediction,
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": PredictJSON.model_json_schema(), "examples": EXAMPLES},
                "image/png": BINARY,
                "image/jpeg": BINARY,
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"image": BINARY["schema"]},
                        "required": ["image"],
                    }
                },
            },
        }
    },
    "responses": {
        413: {"description": "body over 1 MB"},
        415: {"description": "unsupported content type"},
        422: {"description": "not an image / bad pixels, one line in `error`"},
    },
}


def create_app(model: Model, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
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
    add_error_handlers(app)

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

    @app.post("/api/predict", **PREDICT_DOCS)
    async def predict(request: Request):
        """Predict the digit in an image (PNG/JPEG body, multipart field `image`, or JSON data URL)
        or in 784 raw pixels (JSON). The image is preprocessed as MNIST was made."""
        try:
            answer = await answer_request(served, request)
        except ImageProblem as problem:
            return error_response(problem.status, str(problem))
        if isinstance(answer, JSONResponse):  # a refusal
            return answer
        return JSONResponse(answer, headers={"Server-Timing": f"predict;dur={answer['ms']}"})

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.state.served = served
    return app


async def answer_request(served: ServedModel, request: Request) -> dict | JSONResponse:
    """POST /api/predict by content type: the answer, or a one-line 4xx; a body that is not an
    image raises ImageProblem. The clock starts once the body has arrived."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media in IMAGE_TYPES:
        data = await request.body()
        return await run_in_threadpool(served.from_image, data, time.perf_counter())
    if media == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get("image") or form.get("file")
        if upload is None or isinstance(upload, str):
            raise ImageProblem('multipart upload without a file field "image"')
        data = await upload.read()
        return await run_in_threadpool(served.from_image, data, time.perf_counter())
    if media != "application/json":
        return error_response(
            415,
            f"Content-Type {media or 'missing'}: send image/png, image/jpeg, "
            "multipart/form-data (field image) or application/json",
        )
    body = parse_json(await request.body())
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
        return await run_in_threadpool(served.from_pixels, fields.pixels, fields.preprocess, started)
    return await run_in_threadpool(served.from_image, data_url_bytes(fields.image), started)


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
        server = uvicorn_server(app)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass
        finally:
            sock.close()
    log("stopped")
