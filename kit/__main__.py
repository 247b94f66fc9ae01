"""`python -m kit`: the command line (kit/cli.py)."""

import sys

from kit.cli import main

sys.exit(main())
