"""The report's pictures, drawn with matplotlib's Agg backend (files only, no display) and each
written atomically as a PNG of DPI dots per inch:

    plot_curves     loss / accuracy / learning rate per epoch, 1300 x 390 px
    plot_confusion  confusion matrix heat maps (counts, row-normalised), 1250 x 560 px
    plot_digits     a gallery of 28x28 digits with captions, 145 px per column x 175 px per row

matplotlib is imported on first use, so importing this module costs nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from kit.core.atomic import atomic_path
from kit.core.mnist import IMAGE_SIDE, N_CLASSES

GALLERY_COLUMNS = 8
TILE_W, TILE_H = 36, 44  # a gallery cell in image pixels: the 28x28 digit plus margins and a caption band
DPI = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)
    return path


def plot_curves(history: list[dict], members: list[dict], path: Path) -> Path:
    """Loss (log scale), accuracy and learning rate per epoch: training solid, validation dashed,
    best epoch dotted; one colour per ensemble member (or per kind with one member). The legend
    names the line styles in the loss panel and the members' colours in the learning-rate panel,
    so that it stays small for an ensemble."""
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    # fixed margins: constrained layout would double the drawing time
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(13, 3.9))
    fig.subplots_adjust(left=0.045, right=0.99, bottom=0.13, top=0.92, wspace=0.2)
    member_ids = sorted({int(row["member"]) for row in history})
    several = len(member_ids) > 1
    best = {int(m.get("member", 0)): m.get("best_epoch") for m in members}
    accuracies, kinds_drawn = [], []
    for index, member in enumerate(member_ids):
        rows = [row for row in history if int(row["member"]) == member]
        epochs = [row.get("epoch", i + 1) for i, row in enumerate(rows)]
        member_colour = f"C{index % 10}"
        for kind, style, kind_colour in (("training", "-", "C0"), ("validation", "--", "C1")):
            colour = member_colour if several else kind_colour
            prefix = "train" if kind == "training" else "val"
            loss = [row.get(f"{prefix}_loss", math.nan) for row in rows]
            acc = [row.get(f"{prefix}_acc", math.nan) for row in rows]
            if all(math.isnan(v) for v in loss):
                continue  # no validation rows
            ax_loss.plot(epochs, loss, style, color=colour, marker=".")
            ax_acc.plot(epochs, acc, style, color=colour, marker=".")
            accuracies += [v for e, v in zip(epochs, acc) if e > 1 and not math.isnan(v)]
            if index == 0:
                kinds_drawn.append(
                    Line2D(
                        [], [], linestyle=style, marker=".", color="0.3" if several else colour, label=kind
                    )
                )
        ax_lr.plot(
            epochs,
            [row.get("lr", math.nan) for row in rows],
            "-",
            marker=".",
            color=member_colour if several else "C2",
            label=f"member {member + 1}",
        )
        if best.get(member):
            for ax in (ax_loss, ax_acc):
                ax.axvline(best[member], color=member_colour if several else "0.4", linestyle=":")
    if any(best.values()):
        epochs_text = ", ".join(str(best[m]) for m in member_ids if best.get(m))
        kinds_drawn.append(Line2D([], [], linestyle=":", color="0.4", label=f"best epoch {epochs_text}"))
    ax_loss.legend(handles=kinds_drawn, fontsize=8)
    if several:
        ax_lr.legend(fontsize=8, title="colour", title_fontsize=8)
    ax_loss.set_yscale("log")
    ax_loss.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 0.3, not 3x10^-1
    # minor ticks: label 2, 3 and 5 of each decade only, so the labels near a decade do not collide
    ax_loss.yaxis.set_minor_formatter(
        FuncFormatter(lambda value, _: f"{value:g}" if f"{value:.0e}"[0] in "235" else "")
    )
    if len(set(row["epoch"] for row in history)) >= 5 and accuracies:
        low = min(accuracies)  # from epoch 2 on: the first epoch would squash the rest against the top
        ax_acc.set_ylim(max(0.0, low - 0.1 * (1.0 - low) - 0.005), 1.004)  # a line at 1.0 stays visible
        ax_acc.set_title("accuracy (axis zoomed on epochs 2 and later)", fontsize=11)
    rates = [row.get("lr", math.nan) for row in history]
    if not all(math.isnan(rate) for rate in rates):
        ax_lr.set_ylim(0, 1.1 * np.nanmax(rates))
    ax_lr.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # no offset over the title
    for ax, title in (
        (ax_loss, "loss (cross-entropy, log scale)"),
        (ax_acc, "accuracy"),
        (ax_lr, "learning rate (at the end of each epoch)"),
    ):
        if not ax.get_title():
            ax.set_title(title, fontsize=11)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_confusion(matrix: np.ndarray, path: Path) -> Path:
    """Two heat maps of a (10, 10) confusion matrix (rows true, columns predicted): counts, and
    each row as percentages of its true label; zero cells left blank so mistakes stand out."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 5.6))
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.1, top=0.94, wspace=0.12)
    rows = matrix.sum(axis=1, keepdims=True)
    share = 100.0 * matrix / np.maximum(rows, 1)
    for ax, values, title, fmt in (
        (axes[0], matrix, "counts", "{:.0f}".format),
        (axes[1], share, "row-normalised (% of each true label)", _percent),
    ):
        # a log-like stretch so off-diagonal mistakes get colour too, not only the diagonal
        shown = np.sqrt(values / max(values.max(), 1e-9))
        ax.imshow(shown, cmap="Blues", vmin=0, vmax=1)
        for (i, j), value in np.ndenumerate(values):
            if value > 0:
                ax.text(
                    j,
                    i,
                    fmt(value),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if shown[i, j] > 0.6 else "black",
                )
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("predicted label")
        ax.set_ylabel("true label")
        ax.set_xticks(range(N_CLASSES))
        ax.set_yticks(range(N_CLASSES))
    return _save(fig, path)


def _percent(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")  # 97.3, 100, 0.4


def plot_digits(
    pixels: np.ndarray, captions: list[str], path: Path, colours: list[str] | None = None
) -> Path:
    """A grid of 28x28 images (n, 784) uint8, dark ink on white as on paper, each under its caption.

    The tiles are put into one mosaic array drawn on a single axes (one axes per tile would cost
    a second of layout for 48 tiles); captions go into the blank band above each tile."""
    plt = _pyplot()
    n = len(pixels)
    n_cols = min(GALLERY_COLUMNS, n)
    n_rows = math.ceil(n / n_cols)
    cell_w, cell_h, band, gap = TILE_W, TILE_H, TILE_H - IMAGE_SIDE - 2, (TILE_W - IMAGE_SIDE) // 2
    mosaic = np.zeros((n_rows * cell_h, n_cols * cell_w), dtype=np.uint8)
    for k in range(n):
        top, left = (k // n_cols) * cell_h + band, (k % n_cols) * cell_w + gap
        mosaic[top : top + IMAGE_SIDE, left : left + IMAGE_SIDE] = pixels[k].reshape(IMAGE_SIDE, IMAGE_SIDE)
    fig = plt.figure(figsize=(1.45 * n_cols, 1.75 * n_rows))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest", aspect="auto")
    ax.axis("off")
    for k in range(n):
        ax.text(
            (k % n_cols + 0.5) * cell_w,
            (k // n_cols) * cell_h + band / 2,
            captions[k],
            ha="center",
            va="center",
            fontsize=9,
            linespacing=1.25,
            color=(colours or ["black"] * n)[k],
        )
    return _save(fig, path)
