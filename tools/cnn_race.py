"""The kit's CNN epoch against PyTorch's on the same network, batch and rows, interleaved
(issue 12). PyTorch runs in another virtual environment (tools/torch_peer.py), never in the kit's:

    /tmp/torchvenv/bin/pip install torch==2.13.0 numpy       # once, outside the repository
    .venv/bin/python tools/cnn_race.py --torch-python /tmp/torchvenv/bin/python --rows 6400 --rounds 3

Each round times the kit (bench.time_epochs: the median of --epochs epochs after a warm-up,
no augmentation, and the GEMM floor of those epochs) and then PyTorch (the same count of epochs
after a warm-up), and prints both and their ratio; the summary line gives the median ratio.
--record writes the result to bench/cnn_peer.json, which `make bench` quotes beside its own
CNN row (so its floor ratio, measured again on any machine, sits next to the PyTorch ratio of
the day and machine it was recorded on).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kit.bench.speed import PEER_RECORD, time_epochs  # noqa: E402
from kit.config import make_config  # noqa: E402
from kit.core.machine import machine_summary  # noqa: E402
from kit.data.load import load_train  # noqa: E402
from kit.data.split import split_rows  # noqa: E402

RECORD = ROOT / "bench" / PEER_RECORD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch-python", required=True, help="python of a venv with torch (not the kit's)")
    parser.add_argument("--train", default="data/train.csv")
    parser.add_argument("--rows", type=int, default=6400)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per side and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--record", action="store_true", help=f"write {RECORD.relative_to(ROOT)}")
    args = parser.parse_args()

    config = make_config("best", augment=False)
    dataset = load_train(args.train)
    x, y, *_ = split_rows(dataset.x, dataset.y, config.val_fraction, seed=0)
    x, y = x[: args.rows], y[: args.rows]
    rounds = []
    for r in range(args.rounds):
        kit = time_epochs(config, x, y, args.epochs)
        peer = json.loads(
            subprocess.run(
                [
                    args.torch_python,
                    str(ROOT / "tools" / "torch_peer.py"),
                    "--train",
                    args.train,
                    "--rows",
                    str(args.rows),
                    "--epochs",
                    str(args.epochs),
                    "--channels",
                    ",".join(map(str, config.conv_channels)),
                    "--convs-per-block",
                    str(config.convs_per_block),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        kit_s, peer_s = statistics.median(kit["epoch_seconds"]), statistics.median(peer["epoch_seconds"])
        floor_s = statistics.median(kit["floor_seconds"])
        rounds.append(
            {
                "kit_seconds": kit_s,
                "torch_seconds": peer_s,
                "floor_seconds": floor_s,
                "kit_over_torch": kit_s / peer_s,
                "kit_over_floor": kit_s / floor_s,
            }
        )
        print(
            f"round {r + 1}: kit {kit_s:.2f} s/epoch ({kit_s / floor_s:.2f}x its GEMM floor of "
            f"{floor_s:.2f} s), "
            f"PyTorch {peer['torch']} {peer_s:.2f} s ({peer['threads']} threads): kit/PyTorch "
            f"{kit_s / peer_s:.2f}x",
            flush=True,
        )
    ratio = statistics.median(row["kit_over_torch"] for row in rounds)
    print(
        f"median kit/PyTorch {ratio:.2f}x over {len(rounds)} rounds of {args.rows} rows, batch "
        f"{config.batch_size}"
    )
    if args.record:
        record = {
            "measured": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine_summary(),
            "rows": args.rows,
            "batch": config.batch_size,
            "network": "best preset's CNN, no augmentation",
            "torch": peer["torch"],
            "torch_threads": peer["threads"],
            "rounds": rounds,
            "median_kit_over_torch": ratio,
            "median_kit_over_floor": statistics.median(row["kit_over_floor"] for row in rounds),
        }
        RECORD.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {RECORD.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
