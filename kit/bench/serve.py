"""`make bench PART=serve`: how fast `make serve` answers (bench/serve.md, bench/serve.json).

1. Server-side time of one prediction, preprocessing included (PNG decode, `to_mnist`, the
   forward pass), for the default preset's MLP and the best preset's CNN (its members): the same
   function the server runs for a POST /api/predict, called in-process, median of many calls.
   The networks are untrained (random weights of the preset's shapes): the time does not
   depend on the weights, and the bench needs no data and no trained run.
2. Load on loopback: `kit serve` in its own process with the default MLP, 32 client threads
   each sending 50 PNG predictions over a kept-alive connection (1,600 requests, then it stops):
   requests per second, p50/p99 latency as the client sees it, errors.

The input is a 280x280 RGBA PNG of a drawn 7, what the page sends. Only the
standard library's http.client is used on the client side.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from kit.bench.measure import publish
from kit.config import describe, make_config
from kit.core.console import log
from kit.core.machine import describe_machine, load_average, machine_info
from kit.run.model import Model, build_network

TARGETS_MS = {"default": 5.0, "best": 50.0}  # median server-side ms per prediction: the targets
CLIENTS, REQUESTS_PER_CLIENT = 32, 50
CANVAS = 280  # the page sends its drawing at this size


def drawn_digit_png(side: int = CANVAS) -> bytes:
    """A 7 drawn with a round pen, dark on white, as the page sends it."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (side, side), 255)
    pen = ImageDraw.Draw(image)
    points = [(0.30, 0.25), (0.70, 0.24), (0.55, 0.50), (0.42, 0.80)]
    width = int(0.075 * side)
    pen.line([(x * side, y * side) for x, y in points], fill=0, width=width, joint="curve")
    buffer = io.BytesIO()
    image.convert("RGBA").save(buffer, format="PNG")  # a browser canvas is RGBA
    return buffer.getvalue()


def untrained_model(preset: str) -> Model:
    config = make_config(preset)
    rng = np.random.default_rng(0)
    members = [build_network(config, rng) for _ in range(config.ensemble)]
    return Model(config, members, {"run_id": f"untrained-{preset}", "preset": preset, "val_accuracy": None})


def prediction_times(
    models: dict[str, Model], image: bytes, seconds: float = 6.0, max_rounds: int = 500
) -> dict:
    """Milliseconds per server-side prediction (decode + preprocess + forward) of each model, and
    its parts. The models take turns call by call, so both see the same machine load."""
    from kit.data.preprocess import decode_image, to_mnist
    from kit.data.split import to_float
    from kit.serve.served import ServedModel

    served = {name: ServedModel(model) for name, model in models.items()}
    times = {name: {"total": [], "decode": [], "preprocess": [], "forward": []} for name in models}
    deadline = time.perf_counter() + seconds
    rounds = 0
    while rounds < max_rounds and (time.perf_counter() < deadline or rounds < 20):
        rounds += 1
        for name, model in models.items():
            t0 = time.perf_counter()
            gray = decode_image(image)
            t1 = time.perf_counter()
            pixels = to_mnist(gray)
            t2 = time.perf_counter()
            model.predict_proba(to_float(pixels.reshape(1, -1)))
            t3 = time.perf_counter()
            served[name].from_image(image, t3)  # exactly what POST /api/predict runs
            t4 = time.perf_counter()
            for part, seconds_taken in (
                ("decode", t1 - t0),
                ("preprocess", t2 - t1),
                ("forward", t3 - t2),
                ("total", t4 - t3),
            ):
                times[name][part].append(seconds_taken * 1000)
    med = statistics.median
    return {
        name: {
            "n": len(t["total"]),
            "median_ms": med(t["total"]),
            "min_ms": min(t["total"]),
            "max_ms": max(t["total"]),
            "decode_ms": med(t["decode"]),
            "preprocess_ms": med(t["preprocess"]),
            "forward_ms": med(t["forward"]),
        }
        for name, t in times.items()
    }


def start_server(model_file: Path) -> tuple[subprocess.Popen, str]:
    """`kit serve` on a free loopback port in its own process; returns it and its URL."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "kit", "serve", "--model", str(model_file), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 60
    seen = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen += line
        if "serving at " in line:
            url = line.split("serving at ", 1)[1].split()[0]
            threading.Thread(target=process.stdout.read, daemon=True).start()  # keep the pipe drained
            return process, url
    process.kill()
    raise RuntimeError(f"kit serve did not start:\n{seen}")


def load_test(url: str, image: bytes, clients: int = CLIENTS, per_client: int = REQUESTS_PER_CLIENT) -> dict:
    """`clients` threads, each `per_client` POSTs of the PNG on one kept-alive connection."""
    host_port = url.split("//", 1)[1].rstrip("/")
    host, port = host_port.rsplit(":", 1)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    gate = threading.Barrier(clients + 1)

    def client() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        mine, bad = [], []
        gate.wait()
        for _ in range(per_client):
            started = time.perf_counter()
            try:
                connection.request("POST", "/api/predict", body=image, headers={"Content-Type": "image/png"})
                response = connection.getresponse()
                body = response.read()
                if response.status != 200 or json.loads(body).get("label") is None:
                    bad.append(f"HTTP {response.status}")
            except (OSError, http.client.HTTPException, ValueError) as error:
                bad.append(type(error).__name__)
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=30)
            mine.append((time.perf_counter() - started) * 1000)
        connection.close()
        with lock:
            latencies.extend(mine)
            errors.extend(bad)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "clients": clients,
        "requests_per_client": per_client,
        "requests": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "seconds": wall,
        "requests_per_second": len(latencies) / wall,
        "p50_ms": ordered[len(ordered) // 2],
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max_ms": ordered[-1],
    }


def serve_bench(clients: int = CLIENTS, per_client: int = REQUESTS_PER_CLIENT, seconds: float = 6.0) -> dict:
    """Both measurements; returns what bench/serve.json holds."""
    from kit.core.blas import limit_blas

    image = drawn_digit_png()
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "load_before": load_average(),
        "image": f"{CANVAS}x{CANVAS} PNG, {len(image)} bytes",
        "predict": {},
    }
    with limit_blas(1):  # as `kit serve` runs
        log("serve bench: server-side prediction time, default and best presets, call by call in turn")
        result["predict"] = prediction_times(
            {preset: untrained_model(preset) for preset in ("default", "best")}, image, seconds=seconds
        )
    with tempfile.TemporaryDirectory(prefix="kit-serve-bench-") as folder:
        model_file = Path(folder) / "model.npz"
        untrained_model("default").save(model_file)
        process, url = start_server(model_file)
        try:
            log(f"serve bench: {clients} clients x {per_client} requests against {url}")
            result["load"] = load_test(url, image, clients, per_client)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
    result["load_after"] = load_average()
    return result


def serve_markdown(result: dict) -> str:
    lines = [
        "# `make serve` speed",
        "",
        f"Measured {result['date']} by `make bench PART=serve`; input: "
        f"{result['image']} (a drawn 7, as the page sends it). Untrained networks of each preset's "
        "shape (the time does "
        "not depend on the weights); the two take turns call by call.",
        "",
        *describe_machine(result["machine"]),
        f"- load average before / after: {result['load_before']} / {result['load_after']}",
        "- predictions with 1 BLAS thread, as `kit serve` runs them (one image per call)",
        "",
        "| server-side prediction (decode + preprocess + forward) | median | min–max | parts: decode / "
        "preprocess / forward | target |",
        "|---|---|---|---|---|",
    ]
    for preset, times in result["predict"].items():
        what = f"{preset} preset: {describe(make_config(preset), network_only=True)}"
        lines.append(
            f"| {what}, n={times['n']} | {times['median_ms']:.2f} ms | {times['min_ms']:.2f}–"
            f"{times['max_ms']:.2f} ms | {times['decode_ms']:.2f} / {times['preprocess_ms']:.2f} / "
            f"{times['forward_ms']:.2f} ms | < {TARGETS_MS[preset]:.0f} ms |"
        )
    load = result["load"]
    lines += [
        "",
        f"Load: `kit serve` (default MLP) in its own process, {load['clients']} concurrent clients × "
        f"{load['requests_per_client']} requests on loopback (clients on the same machine):",
        "",
        "| requests | errors | wall time | requests/s | p50 | p99 | max |",
        "|---|---|---|---|---|---|---|",
        f"| {load['requests']} | {load['errors']} | {load['seconds']:.1f} s | "
        f"{load['requests_per_second']:.0f} | "
        f"{load['p50_ms']:.1f} ms | {load['p99_ms']:.1f} ms | {load['max_ms']:.1f} ms |",
    ]
    if load["error_kinds"]:
        lines.append(f"\nErrors seen: {', '.join(load['error_kinds'])}")
    return "\n".join(lines) + "\n"


def run_serve_bench(
    out: Path, clients: int = CLIENTS, per_client: int = REQUESTS_PER_CLIENT, seconds: float = 6.0
) -> dict:
    """The serve part: measure, publish."""
    result = serve_bench(clients, per_client, seconds)
    publish(out, "serve", result, serve_markdown(result))
    return result
