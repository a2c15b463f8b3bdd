"""The local PostgreSQL of the dev stack: used when something answers at DATABASE_URL,
otherwise a private cluster in .run/pg/ (trust authentication, user postgres), made with
the installed PostgreSQL's initdb and run with its pg_ctl. The Debian package
`postgresql` is installed when missing and root; its own cluster is left alone.

initdb and postgres refuse to run as root: as root, the cluster belongs to the `postgres`
system user the package creates, and its commands run as that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import stat
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

from services.common.settings import Settings
from tools.processes import (
    INFRA_TIMEOUT,
    PIDS,
    RUN,
    DevstackError,
    Endpoint,
    StatusLine,
    apt_install,
    is_root,
    probe,
    process_alive,
    rel,
    run_logged,
    status_line,
    stop_processes,
    tcp_open,
    tracked_pid,
    wait_until,
    write_pid,
)

PG_DIR = RUN / "pg"
DATA = PG_DIR / "data"
SERVER_LOG = PG_DIR / "postgres.log"
NAME = "postgres"
# The postmaster's command line carries its data directory: `postgres -D <DATA> ...`.
MARKER = str(DATA)
OWNER = "postgres"


def endpoint(s: Settings) -> Endpoint:
    parts = urlsplit(s.database_url)
    return Endpoint(parts.hostname or "127.0.0.1", parts.port or 5432)


def admin_url(s: Settings) -> str:
    """The same server, `postgres` database: it exists before bootstrap creates ours."""
    return urlunsplit(urlsplit(s.database_url)._replace(path="/postgres"))


def connect(url: str) -> str | None:
    """None if a real connection to PostgreSQL at `url` succeeds, else the reason."""
    import asyncpg  # imported late: `down` must work without the third-party packages

    async def attempt() -> None:
        conn = await asyncpg.connect(url, timeout=3)
        await conn.close()

    return probe(attempt)


def ready(s: Settings) -> Callable[[], str | None]:
    ep, url = endpoint(s), admin_url(s)
    return lambda: connect(url) if tcp_open(ep) else "not listening"


def pg_bin(tool: str) -> str | None:
    """The newest installed PostgreSQL's `tool` (Debian keeps them off PATH)."""
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{tool}")
    candidates.sort(key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
    return candidates[-1] if candidates else shutil.which(tool)


def as_owner(argv: Sequence[str]) -> list[str]:
    """Run as the cluster's owner: the `postgres` user when we are root, else ourselves."""
    if not is_root():
        return list(argv)
    return ["runuser", "-u", OWNER, "--", *argv]


def up(s: Settings) -> None:
    ep = endpoint(s)
    ours = tracked_pid(NAME, MARKER)
    if tcp_open(ep):
        problem = connect(admin_url(s))
        if problem and ours is None:
            raise DevstackError(
                f"postgres: something answers at {ep} but connecting as in DATABASE_URL "
                f"fails: {problem}"
            )
        if problem:
            wait_until("postgres", ready(s), SERVER_LOG, INFRA_TIMEOUT)
        how = (
            f"started by devstack, pid {ours}"
            if ours
            else "already running, not started by devstack"
        )
        print(f"postgres: using {ep} ({how})")
        return
    if ours is not None:  # our cluster, still starting or recovering
        wait_until("postgres", ready(s), SERVER_LOG, INFRA_TIMEOUT)
        print(f"postgres: using {ep} (started by devstack, pid {ours})")
        return
    start_private_cluster(s, ep)


def start_private_cluster(s: Settings, ep: Endpoint) -> None:
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if (initdb is None or pg_ctl is None) and is_root():
        apt_install("postgresql")
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise DevstackError(
            f"postgres: nothing answers at {ep} and initdb/pg_ctl were not found; "
            "install PostgreSQL or set DATABASE_URL"
        )
    PG_DIR.mkdir(parents=True, exist_ok=True)
    if is_root():
        try:
            owner = pwd.getpwnam(OWNER)
        except KeyError as exc:
            raise DevstackError(f"postgres: no `{OWNER}` user to run the cluster as") from exc
        os.chown(PG_DIR, owner.pw_uid, owner.pw_gid)
        let_owner_through(owner)
    if not (DATA / "PG_VERSION").exists():
        shutil.rmtree(DATA, ignore_errors=True)
        run_logged(
            NAME,
            as_owner([initdb, "-D", str(DATA), "--auth=trust", "-U", "postgres", "-E", "UTF8"]),
        )
    # A flash sale opens hundreds of connections at once across the services' pools.
    options = f"-p {ep.port} -k /tmp -c listen_addresses={ep.host} -c max_connections=300"
    # -W: we do our own waiting, with a real connection instead of pg_ctl's.
    run_logged(
        NAME,
        as_owner([pg_ctl, "-D", str(DATA), "-o", options, "-l", str(SERVER_LOG), "-W", "start"]),
    )
    wait_until("postgres", ready(s), SERVER_LOG, INFRA_TIMEOUT)
    try:
        pid = int((DATA / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError) as exc:
        raise DevstackError(
            f"postgres: started but {rel(DATA)}/postmaster.pid is unreadable"
        ) from exc
    write_pid(NAME, pid)
    print(f"postgres: started a private cluster in {rel(DATA)} at {ep} (pid {pid})")


def let_owner_through(owner: pwd.struct_passwd) -> None:
    """The postgres user must reach .run/pg through every folder above it. A checkout in
    a private folder (mode 700, as mktemp -d makes) stops it: add the search bit for
    others (no read bit) where it is missing, and say so."""
    for folder in reversed(PG_DIR.parents):
        mode = folder.stat().st_mode
        if folder.stat().st_uid != owner.pw_uid and not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)
            print(f"postgres: allowed others to pass through {folder} (o+x) to reach {rel(PG_DIR)}")


# Names a Debian package cluster ("<version> <name>") a devstack started instead of its
# own in .run/pg: `down` stops it and removes the marker.
LEGACY_CLUSTER_MARKER = PIDS / "postgresql.cluster"


def down_legacy_cluster() -> None:
    """Stop the Debian cluster LEGACY_CLUSTER_MARKER names, if any."""
    try:
        version, name = LEGACY_CLUSTER_MARKER.read_text().split()[:2]
    except (OSError, ValueError):
        return
    try:
        run_logged(NAME, ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "stop"])
        print(f"postgres: stopped the Debian cluster {version}/{name} an earlier devstack started")
    except (DevstackError, OSError) as exc:
        print(f"postgres: {exc}")
    LEGACY_CLUSTER_MARKER.unlink(missing_ok=True)


def down() -> None:
    down_legacy_cluster()
    pid = tracked_pid(NAME, MARKER)
    if pid is None:
        return
    pg_ctl = pg_bin("pg_ctl")
    if pg_ctl is not None:  # a clean shutdown first; signals only if that fails
        try:
            run_logged(NAME, as_owner([pg_ctl, "-D", str(DATA), "-m", "fast", "-w", "stop"]))
        except DevstackError as exc:
            print(f"postgres: {exc}")
    if process_alive(pid):
        stop_processes([(NAME, MARKER)])
    else:
        print(f"postgres: stopped (pid {pid})")
        tracked_pid(NAME, MARKER)  # removes the stale pid file


def status(s: Settings) -> StatusLine:
    return status_line("postgres", endpoint(s), tracked_pid(NAME, MARKER))
