"""Merchant accounts from the terminal (`make admin-user NAME=alice` runs `create`).

    python -m services.identity.admin create NAME [--role admin|operator|viewer ...]
    python -m services.identity.admin set-password NAME
    python -m services.identity.admin disable NAME | enable NAME
    python -m services.identity.admin unlock NAME | unlock-address ADDRESS
    python -m services.identity.admin list

A password is asked twice on the terminal, or read as one line from standard input with
--password-stdin (scripts); never from the command line, where `ps` and the shell's
history would show it. The database is migrated first, so this works on a fresh one.
Exit 0: done; 1: refused (a weak password, a taken name, an unknown account, PostgreSQL
unreachable), with the reason on stderr; 2: bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import asyncpg

from services.common.auth import ROLES
from services.common.errors import DomainError
from services.common.migrations import migrate
from services.common.resources import pg_pool
from services.common.settings import Settings
from services.identity.merchant_accounts import MerchantAccounts
from services.identity.merchant_repository import Merchant, MerchantRepository
from services.identity.merchants import check_new_name, parse_roles
from services.identity.passwords import Passwords

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2


class Refused(Exception):
    """A command that cannot go on, with the reason to print."""


@dataclass
class Console:
    """Where the command talks: the process's streams, replaced in tests."""

    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    ask: Callable[[str], str] = getpass.getpass
    interactive: bool = field(default_factory=lambda: sys.stdin.isatty())


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m services.identity.admin", description="Merchant accounts."
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = commands.add_parser("create", help="create an account (asks for its password)")
    create.add_argument("name")
    create.add_argument(
        "--role",
        action="append",
        metavar="ROLE",
        help=f"one of {', '.join(ROLES)} (repeat, or comma-separate; default admin)",
    )
    create.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    password = commands.add_parser(
        "set-password", help="a new password; the account's logins are revoked"
    )
    password.add_argument("name")
    password.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    for name, text in (
        ("disable", "no more logins; the account's logins are revoked"),
        ("enable", "allow logins again"),
        ("unlock", "clear the account's failed logins and lock"),
    ):
        commands.add_parser(name, help=text).add_argument("name")
    commands.add_parser(
        "unlock-address", help="clear a client address's failed logins and lock"
    ).add_argument("address")
    commands.add_parser("list", help="every account, its roles and state")
    return top


def read_password(console: Console, from_stdin: bool) -> str:
    if from_stdin:
        line = console.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password.removesuffix("\r")
        if not password:
            raise Refused("no password on standard input")
        return password
    if not console.interactive:
        raise Refused("no terminal to ask the password on: pipe it in with --password-stdin")
    first = console.ask("Password: ")
    if console.ask("Repeat it: ") != first:
        raise Refused("the two passwords differ")
    return first


def state(merchant: Merchant) -> str:
    if merchant.disabled_at is not None:
        return "disabled"
    if merchant.blocked_until is not None:
        return f"locked until {merchant.blocked_until.isoformat(timespec='seconds')}"
    return "active"


def render(merchants: list[Merchant]) -> str:
    rows = [("id", "name", "roles", "state", "last login")]
    for m in merchants:
        last = m.last_login_at.isoformat(timespec="seconds") if m.last_login_at else "never"
        rows.append((str(m.id), m.name, ",".join(m.roles), state(m), last))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


async def execute(args: argparse.Namespace, accounts: MerchantAccounts, console: Console) -> str:
    """Run one parsed command; its report line(s), or Refused / DomainError."""
    command = args.command
    if command == "create":
        check_new_name(args.name)
        roles = parse_roles(part for value in (args.role or ["admin"]) for part in value.split(","))
        password = read_password(console, args.password_stdin)
        merchant = await accounts.create(args.name, password, roles)
        return f"created merchant account {merchant.id} {merchant.name!r}: {', '.join(roles)}"
    if command == "set-password":
        await accounts.existing(args.name)  # before asking for a password
        password = read_password(console, args.password_stdin)
        await accounts.set_password(args.name, password)
        return f"new password for {args.name!r}; its logins are revoked"
    if command == "disable":
        await accounts.disable(args.name)
        return f"disabled {args.name!r}; its logins are revoked"
    if command == "enable":
        await accounts.enable(args.name)
        return f"enabled {args.name!r}"
    if command == "unlock":
        cleared = await accounts.unlock(args.name)
        return f"unlocked {args.name!r}" if cleared else f"{args.name!r} had no failed logins"
    if command == "unlock-address":
        cleared = await accounts.unlock_address(args.address)
        return f"unlocked {args.address}" if cleared else f"{args.address} had no failed logins"
    assert command == "list"
    return render(await accounts.list())


async def run(argv: Sequence[str], settings: Settings, console: Console | None = None) -> int:
    """The command line's exit code; what it did on console.stdout, why not on stderr."""
    console = console or Console()
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage
        return EXIT_USAGE if exc.code else EXIT_OK
    try:
        await migrate(settings.database_url)
        pool = await pg_pool(settings)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"error: cannot use PostgreSQL: {exc}", file=console.stderr)
        return EXIT_REFUSED
    try:
        accounts = MerchantAccounts(MerchantRepository(pool), Passwords(concurrency=1))
        report = await execute(args, accounts, console)
    except (Refused, DomainError) as exc:
        print(f"error: {exc}", file=console.stderr)
        return EXIT_REFUSED
    finally:
        await pool.close()
    print(report, file=console.stdout)
    return EXIT_OK


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    sys.exit(asyncio.run(run(sys.argv[1:], Settings.from_env())))


if __name__ == "__main__":
    main()
