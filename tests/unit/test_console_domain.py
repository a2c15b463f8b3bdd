"""The console's asset rules: which names are served, versions, ETags."""

from __future__ import annotations

import pytest

from services.console.domain import (
    CACHE_OTHER_VERSION,
    CACHE_VERSIONED,
    Bundle,
    etag,
    etag_matches,
    is_asset_name,
)

FILES = {
    "index.html": b'<script type="module" src="{{asset_base}}app.js"></script>',
    "app.js": b"import './pages/a.js';",
    "pages/a.js": b"export {};",
}


@pytest.mark.parametrize(
    "name", ["app.js", "console.css", "pages/sale-form.js", "favicon.svg", "index.html"]
)
def test_the_console_s_own_kinds_of_file_are_asset_names(name: str) -> None:
    assert is_asset_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "../settings.py",
        "pages/../app.js",
        ".hidden.js",
        "pages/.a.js",
        "/etc/passwd",
        "app.py",
        "app.JS",
        "pages//a.js",
        "a.min.js",
        "app.js/",
        "",
    ],
)
def test_anything_else_is_not(name: str) -> None:
    assert not is_asset_name(name)


def test_index_names_the_versioned_asset_base_and_the_version_follows_every_file() -> None:
    bundle = Bundle.of(FILES)
    assert bundle.index.body == (
        f'<script type="module" src="/console/v/{bundle.version}/app.js"></script>'.encode()
    )
    assert set(bundle.assets) == {"app.js", "pages/a.js"}
    changed = Bundle.of({**FILES, "pages/a.js": b"export const x = 1;"})
    assert changed.version != bundle.version
    assert Bundle.of(dict(reversed(FILES.items()))).version == bundle.version


def test_an_asset_is_kept_for_a_year_only_under_this_release_s_version() -> None:
    bundle = Bundle.of(FILES)
    assert bundle.lookup(bundle.version, "app.js") == (bundle.assets["app.js"], CACHE_VERSIONED)
    assert bundle.lookup("0" * 16, "app.js") == (bundle.assets["app.js"], CACHE_OTHER_VERSION)
    assert bundle.lookup(bundle.version, "index.html") is None
    assert bundle.lookup(bundle.version, "missing.js") is None


def test_a_console_without_its_page_is_refused() -> None:
    with pytest.raises(ValueError, match=r"index\.html"):
        Bundle.of({"app.js": b""})


def test_etags_match_as_browsers_send_them() -> None:
    tag = etag(b"x")
    assert etag_matches(tag, tag)
    assert etag_matches(f'"other", W/{tag}', tag)
    assert etag_matches("*", tag)
    assert not etag_matches(None, tag)
    assert not etag_matches('"other"', tag)
