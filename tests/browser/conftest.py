"""The browser of the console tests that run a platform (tests/browser/stack.py): each
such module defines its own `stack` fixture, with the services it needs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.browser import Page, chromium
from tests.browser.stack import ZONE, Stack


@pytest.fixture
def page(stack: Stack, tmp_path: Path) -> Iterator[Page]:
    with chromium(str(ZONE), tmp_path / "chromedriver.log") as driver:
        yield Page(driver, stack.urls.admin)
