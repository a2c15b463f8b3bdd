"""pyproject.toml is the one source of the dependencies; the lock files requirements*.txt are
what `make lock` resolves from it. They must agree: a direct dependency missing from a lock,
or locked at a version its specifier excludes, is a pyproject edit without `make lock`."""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]

# Each lock and what it is resolved from, smallest first: each holds the one before it.
LOCKS = {
    "requirements.txt": (),
    "requirements-dev.txt": ("dev",),
    "requirements-loadtest.txt": ("dev", "loadtest"),
}

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(?P<rest>.*)$")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    version: str
    marker: str
    hashes: int


def read_lock(name: str) -> dict[str, Pin]:
    """Package (canonical name) -> its pin, from a lock file as uv writes it: a `name==version
    [; marker] \\` line, then its `--hash=` lines, then `# via` comments."""
    pins: dict[str, Pin] = {}
    current: str | None = None
    for line in (ROOT / name).read_text().splitlines():
        if match := PIN.match(line):
            marker = match["rest"].rstrip("\\ ").removeprefix(";").strip()
            current = canonicalize_name(match["name"])
            assert current not in pins, f"{name}: {current} is pinned twice"
            pins[current] = Pin(match["version"], marker, 0)
        elif current is not None and HASH.search(line):
            pin = pins[current]
            pins[current] = Pin(pin.version, pin.marker, pin.hashes + 1)
        elif line.strip() and not line.lstrip().startswith("#"):
            raise AssertionError(f"{name}: not a pin, hash or comment: {line!r}")
    return pins


def direct(extras: tuple[str, ...]) -> list[Requirement]:
    groups = [PROJECT["dependencies"], *(PROJECT["optional-dependencies"][e] for e in extras)]
    return [Requirement(spec) for group in groups for spec in group]


@pytest.mark.parametrize("lock", LOCKS)
def test_every_package_in_a_lock_is_pinned_exactly_with_hashes(lock: str) -> None:
    pins = read_lock(lock)
    assert pins, f"{lock} pins nothing"
    assert [name for name, pin in pins.items() if pin.hashes == 0] == []
    assert (ROOT / lock).read_text().splitlines()[1].strip() == "#    make lock"


@pytest.mark.parametrize(("lock", "extras"), LOCKS.items())
def test_every_direct_dependency_is_locked_at_a_version_pyproject_allows(
    lock: str, extras: tuple[str, ...]
) -> None:
    pins = read_lock(lock)
    missing, excluded = [], []
    for req in direct(extras):
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            missing.append(str(req))
        elif not req.specifier.contains(pin.version, prereleases=True):
            excluded.append(f"{req} locked at {pin.version}")
    assert missing == [], f"{lock} lacks these direct dependencies: run make lock"
    assert excluded == [], f"{lock} pins versions pyproject.toml excludes: run make lock"


def test_each_lock_holds_the_one_below_it_at_the_same_versions() -> None:
    # make loadtest installs the loadtest lock into the venv of the dev lock, and the image
    # runs the runtime lock that the tests ran against: one version of each package.
    for smaller, larger in itertools.pairwise(LOCKS):
        below, above = read_lock(smaller), read_lock(larger)
        differ = {
            name: (pin.version, above[name].version if name in above else None)
            for name, pin in below.items()
            if name not in above or above[name].version != pin.version
        }
        assert differ == {}, f"{larger} does not hold {smaller}'s pins"


def test_the_runtime_lock_holds_no_development_package() -> None:
    runtime = read_lock("requirements.txt")
    dev_only = {canonicalize_name(r.name) for r in direct(("dev", "loadtest"))} - {
        canonicalize_name(r.name) for r in direct(())
    }
    assert sorted(dev_only & runtime.keys()) == []


def test_the_build_backend_is_pinned_and_the_dev_lock_installs_that_version() -> None:
    # tests/e2e/test_package.py builds the wheel offline with the dev venv's backend.
    (backend,) = (Requirement(r) for r in PYPROJECT["build-system"]["requires"])
    (pinned,) = backend.specifier
    assert pinned.operator == "=="
    assert read_lock("requirements-dev.txt")[canonicalize_name(backend.name)].version == (
        pinned.version
    )
