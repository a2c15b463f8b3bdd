"""The command line of a long-running service: `flashsale-<name>`, or `python -m <module>`.

A service takes no options (every setting is an environment variable, read once into
Settings), but a command that starts a server when asked for --help would surprise an
operator: the parser answers --help and refuses anything else before the service starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from services.common.runner import run

EPILOG = """\
Takes no options: every setting is an environment variable (the README's Configuration
table lists them with their defaults). SIGTERM or SIGINT stops it after the requests in
flight are answered."""


def run_service(
    prog: str,
    description: str | None,
    serve: Callable[[], Coroutine[Any, Any, None]],
    argv: Sequence[str] | None = None,
) -> None:
    """Check the command line, then run `serve` on uvloop until it returns."""
    argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args(argv)
    run(serve)
