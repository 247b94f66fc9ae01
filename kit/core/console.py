"""Printing for the kit's commands: lines that do not break tqdm's progress bars."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def log(message: str = "") -> None:
    """Print a line without breaking the progress bars."""
    tqdm.write(message, file=sys.stdout)
