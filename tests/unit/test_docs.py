"""The README's configuration table stays true to the code."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from services.common.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def configuration_rows() -> list[str]:
    table = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return [line for line in table.splitlines() if line.startswith("| `")]


def documented_variables() -> set[str]:
    first_cells = [row.split("|")[1] for row in configuration_rows()]
    return {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}


def test_every_setting_is_documented_in_the_readme() -> None:
    wanted = {f.name.upper() for f in fields(Settings)}
    assert wanted - documented_variables() == set()


def test_the_readme_documents_no_setting_that_does_not_exist() -> None:
    wanted = {f.name.upper() for f in fields(Settings)}
    assert documented_variables() - wanted == set()


def test_numeric_defaults_in_the_readme_match_the_code() -> None:
    defaults = Settings()
    rows = configuration_rows()
    for f in fields(Settings):
        value = getattr(defaults, f.name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            row = next(r for r in rows if f"`{f.name.upper()}`" in r.split("|")[1])
            assert f"`{value}`" in row, f"{f.name.upper()}: default {value} not in {row!r}"
