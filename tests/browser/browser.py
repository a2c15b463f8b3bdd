"""Headless Chromium driven through chromedriver (Selenium), both from Debian's packages:
the paths are given explicitly and Selenium Manager is kept offline, so a test never
downloads a browser or a driver. Every wait is bounded: a missing piece fails the test
with what the page showed, it never hangs."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
HOW = "install the Debian packages chromium and chromium-driver (make install does when root)"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)
# A page load, a script, a wait for something on the page: none takes longer.
PAGE_LOAD_SECONDS = 30
WAIT_SECONDS = 15
T = TypeVar("T")


def require_browser() -> None:
    """Fails (in CI) or skips (elsewhere) with how to install what is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        message = f"{', '.join(missing)} not found: {HOW}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def chromium(time_zone: str, log: Path) -> Iterator[webdriver.Chrome]:
    """A fresh headless browser (its own profile in a temporary directory) whose clock
    is in `time_zone`; chromedriver's log goes to `log`."""
    require_browser()
    # Selenium Manager would otherwise look for (and download) a driver and a browser.
    os.environ["SE_OFFLINE"] = "true"
    profile = tempfile.mkdtemp(prefix="console-browser-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(
        executable_path=CHROMEDRIVER,
        log_output=str(log),
        env={**os.environ, "TZ": time_zone},
    )
    driver = None
    try:
        driver = webdriver.Chrome(options=options, service=service)
        driver.set_page_load_timeout(PAGE_LOAD_SECONDS)
        driver.set_script_timeout(PAGE_LOAD_SECONDS)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def browser_log(driver: webdriver.Chrome) -> str:
    with contextlib.suppress(WebDriverException):
        return "\n".join(e["message"] for e in driver.get_log("browser"))
    return ""


class Page:
    """What a test does on the console, with bounded waits that explain a failure."""

    def __init__(self, driver: webdriver.Chrome, base: str) -> None:
        self.driver = driver
        self.base = base

    def open(self, hash_route: str) -> None:
        if self.driver.current_url.startswith(f"{self.base}/console/"):
            self.driver.execute_script("location.hash = arguments[0]", hash_route)
        else:
            self.driver.get(f"{self.base}/console/{hash_route}")

    def wait(self, what: str, probe: Callable[[], T | None], seconds: float = WAIT_SECONDS) -> T:
        def attempt(_: Any) -> T | None:
            with contextlib.suppress(WebDriverException):
                return probe()
            return None

        try:
            result: T = WebDriverWait(self.driver, seconds, poll_frequency=0.1).until(attempt)
        except TimeoutException:
            raise AssertionError(
                f"waited {seconds} s for {what}; the page says:\n{self.text()[:2000]}\n"
                f"--- browser log ---\n{browser_log(self.driver)}"
            ) from None
        return result

    def find(self, css: str, seconds: float = WAIT_SECONDS) -> WebElement:
        def shown() -> WebElement | None:
            found = self.driver.find_elements(By.CSS_SELECTOR, css)
            return found[0] if found and found[0].is_displayed() else None

        return self.wait(f"{css!r} to show", shown, seconds)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self) -> str:
        with contextlib.suppress(WebDriverException):
            return str(self.driver.find_element(By.TAG_NAME, "main").text)
        return ""

    def fill(self, css: str, value: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(value)

    def set_value(self, css: str, value: str) -> None:
        """For inputs whose typing depends on the browser's locale (datetime-local)."""
        field = self.find(css)
        self.driver.execute_script(
            "arguments[0].value = arguments[1];"
            "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
            field,
            value,
        )

    def click(self, css: str) -> None:
        self.find(css).click()

    def figure(self, name: str) -> str:
        return str(self.find(f'[data-figure="{name}"]').text)

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        assert self.driver.save_screenshot(str(path)), path
