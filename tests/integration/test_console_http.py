"""The console service over HTTP: its pages from the real static directory, the security
headers on every answer, caching, and nothing but the console's own files."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from services.common.settings import Settings
from services.console.app import create_app, create_ops, read_static
from services.console.domain import CONTENT_SECURITY_POLICY
from tests.helpers import started_client

Client = TestClient[Any, Any]
CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'"
)


@pytest.fixture
async def console() -> AsyncIterator[Client]:
    client = await started_client(create_app(Settings()))
    yield client
    await client.close()


def assert_secured(headers: Any) -> None:
    assert headers["Content-Security-Policy"] == CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_the_policy_is_the_one_the_console_was_specified_with() -> None:
    assert CONTENT_SECURITY_POLICY == CSP


async def test_the_page_is_served_at_console_and_revalidated_on_every_load(
    console: Client,
) -> None:
    async with console.get("/console/") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert resp.headers["Cache-Control"] == "no-cache"
        assert_secured(resp.headers)
        html = await resp.text()
        tag = resp.headers["ETag"]
    # No inline script or style (the policy would block them), nothing from elsewhere.
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
    assert "<style" not in html and "style=" not in html
    assert "http://" not in html and "https://" not in html
    async with console.get("/console/", headers={"If-None-Match": tag}) as resp:
        assert (resp.status, await resp.read()) == (304, b"")
        assert_secured(resp.headers)


async def test_console_without_the_slash_redirects_to_the_page(console: Client) -> None:
    async with console.get("/console", allow_redirects=False) as resp:
        assert (resp.status, resp.headers["Location"]) == (301, "/console/")
        assert resp.headers["Cache-Control"] == "no-store"
        assert_secured(resp.headers)


async def test_every_asset_the_page_names_is_served_immutable_with_its_type(
    console: Client,
) -> None:
    async with console.get("/console/") as resp:
        html = await resp.text()
    named = re.findall(r'(?:src|href)="(/console/v/[0-9a-f]+/[^"]+)"', html)
    assert len(named) == 3  # the stylesheet, the icon, the entry module
    files = read_static()
    version = named[0].split("/")[3]
    for name in files:
        if name == "index.html":
            continue
        async with console.get(f"/console/v/{version}/{name}") as resp:
            assert resp.status == 200, name
            assert await resp.read() == files[name]
            assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            assert_secured(resp.headers)
            expected = {
                "js": "text/javascript; charset=utf-8",
                "css": "text/css; charset=utf-8",
                "svg": "image/svg+xml",
            }[name.rsplit(".", 1)[1]]
            assert resp.headers["Content-Type"] == expected, name


async def test_modules_import_only_modules_of_the_console(console: Client) -> None:
    files = read_static()
    for name, body in files.items():
        if not name.endswith(".js"):
            continue
        for target in re.findall(rb'from "([^"]+)"', body):
            assert target.startswith((b"./", b"../")), (name, target)
            base = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
            parts: list[str] = []
            for part in (base + target.decode()).split("/"):
                if part == "..":
                    parts.pop()
                elif part not in (".", ""):
                    parts.append(part)
            assert "/".join(parts) in files, (name, target)


async def test_an_asset_of_another_release_is_served_but_not_kept(console: Client) -> None:
    async with console.get("/console/v/0123456789abcdef/app.js") as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    [
        "/console/v/0123/app.py",
        "/console/v/0123/__init__.py",
        "/console/v/0123/../app.py",
        "/console/v/0123/%2e%2e/app.py",
        "/console/v/0123/index.html",
        "/console/app.js",
        "/console/index.html",
        "/api/seckill/admin/activities",
        "/metrics",
        "/",
    ],
)
async def test_nothing_but_the_console_s_files_is_served(console: Client, path: str) -> None:
    async with console.get(path) as resp:
        assert resp.status == 404, path
        assert (await resp.json())["error"] == "not_found"
        assert resp.headers["Cache-Control"] == "no-store"
        assert_secured(resp.headers)


async def test_a_change_is_refused_with_405(console: Client) -> None:
    async with console.post("/console/", data=b"x") as resp:
        assert resp.status == 405
        assert_secured(resp.headers)


async def test_the_ops_port_answers_ready_and_counts_requests(console: Client) -> None:
    api = console.app
    assert api is not None
    ops = await started_client(create_ops(api))
    try:
        async with console.get("/console/"):
            pass
        async with ops.get("/readyz") as resp:
            assert (resp.status, (await resp.json())["status"]) == (200, "ready")
        async with ops.get("/metrics") as resp:
            text = await resp.text()
        assert 'http_requests_total{method="GET",route="/console/",status="200"} 1.0' in text
    finally:
        await ops.close()
