"""What the console's pages are answered with: which names are assets, their types, the
security headers every answer carries and how long each may be cached. No I/O."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

PREFIX = "/console/"
# Assets are served under /console/v/<version>/ where <version> is a digest of all of
# them: a deploy changes every asset URL, so browsers may keep an asset for a year
# without ever running one page's HTML with another release's modules. Modules import
# each other by relative path, so they stay under the prefix index.html names.
ASSET_PREFIX = PREFIX + "v/"
INDEX = "index.html"
VERSION_PLACEHOLDER = "{{asset_base}}"

# Everything from this origin and nothing else: no inline script or style (the pages have
# none), no framing (clickjacking of the operator's buttons), no other hosts.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # Hash routes carry sale and order ids: keep them out of Referer headers.
    "Referrer-Policy": "no-referrer",
}

CONTENT_TYPES: Mapping[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# The HTML names the current assets: revalidated on every load (a 304 when unchanged).
CACHE_INDEX = "no-cache"
CACHE_VERSIONED = "public, max-age=31536000, immutable"
# An asset asked for under another release's version (a rolling update, an old tab) is
# served if this release has it, but never kept.
CACHE_OTHER_VERSION = "no-cache"
# JSON errors, redirects.
CACHE_NONE = "no-store"

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)*\.[a-z0-9]+")


def is_asset_name(name: str) -> bool:
    """Lower-case path segments without dots except before the extension, of a known type:
    nothing hidden, no '..', nothing the console does not ship."""
    return bool(_NAME.fullmatch(name)) and extension(name) in CONTENT_TYPES


def extension(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:] if dot >= 0 else ""


def content_type(name: str) -> str:
    return CONTENT_TYPES[extension(name)]


def assets_version(files: Mapping[str, bytes]) -> str:
    """A digest of every asset's name and content: changes whenever any of them does."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()[:16]


def etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, tag: str) -> bool:
    """RFC 9110 13.1.2 weak comparison, as a browser revalidating sends it."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(t.strip().removeprefix("W/") == tag for t in if_none_match.split(","))


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@dataclass(frozen=True, slots=True)
class Bundle:
    """The console's files as served: index.html naming the versioned asset base."""

    version: str
    index: Asset
    assets: Mapping[str, Asset]

    @classmethod
    def of(cls, files: Mapping[str, bytes]) -> Bundle:
        if INDEX not in files:
            raise ValueError(f"the console has no {INDEX}")
        version = assets_version(files)
        base = f"{ASSET_PREFIX}{version}/"
        html = files[INDEX].replace(VERSION_PLACEHOLDER.encode(), base.encode())
        assets = {
            name: Asset(body, content_type(name), etag(body))
            for name, body in files.items()
            if name != INDEX
        }
        return cls(version, Asset(html, content_type(INDEX), etag(html)), assets)

    def lookup(self, version: str, name: str) -> tuple[Asset, str] | None:
        """The asset and its Cache-Control, or None (404)."""
        found = self.assets.get(name)
        if found is None:
            return None
        return found, CACHE_VERSIONED if version == self.version else CACHE_OTHER_VERSION
