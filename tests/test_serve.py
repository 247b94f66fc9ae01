"""kit/serve.py through real HTTP: the app under uvicorn on a free 127.0.0.1 port, a small real
model trained on the bundled sample. Good requests are answered with the model's own
prediction; every bad one gets a 4xx and a one-line JSON error, never a 500, and the server
keeps predicting. `kit serve` itself: URL printed, Ctrl-C, no model, a broken model file."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from kit.data.split import to_float
from kit.serve.app import create_app
from kit.serve.http import BackgroundServer
from served_model import drawn_png, png

pytestmark = pytest.mark.slow  # a server per module, subprocesses
ROOT = Path(__file__).resolve().parent.parent
IMAGE = {"Content-Type": "image/png"}


@pytest.fixture(scope="module")
def server(sample_model):
    with BackgroundServer(create_app(sample_model.model)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def digits(sample_model):
    """Five validation rows and the model's predictions on them as they are, one row at a time
    as the server predicts (a batch may round differently and flip a near tie)."""
    rows = sample_model.x_val[:5]
    return rows, np.array([sample_model.model.predict(to_float(row[None]))[0] for row in rows])


def check_prediction(response: httpx.Response, expected_label: int | None = None) -> dict:
    """A well-formed answer whose label is the argmax of its probabilities (and expected_label)."""
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["blank"] is False
    assert len(answer["probabilities"]) == 10 and abs(sum(answer["probabilities"]) - 1) < 1e-3
    assert int(np.argmax(answer["probabilities"])) == answer["label"]
    if expected_label is not None:
        assert answer["label"] == expected_label
    assert len(answer["pixels"]) == 784 and 0 <= min(answer["pixels"]) and 200 < max(answer["pixels"]) <= 255
    assert re.fullmatch(r"predict;dur=[\d.]+", response.headers["server-timing"])
    return answer


def test_health_model_and_page(client, sample_model):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/api/model").json()
    assert info["run_id"] == sample_model.run_dir.name and info["preset"] == "default"
    assert info["val_accuracy"] == pytest.approx(sample_model.model.meta["val_accuracy"])
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<canvas" in page.text and "api/predict" in page.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)  # no CDN: works offline
    assert "script-src 'sha256-" in page.headers["content-security-policy"]
    assert client.get("/openapi.json").json()["paths"]["/api/predict"]["post"]


def test_every_input_form_gives_the_models_prediction(client, digits, sample_model):
    rows, labels = digits
    agree = 0
    for row, label in zip(rows, labels):
        image = drawn_png(row)
        answer = check_prediction(
            client.post("/api/predict", content=image, headers={"Content-Type": "image/png"})
        )
        # the answer is the model's on the 28x28 image the server says the network saw
        seen = np.array(answer["pixels"], dtype=np.uint8).reshape(1, 784)
        assert answer["label"] == sample_model.model.predict(to_float(seen))[0]
        agree += answer["label"] == label
        # the same image as a multipart upload and as a data URL: the same answer
        upload = check_prediction(
            client.post("/api/predict", files={"image": ("digit.png", image, "image/png")})
        )
        data_url = "data:image/png;base64," + base64.b64encode(image).decode()
        in_json = check_prediction(client.post("/api/predict", json={"image": data_url}))
        for other in (upload, in_json):
            assert (other["label"], other["pixels"], other["probabilities"]) == (
                answer["label"],
                answer["pixels"],
                answer["probabilities"],
            )
        raw = check_prediction(client.post("/api/predict", json={"pixels": row.tolist()}), label)
        assert raw["pixels"] == row.tolist()  # raw pixels reach the network as they are
    assert agree >= 4  # drawn x7 off-centre, read as the original row


def test_jpeg_and_dark_background_images(client, digits):
    rows, _ = digits
    light = drawn_png(rows[0], scale=5, top=130, left=10)
    expected = check_prediction(client.post("/api/predict", content=light, headers=IMAGE))
    dark = png(255 - np.asarray(Image.open(io.BytesIO(light))))
    same = check_prediction(client.post("/api/predict", content=dark, headers=IMAGE))
    assert same["pixels"] == expected["pixels"] and same["label"] == expected["label"]
    buffer = io.BytesIO()
    Image.open(io.BytesIO(light)).convert("RGB").save(buffer, format="JPEG", quality=90)
    jpeg = check_prediction(
        client.post("/api/predict", content=buffer.getvalue(), headers={"Content-Type": "image/jpeg"})
    )
    assert jpeg["label"] == expected["label"]


def test_a_blank_canvas_gets_draw_a_digit_and_no_guess(client):
    white = png(np.full((280, 280), 255, dtype=np.uint8))
    answer = client.post("/api/predict", content=white, headers={"Content-Type": "image/png"}).json()
    assert answer["blank"] is True and answer["message"] == "draw a digit"
    assert answer["label"] is None and answer["probabilities"] is None
    assert client.post("/api/predict", json={"pixels": [0] * 784}).json()["blank"] is True


def huge_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (10_000, 10_000), 255).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 1_000_000  # so the size check, not the body limit, refuses it
    return buffer.getvalue()


def truncated_png() -> bytes:
    return drawn_png(np.full(784, 200, dtype=np.uint8))[:300]


def chunks(total: int, size: int = 64 * 1024):
    """A body with no Content-Length (chunked): the server has to count."""
    for start in range(0, total, size):
        yield b"\x89PNG" + b"0" * (min(size, total - start) - 4)


BAD_REQUESTS = [
    # (id, method, path, request keyword arguments, status, words in the message)
    (
        "not an image",
        "POST",
        "/api/predict",
        dict(content=b"GIF? no, just text", headers=IMAGE),
        422,
        "not an image",
    ),
    ("empty body", "POST", "/api/predict", dict(content=b"", headers=IMAGE), 422, "not an image"),
    (
        "truncated PNG",
        "POST",
        "/api/predict",
        dict(content=truncated_png, headers=IMAGE),
        422,
        "could not decode",
    ),
    (
        "1x1 image",
        "POST",
        "/api/predict",
        dict(content=lambda: png(np.zeros((1, 1), np.uint8)), headers=IMAGE),
        422,
        "1x1 pixels",
    ),
    ("10000x10000 image", "POST", "/api/predict", dict(content=huge_png, headers=IMAGE), 422, "10000x10000"),
    (
        "body over 1 MB",
        "POST",
        "/api/predict",
        dict(content=b"\x89PNG" + b"0" * 1_500_000, headers=IMAGE),
        413,
        "over 1,000,000 bytes",
    ),
    (
        "chunked body over 1 MB",
        "POST",
        "/api/predict",
        dict(content=lambda: chunks(1_200_000), headers=IMAGE),
        413,
        "over 1,000,000 bytes",
    ),
    (
        "text/plain",
        "POST",
        "/api/predict",
        dict(content=b"7", headers={"Content-Type": "text/plain"}),
        415,
        "Content-Type text/plain",
    ),
    ("no content type", "POST", "/api/predict", dict(content=b"7"), 415, "Content-Type missing"),
    ("783 pixels", "POST", "/api/predict", dict(json={"pixels": [0] * 783}), 422, "got 783 values, need 784"),
    (
        "pixel 256",
        "POST",
        "/api/predict",
        dict(json={"pixels": [0] * 500 + [256] + [0] * 283}),
        422,
        "value 256 at index 500 is outside 0..255",
    ),
    ("pixel -1", "POST", "/api/predict", dict(json={"pixels": [-1] + [0] * 783}), 422, "outside 0..255"),
    ("pixels as text", "POST", "/api/predict", dict(json={"pixels": ["0"] * 784}), 422, "pixels.0"),
    ("pixels not a list", "POST", "/api/predict", dict(json={"pixels": 7}), 422, "pixels"),
    (
        "NaN pixel",
        "POST",
        "/api/predict",
        dict(content=b'{"pixels": [NaN]}', headers={"Content-Type": "application/json"}),
        400,
        "malformed JSON",
    ),
    (
        "malformed JSON",
        "POST",
        "/api/predict",
        dict(content=b'{"pixels": [1, 2', headers={"Content-Type": "application/json"}),
        400,
        "malformed JSON",
    ),
    (
        "JSON nested too deeply",
        "POST",
        "/api/predict",
        dict(content=b"[" * 200_000 + b"]" * 200_000, headers={"Content-Type": "application/json"}),
        400,
        "malformed JSON",
    ),
    (
        "JSON not UTF-8",
        "POST",
        "/api/predict",
        dict(content=b"\xff\xfe{", headers={"Content-Type": "application/json"}),
        400,
        "malformed JSON",
    ),
    ("JSON without fields", "POST", "/api/predict", dict(json={}), 422, 'give "image"'),
    ("JSON a list", "POST", "/api/predict", dict(json=[1, 2, 3]), 422, "valid dictionary"),
    ("unknown JSON field", "POST", "/api/predict", dict(json={"pixles": [0] * 784}), 422, "pixles"),
    (
        "both image and pixels",
        "POST",
        "/api/predict",
        dict(json={"image": "data:image/png;base64,AA==", "pixels": [0] * 784}),
        422,
        "not both",
    ),
    (
        "data URL not an image",
        "POST",
        "/api/predict",
        dict(json={"image": "data:text/html;base64,PGgxPg=="}),
        415,
        "data URL of type text/html",
    ),
    (
        "data URL bad base64",
        "POST",
        "/api/predict",
        dict(json={"image": "data:image/png;base64,@@@"}),
        422,
        "base64",
    ),
    ("not a data URL", "POST", "/api/predict", dict(json={"image": "/etc/passwd"}), 422, "not a data URL"),
    (
        "multipart without file",
        "POST",
        "/api/predict",
        dict(data={"image": "7"}, files={"x": ("a", b"b")}),
        422,
        'file field "image"',
    ),
    (
        "multipart not an image",
        "POST",
        "/api/predict",
        dict(files={"image": ("a.png", b"text", "image/png")}),
        422,
        "not an image",
    ),
    ("unknown path", "GET", "/api/nothing", {}, 404, "no such path /api/nothing"),
    ("path out of the app", "GET", "/../pyproject.toml", {}, 404, "no such path"),
    ("encoded dots", "GET", "/%2e%2e/kit/serve.py", {}, 404, "no such path"),
    ("static file guess", "GET", "/static/index.html", {}, 404, "no such path"),
    ("GET on the POST route", "GET", "/api/predict", {}, 405, "GET is not allowed on /api/predict; use POST"),
    ("POST on a GET route", "POST", "/healthz", dict(json={}), 405, "POST is not allowed on /healthz"),
]


@pytest.mark.parametrize(
    "method, path, kwargs, status, words",
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_input_gets_a_4xx_with_one_line(client, method, path, kwargs, status, words):
    kwargs = {k: (v() if callable(v) else v) for k, v in kwargs.items()}
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    assert "\n" not in body["error"] and "Traceback" not in body["error"] and len(body["error"]) <= 300
    assert words in body["error"]


def test_the_server_still_predicts_after_a_burst_of_bad_input(server, digits):
    rows, labels = digits
    with httpx.Client(base_url=server.url, timeout=30) as http:  # a fresh connection pool
        wrong = []
        for name, method, path, kwargs in [case[:4] for case in BAD_REQUESTS] * 2:
            kwargs = {k: (v() if callable(v) else v) for k, v in kwargs.items()}
            response = http.request(method, path, **kwargs)
            if not 400 <= response.status_code < 500:
                wrong.append((name, response.status_code, response.text[:200]))
        assert not wrong
        assert http.get("/healthz").json() == {"status": "ok"}
        answer = check_prediction(http.post("/api/predict", json={"pixels": rows[2].tolist()}), labels[2])
        assert answer == check_prediction(http.post("/api/predict", json={"pixels": rows[2].tolist()})) | {
            "ms": answer["ms"]
        }


def test_a_body_whose_last_part_is_over_the_limit_gets_its_413_at_once():
    """The body limit as plain ASGI: the one message that crosses the limit is also the body's
    last, so nothing more will arrive; the 413 must go out without waiting for more (uvicorn's
    receive() would then block until the client gave up, which a chunked upload hit at random)."""
    import asyncio

    from kit.serve.http import BodyLimit

    async def app(scope, receive, send):
        while (await receive()).get("more_body"):
            pass

    messages = [{"type": "http.request", "body": b"x" * 2000, "more_body": False}]
    sent = []

    async def receive():
        if not messages:
            await asyncio.sleep(3600)  # what a real server does when no more body comes
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/predict", "headers": []}
    asyncio.run(asyncio.wait_for(BodyLimit(app, max_bytes=1000)(scope, receive, send), timeout=5))
    assert sent[0]["status"] == 413 and b"over 1,000 bytes" in sent[1]["body"]


# --------------------------------------------------------------------------- `kit serve`


def kit_serve(*args: str, cwd: Path = ROOT) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "kit", "serve", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(process: subprocess.Popen, pattern: str, timeout: float = 60) -> tuple[str, re.Match]:
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen += line
        match = re.search(pattern, seen)
        if match:
            return seen, match
    process.kill()
    raise AssertionError(f"no {pattern!r} in the output:\n{seen}")


def test_kit_serve_prints_the_url_serves_and_stops_on_ctrl_c(sample_model, digits):
    rows, labels = digits
    process = kit_serve("--model", str(sample_model.run_dir), "--port", "0")
    try:
        shown, match = read_until(process, r"serving at (http://127\.0\.0\.1:\d+/)")
        assert sample_model.run_dir.name in shown and "warning" not in shown
        url = match.group(1)
        assert httpx.get(url + "healthz", timeout=10).json() == {"status": "ok"}
        check_prediction(
            httpx.post(url + "api/predict", json={"pixels": rows[3].tolist()}, timeout=30), labels[3]
        )
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, rest
    assert "stopped" in rest and "Traceback" not in rest


def test_kit_serve_warns_when_it_listens_beyond_this_machine(sample_model):
    process = kit_serve("--model", str(sample_model.run_dir), "--host", "0.0.0.0", "--port", "0")
    try:
        shown, _ = read_until(process, r"serving at http://0\.0\.0\.0:\d+/")
        assert "warning: HOST=0.0.0.0" in shown and "no authentication" in shown
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    finally:
        process.kill()


@pytest.mark.parametrize(
    "setup, words",
    [
        ("no runs", "run `make demo`"),
        ("not a model", "not a model file this kit can read"),
        ("missing file", "no trained model there"),
    ],
)
def test_kit_serve_says_in_one_line_what_is_missing(tmp_path, setup, words):
    args = []
    if setup == "not a model":
        (tmp_path / "model.npz").write_bytes(b"PK\x03\x04 this is no zip")
        args = ["--model", str(tmp_path / "model.npz")]
    elif setup == "missing file":
        args = ["--model", str(tmp_path / "nowhere" / "model.npz")]
    process = kit_serve(*args, "--port", "0", cwd=tmp_path)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], out
    assert "serving" not in out


def test_serve_bench_measures_and_writes_its_tables(tmp_path):
    from kit.bench.serve import run_serve_bench

    result = run_serve_bench(tmp_path, clients=4, per_client=5, seconds=0.2)
    for preset in ("default", "best"):
        times = result["predict"][preset]
        assert times["n"] >= 20 and 0 < times["min_ms"] <= times["median_ms"] <= times["max_ms"]
    load = result["load"]
    assert load["requests"] == 20 and load["errors"] == 0 and load["p50_ms"] <= load["p99_ms"]
    text = (tmp_path / "serve.md").read_text()
    assert "4 concurrent clients × 5 requests" in text
    assert json.loads((tmp_path / "serve.json").read_text())["load"]["requests"] == 20
