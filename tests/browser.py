"""A real headless Chromium for the tests, driven by Selenium: Debian's `chromium` and
`chromium-driver` (no browser is downloaded at run time).

    def test_page(browser):                       # the fixture is in tests/conftest.py
        driver = browser(width=1280, height=900)   # or browser(width=390, height=844, mobile=True)
        driver.get(url)
        assert not console_errors(driver)

Without Chromium the tests that use it skip with the reason; with CI=true they fail instead,
so CI cannot pass by skipping them (.ci/run installs the packages).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def missing_browser() -> str | None:
    """Why no browser test can run here, or None when Chromium, its driver and Selenium are present."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.exists(path) or shutil.which(os.path.basename(path))):
            return f"{path} not found: apt-get install {package}"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: make venv"
    return None


def require_browser() -> None:
    reason = missing_browser()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    pytest.skip(reason)


def start_chromium(width: int, height: int, mobile: bool, profile: str):
    """A headless Chromium window of width x height CSS pixels; `mobile` emulates a phone with touch."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    if mobile:
        options.add_experimental_option(
            "mobileEmulation",
            {
                "deviceMetrics": {"width": width, "height": height, "pixelRatio": 3.0, "touch": True},
                "userAgent": "Mozilla/5.0 (Linux; Android 14) Mobile",
            },
        )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = CHROMEDRIVER if os.path.exists(CHROMEDRIVER) else shutil.which("chromedriver")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    return driver


def console_errors(driver) -> list[str]:
    """The browser console's SEVERE entries since the last call (favicon misses excluded)."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry.get("level") == "SEVERE" and "favicon.ico" not in entry.get("message", "")
    ]


@pytest.fixture
def browser():
    """A factory of headless Chromium drivers, all quit at the end of the test."""
    require_browser()
    drivers, profiles = [], []

    def make(width: int = 1280, height: int = 900, mobile: bool = False):
        profile = tempfile.mkdtemp(prefix="kit-chromium-")
        profiles.append(profile)
        driver = start_chromium(width, height, mobile, profile)
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.quit()
    for profile in profiles:
        shutil.rmtree(profile, ignore_errors=True)
