"""What the machine is: CPU, cores, Python, NumPy and every BLAS NumPy uses. Every run records
it (metrics.json, the report), and every bench table starts with it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np


def machine_info() -> dict:
    """CPU model, cores, Python, NumPy, and every BLAS threadpoolctl sees (kernel, threads)."""
    from threadpoolctl import threadpool_info

    from kit.core.blas import THREAD_VARIABLES, usable_cores

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = []
    for pool in threadpool_info():
        if pool.get("user_api") != "blas":
            continue
        owner = (
            "numpy" if "numpy" in pool.get("filepath", "") else Path(pool.get("filepath", "?")).parent.name
        )
        blas.append(
            {
                "library": f"{pool.get('internal_api')} {pool.get('version')}",
                "kernel": pool.get("architecture") or "?",
                "threads": pool.get("num_threads"),
                "threading": pool.get("threading_layer") or "?",
                "used_by": owner,
            }
        )
    settings = {
        name: os.environ[name]
        for name in sorted(os.environ)
        if name in THREAD_VARIABLES or name.startswith("OPENBLAS_")
    }
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas,
        "thread_settings": settings,
        "platform": platform.platform(),
    }


def machine_summary() -> dict:
    """The machine in a few flat fields, recorded with every run (metrics.json, the report)."""
    info = machine_info()
    blas = "; ".join(
        f"{pool['library']} ({pool['kernel']}, {pool['threads']} threads)" for pool in info["blas"]
    )
    return {
        "cpu": info["cpu"],
        "cores": info["usable_cores"],
        "python": info["python"],
        "numpy": info["numpy"],
        "blas": blas or "none seen",
    }


def describe_machine(info: dict) -> list[str]:
    lines = [
        f"- CPU: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable)",
        f"- Python {info['python']}, NumPy {info['numpy']}, {info['platform']}",
    ]
    for pool in info["blas"]:
        lines.append(
            f"- BLAS ({pool['used_by']}): {pool['library']}, kernel {pool['kernel']}, "
            f"{pool['threads']} threads ({pool['threading']})"
        )
    settings = ", ".join(f"{k}={v}" for k, v in info["thread_settings"].items()) or "none"
    lines.append(f"- BLAS/thread environment variables: {settings}")
    return lines


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except (OSError, AttributeError):
        return "n/a"
