"""Settings for the whole test session."""

import os
import shutil
import tempfile


def pytest_configure(config):
    # Training measures the BLAS thread count once per machine and keeps the answer in the
    # user's cache folder (kit/threads.py); the tests keep theirs in a folder of their own.
    folder = tempfile.mkdtemp(prefix="kit-test-cache-")
    config._kit_cache = folder
    os.environ["XDG_CACHE_HOME"] = folder


def pytest_unconfigure(config):
    folder = getattr(config, "_kit_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
