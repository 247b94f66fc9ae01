"""What one `kit train` process costs: its peak memory (RSS) and how soon it starts training.

The child is `kit train` itself with one probe that prints the time when the first epoch
starts; the peak RSS comes from the kernel's accounting of that child (os.wait4). Measured first
in the speed part, while the bench is small: Linux starts a forked child's peak RSS at its
parent's size.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIRST_BATCH_PROBE = """
import os, sys, time
started = float(os.environ["KIT_BENCH_T0"])
import kit.run.trainer as train
original = train.Trainer.train_epoch
def probed(self, *args, **kwargs):
    if not getattr(train, "_bench_seen", False):
        train._bench_seen = True
        print(f"KIT_BENCH_FIRST_BATCH {time.time() - started:.4f}", flush=True)
    return original(self, *args, **kwargs)
train.Trainer.train_epoch = probed
from kit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def training_footprint(train_path: Path, preset: str, epochs: int) -> dict:
    """Run `kit train` in a child process: its peak RSS (from the kernel's accounting of that
    child), its wall time, and the seconds from starting it to its first batch. The child is
    `kit train` itself with one probe that prints the time when the first epoch starts."""
    with tempfile.TemporaryDirectory(prefix="kit-bench-") as tmp:
        log_path = Path(tmp) / "train.log"
        command = [
            sys.executable,
            "-c",
            FIRST_BATCH_PROBE,
            "train",
            "--train",
            str(train_path),
            "--preset",
            preset,
            "--epochs",
            str(epochs),
            "--model-dir",
            str(Path(tmp) / "models"),
        ]
        env = dict(os.environ, KIT_BENCH_T0=repr(time.time()))
        started = time.perf_counter()
        with open(log_path, "w") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            if hasattr(os, "wait4"):
                _, status, usage = os.wait4(process.pid, 0)
                process.returncode = os.waitstatus_to_exitcode(status)
                # ru_maxrss is KiB on Linux, bytes on macOS
                peak = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
            else:  # pragma: no cover - no per-child accounting (Windows)
                process.wait()
                peak = float("nan")
        wall = time.perf_counter() - started
        output = log_path.read_text(errors="replace")
    first = next(
        (float(line.split()[1]) for line in output.splitlines() if line.startswith("KIT_BENCH_FIRST_BATCH")),
        float("nan"),
    )
    if process.returncode != 0:
        tail = "\n".join(output.splitlines()[-5:])
        raise RuntimeError(
            f"`kit train` for the memory measurement failed (exit {process.returncode}):\n{tail}"
        )
    return {
        "preset": preset,
        "epochs": epochs,
        "peak_rss_mb": peak,
        "first_batch_seconds": first,
        "wall_seconds": wall,
    }
