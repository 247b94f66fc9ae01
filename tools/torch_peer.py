"""The `best` preset's network in PyTorch, timed epoch by epoch: the peer the kit's CNN epoch is
measured against (issue 12). PyTorch is NOT a dependency of the kit: run this with a throwaway
virtual environment, interleaved with the kit's own timing (tools/cnn_race.py does both):

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/python tools/torch_peer.py --rows 6400 --epochs 3

It builds what kit.network.build_network builds for the preset's CNN settings: per block
CONVS_PER_BLOCK x (3x3 conv, padding 1, [2x2 max-pool after the block's last conv], batch
norm, ReLU), then dense 256 + batch norm + ReLU + dropout, dense 10; AdamW, label smoothing,
batch 128, float32, no augmentation, torch.set_num_threads(--threads). Prints one JSON line:
{"epoch_seconds": [...], "threads": n, "torch": version}.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn


def network(channels: list[int], convs_per_block: int, hidden: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Unflatten(1, (1, 28, 28))]
    c_in, side = 1, 28
    for c_out in channels:
        for i in range(convs_per_block):
            layers.append(nn.Conv2d(c_in, c_out, 3, padding=1))
            if i == convs_per_block - 1:
                layers.append(nn.MaxPool2d(2))
            layers += [nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        side //= 2
    layers.append(nn.Flatten())
    n_in = c_in * side * side
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout)]
        n_in = width
    layers.append(nn.Linear(n_in, 10))
    return nn.Sequential(*layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", default="data/train.csv")
    parser.add_argument("--rows", type=int, default=6400)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels", default="32,64")
    parser.add_argument("--convs-per-block", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = np.loadtxt(args.train, delimiter=",", skiprows=1, dtype=np.float32, max_rows=args.rows)
    x = torch.from_numpy(data[:, 1:] / 255.0)
    y = torch.from_numpy(data[:, 0].astype(np.int64))
    model = network([int(c) for c in args.channels.split(",")], args.convs_per_block, [256], 0.25)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    times = []
    model.train()
    for epoch in range(args.epochs + 1):  # the first is a warm-up
        started = time.perf_counter()
        order = torch.randperm(len(x))
        for start in range(0, len(x), 128):
            index = order[start : start + 128]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[index]), y[index])
            loss.backward()
            optimizer.step()
        if epoch:
            times.append(time.perf_counter() - started)
    print(json.dumps({"epoch_seconds": times, "threads": args.threads, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
