"""The one exception the kit raises for problems the user can fix.

The CLI prints its message as a single line and exits non-zero, so each message
names the file (and row / column where there is one) and what to do about it.
"""


class KitError(Exception):
    """A user-facing error: one line, no traceback."""

    exit_code = 2
