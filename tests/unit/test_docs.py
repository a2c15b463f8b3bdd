"""The README's configuration table stays true to the code, and the README and docs/ link
only to files and headings inside the repository."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import fields
from pathlib import Path
from urllib.parse import unquote

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


# --- links: the README and docs/ stand alone -----------------------------------------

ROOT = README.parent
DOCS = ROOT / "docs"
FENCE = re.compile(r"^\s{0,3}(```|~~~)")
ATX_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HTML_TARGET = re.compile(r"\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# A path climbing out of its folder, in any text ("../x", not the ".../x" of elided routes).
PARENT_PATH = re.compile(r"(?<![\w./])(?:\.\./)+[^\s`'\")\]]*")
MARKDOWN_FILE = re.compile(r"(?<![\w./:-])[\w./-]*[\w-]\.md\b")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (links and headings there are not markdown)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lower-cased, punctuation dropped (letters,
    marks, digits, "_" and "-" kept), each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = CODE_SPAN.sub(lambda m: m.group(2), text)
    text = re.sub(r"<[^>]+>", "", text).replace("*", "").lower()
    kept = "".join(
        c
        for c in text
        if c in " -_" or c.isalnum() or unicodedata.category(c).startswith(("L", "M", "N"))
    )
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(path.read_text()):
        match = ATX_HEADING.match(line)
        if match is None:
            continue
        slug = github_slug(match.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def link_targets(path: Path) -> list[str]:
    targets = []
    for line in prose_lines(path.read_text()):
        definition = REFERENCE_DEFINITION.match(line)
        if definition is not None:
            targets.append(definition.group(1))
            continue
        prose = CODE_SPAN.sub("", line)
        targets += INLINE_LINK.findall(prose) + HTML_TARGET.findall(prose)
    return targets


def inside_repository(path: Path) -> bool:
    return path.resolve().is_relative_to(ROOT.resolve())


def link_problem(source: Path, target: str) -> str | None:
    """Why a link of `source` is broken, or None: it must stay in the repository and name
    a file and heading that exist."""
    if SCHEME.match(target):
        return None if target.startswith(("http://", "https://", "mailto:")) else "not a web link"
    if target.startswith("/"):
        return "an absolute path"
    file_part, _, anchor = target.partition("#")
    file = (source.parent / unquote(file_part)) if file_part else source
    if not inside_repository(file):
        return "leaves the repository"
    if not file.exists():
        return "no such file"
    if anchor and (file.suffix != ".md" or unquote(anchor) not in anchors(file)):
        return f"no heading #{anchor} in {file.relative_to(ROOT)}"
    return None


def test_the_slugs_follow_githubs_rules() -> None:
    assert github_slug("Events (topic `groupbuy`, key = group id)") == (
        "events-topic-groupbuy-key--group-id"
    )
    assert github_slug("Notifications (services/notify)") == "notifications-servicesnotify"
    assert github_slug("What a `201` reservation relies on") == "what-a-201-reservation-relies-on"
    assert github_slug("Group buying (拼团)") == "group-buying-拼团"
    assert github_slug("Editing, ending and cancelling") == "editing-ending-and-cancelling"
    assert github_slug("**Live** [figures](x.md)") == "live-figures"


def test_the_link_checker_refuses_what_leaves_the_repository_or_is_missing() -> None:
    source = DOCS / "architecture.md"
    assert link_problem(source, "../../shared/DESIGN.md") == "leaves the repository"
    assert link_problem(source, "/work/shared/STYLE.md") == "an absolute path"
    assert link_problem(source, "file:///etc/passwd") == "not a web link"
    assert link_problem(source, "design.md") == "no such file"
    assert link_problem(source, "groupbuy.md#ending-and-cancelling") is not None
    assert link_problem(source, "#no-such-heading") is not None
    assert link_problem(source, "groupbuy.md#editing-ending-and-cancelling") is None
    assert link_problem(source, "../README.md#http-api") is None
    assert link_problem(source, "https://github.com/tansu-io/tansu") is None


def test_every_link_of_the_docs_stays_in_the_repository_and_finds_its_target() -> None:
    broken = [
        f"{path.relative_to(ROOT)}: {target} ({problem})"
        for path in markdown_files()
        for target in link_targets(path)
        if (problem := link_problem(path, target)) is not None
    ]
    assert broken == []


def test_no_doc_names_a_path_outside_the_repository() -> None:
    leaving = [
        f"{path.relative_to(ROOT)}: {mention}"
        for path in markdown_files()
        for mention in PARENT_PATH.findall(path.read_text())
        if not inside_repository(path.parent / mention)
    ]
    assert leaving == []


def test_every_markdown_file_the_docs_name_exists() -> None:
    """Mentions in plain text too ("docs/operations.md, ..."): a doc that is not in the
    repository (a design page kept elsewhere) cannot be named."""

    def exists(source: Path, name: str) -> bool:
        return any((folder / name).is_file() for folder in (source.parent, ROOT, DOCS))

    missing = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in markdown_files()
        for name in MARKDOWN_FILE.findall(path.read_text())
        if not exists(path, name)
    ]
    assert missing == []
