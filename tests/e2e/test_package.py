"""The project as an installed package: `pip wheel .` builds a wheel of the platform alone,
and once it is installed, outside the checkout, every command of pyproject's
[project.scripts] runs, finds its Lua, SQL and static files in the installed package, and
serves.

The wheel is built offline with the dev venv's build backend (the one build-system.requires
pins) and installed with --no-deps into a venv of its own, whose site-packages reach the
dev venv's through a .pth file: the dependencies are the locked ones the tests run on,
while `services` and `tools` can only come from the wheel (the commands run in a temporary
directory, never in the checkout).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import json
import os
import re
import site
import subprocess
import sys
import time
import tomllib
import uuid
import venv
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest

from services.common.auth import mint_token
from services.common.migrations import MIGRATING_SERVICES
from services.common.settings import Settings
from tests.helpers import activity_body, free_port, settings_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
DATA_SUFFIXES = (".lua", ".sql", ".yaml", ".json")
READY_WITHIN_S = 30.0

# Run by the installed venv's python: where the code comes from, and what it finds there.
PROBE = """
import importlib.resources, json, services, tools.bootstrap
from services.common.lua import lua_source
from services.common.migrations import MIGRATING_SERVICES, migration_files
from services.console.app import read_static

def lua(package):
    folder = importlib.resources.files(package).joinpath("lua")
    if not folder.is_dir():
        return []
    return sorted(f.name for f in folder.iterdir() if lua_source(package, f.name))

print(json.dumps({
    "services": services.__file__,
    "tools": tools.bootstrap.__file__,
    "lua": {p: lua(p) for p in (
        "services.common", "services.seckill", "services.groupbuy", "services.identity",
        "services.coupon",
    )},
    "migrations": {s: [name for name, _ in migration_files(s)] for s in MIGRATING_SERVICES},
    "static": sorted(read_static()),
}))
"""


@dataclasses.dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    outside: Path  # a working directory outside the checkout

    def command(self, name: str) -> Path:
        return self.venv / "bin" / name


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return env | extra


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    assert importlib.util.find_spec("hatchling") is not None, (
        "the build backend is missing from this venv: make install (requirements-dev.txt)"
    )
    work = tmp_path_factory.mktemp("package")
    dist, env_dir, outside = work / "dist", work / "venv", work / "elsewhere"
    outside.mkdir()
    pip = [sys.executable, "-m", "pip"]
    offline = ["--no-deps", "--no-index", "--quiet"]
    subprocess.run(
        [*pip, "wheel", str(ROOT), "--no-build-isolation", *offline, "--wheel-dir", str(dist)],
        cwd=outside,
        env=_env(),
        check=True,
        timeout=120,
    )
    (wheel,) = dist.glob("flashsale-*.whl")
    venv.create(env_dir, with_pip=False)
    (pure_lib,) = {Path(p) for p in env_dir.glob("lib/python*/site-packages") if Path(p).is_dir()}
    (pure_lib / "_flashsale_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [*pip, "--python", str(env_dir / "bin" / "python"), "install", *offline, str(wheel)],
        cwd=outside,
        env=_env(),
        check=True,
        timeout=120,
    )
    return Installed(wheel, env_dir, outside)


def repo_files(suffixes: tuple[str, ...]) -> set[str]:
    return {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "services").rglob("*")
        if p.is_file() and p.suffix in suffixes and "__pycache__" not in p.parts
    }


def test_the_wheel_holds_every_service_with_its_data_files_and_nothing_else(
    installed: Installed,
) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    meta = {n for n in names if n.startswith("flashsale-0.1.0.dist-info/")}
    code = names - meta
    assert {n.split("/")[0] for n in code} == {"services", "tools"}
    assert {n for n in code if n.startswith("tools/")} == {
        "tools/__init__.py",
        "tools/bootstrap.py",
    }
    static = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "services/console/static").rglob("*")
        if p.is_file()
    }
    assert code == repo_files((".py", *DATA_SUFFIXES)) | static | {
        "tools/__init__.py",
        "tools/bootstrap.py",
    }
    entry_points = zipfile.ZipFile(installed.wheel).read(
        "flashsale-0.1.0.dist-info/entry_points.txt"
    )
    assert f"flashsale-seckill = {SCRIPTS['flashsale-seckill']}" in entry_points.decode()


def test_the_installed_code_finds_its_lua_sql_and_static_files_in_the_package(
    installed: Installed,
) -> None:
    out = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", PROBE],
        cwd=installed.outside,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    found = json.loads(out)
    for module in ("services", "tools"):
        assert Path(found[module]).is_relative_to(installed.venv), found[module]
    assert {
        f"services/{p.split('.')[1]}/lua/{name}"
        for p, names in found["lua"].items()
        for name in names
    } == repo_files((".lua",))
    assert {
        f"services/{s}/migrations/{name}"
        for s, names in found["migrations"].items()
        for name in names
    } == repo_files((".sql",))
    assert found["static"] == sorted(
        p.relative_to(ROOT / "services/console/static").as_posix()
        for p in (ROOT / "services/console/static").rglob("*")
        if p.is_file()
    )


def test_every_command_answers_help_without_starting(installed: Installed) -> None:
    procs = {
        name: subprocess.Popen(
            [str(installed.command(name)), "--help"],
            cwd=installed.outside,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in SCRIPTS
    }
    answers = {name: proc.communicate(timeout=60) for name, proc in procs.items()}
    failed = {n: err for n, (_, err) in answers.items() if procs[n].returncode != 0}
    assert failed == {}
    assert all(out.startswith("usage: ") for out, _ in answers.values())
    assert sorted(SCRIPTS) == sorted(
        p.name for p in (installed.venv / "bin").iterdir() if p.name.startswith("flashsale-")
    )


# ------------------------------------------------------------- against the infrastructure


@contextlib.asynccontextmanager
async def fresh_database(settings: Settings) -> AsyncIterator[str]:
    """The URL of a database that does not exist yet; dropped afterwards."""
    parts = urlsplit(settings.database_url)
    name = f"{parts.path.lstrip('/')}_pkg{uuid.uuid4().hex[:8]}"
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@contextlib.contextmanager
def running(command: Path, cwd: Path, env: dict[str, str], log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen([str(command)], cwd=cwd, env=env, stdout=out, stderr=out)
    try:
        yield
    except BaseException as exc:
        exc.add_note(f"--- {command.name} log ---\n{log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def wait_ready(http: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + READY_WITHIN_S
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(url) as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} not ready within {READY_WITHIN_S} s")


async def test_the_installed_commands_migrate_a_new_database_then_serve_a_sale_and_the_console(
    installed: Installed, settings: Settings, tmp_path: Path
) -> None:
    async with fresh_database(settings) as database_url:
        run = dataclasses.replace(
            settings,
            database_url=database_url,
            seckill_embedded_worker=False,  # the API alone: no Kafka needed to be ready
            console_port=free_port(),
            console_ops_port=free_port(),
        )
        env = _env(**settings_env(run))
        env.pop("PYTHONPATH", None)
        boot = await asyncio.create_subprocess_exec(
            installed.command("flashsale-bootstrap"),
            cwd=installed.outside,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(boot.communicate(), 120)
        assert boot.returncode == 0, err.decode()
        applied = re.findall(r"^applied migration (\S+)$", out.decode(), flags=re.M)
        assert sorted(applied) == sorted(
            f"{s}/{p.name}"
            for s in MIGRATING_SERVICES
            for p in (ROOT / "services" / s / "migrations").glob("*.sql")
        )

        seckill, console = (
            installed.command("flashsale-seckill"),
            installed.command("flashsale-console"),
        )
        with (
            running(seckill, installed.outside, env, tmp_path / "seckill.log"),
            running(console, installed.outside, env, tmp_path / "console.log"),
        ):
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                await wait_ready(http, f"http://127.0.0.1:{run.seckill_ops_port}/readyz")
                await wait_ready(http, f"http://127.0.0.1:{run.console_ops_port}/readyz")

                api = f"http://127.0.0.1:{run.seckill_port}/api/seckill"
                admin = {"Authorization": f"Bearer {mint_token(run.jwt_keys(), 'ops', ['admin'])}"}
                async with http.post(
                    f"{api}/admin/activities", json=activity_body(stock=3), headers=admin
                ) as resp:
                    assert resp.status == 201, await resp.text()
                    activity = (await resp.json())["id"]
                shopper = {"Authorization": f"Bearer {mint_token(run.jwt_keys(), 'u1', [])}"}
                # The reservation runs the Lua script the installed package holds.
                async with http.post(
                    f"{api}/activities/{activity}/reservations", headers=shopper
                ) as resp:
                    assert resp.status == 201, await resp.text()
                async with http.post(
                    f"{api}/activities/{activity}/reservations", headers=shopper
                ) as resp:
                    assert resp.status == 409, await resp.text()
                    assert (await resp.json())["error"] == "limit_reached"  # per-user limit 1

                page = f"http://127.0.0.1:{run.console_port}/console/"
                async with http.get(page) as resp:
                    assert resp.status == 200
                    assert resp.content_type == "text/html"
                    html = await resp.text()
                (css,) = re.findall(r'href="(/console/v/[0-9a-f]+/console\.css)"', html)
                async with http.get(f"http://127.0.0.1:{run.console_port}{css}") as resp:
                    assert resp.status == 200
                    assert (
                        await resp.read()
                        == (ROOT / "services/console/static/console.css").read_bytes()
                    )
