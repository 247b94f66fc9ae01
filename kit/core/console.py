"""What the kit's commands print: lines that do not break tqdm's progress bars, notes on
stderr, and any text made into one line.

    log("run saved in models/...")        # stdout
    note("warning: ~/.kaggle/kaggle.json is readable by other users")   # stderr
    one_line(error, 160)                  # an error's text on one line, at most 160 characters
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def log(message: str = "") -> None:
    """Print a line on stdout without breaking the progress bars."""
    tqdm.write(message, file=sys.stdout)


def note(message: str) -> None:
    """Print a line on stderr (warnings, notes beside a command's output), sparing the bars."""
    tqdm.write(message, file=sys.stderr)


def one_line(text: object, limit: int = 300) -> str:
    """`text` (an exception too: its message, or its type when it has none) on one line, at most
    `limit` characters."""
    line = " ".join(str(text).split())
    if not line and isinstance(text, BaseException):
        line = type(text).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
