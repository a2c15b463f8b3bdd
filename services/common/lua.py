"""Lua scripts live in each service's lua/ folder, read once at start-up and registered
with register_script (which reloads them after a Redis restart: NOSCRIPT)."""

from __future__ import annotations

import importlib.resources


def lua_source(package: str, name: str) -> str:
    """The text of <package>/lua/<name>, e.g. lua_source("services.seckill", "reserve.lua")."""
    return importlib.resources.files(package).joinpath(f"lua/{name}").read_text()
