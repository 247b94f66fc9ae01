"""Settings for the whole test session: the `slow` marker (`make test-fast` leaves those out)."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: subprocesses, parallel processes, the bench, a browser, a cluster"
    )


from browser import browser  # noqa: E402,F401  (the headless Chromium fixture)
from served_model import sample_model  # noqa: E402,F401  (a small real model, trained once per session)
