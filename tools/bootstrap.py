"""Prepare the shared infrastructure: create the database, apply migrations, create topics.

Idempotent; `make up`, the test suite and the pods' init container run it. Usage:
flashsale-bootstrap or python -m tools.bootstrap (settings from the environment).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from services.common.kafka import ensure_topics
from services.common.migrations import ensure_database, migrate
from services.common.settings import Settings


async def bootstrap(settings: Settings) -> None:
    if await ensure_database(settings.database_url):
        print(f"created database {settings.database_url.rsplit('/', 1)[-1]}")
    for name in await migrate(settings.database_url):
        print(f"applied migration {name}")
    for topic in await ensure_topics(settings):
        print(f"created topic {topic}")


def main(argv: Sequence[str] | None = None) -> int:
    # No options; a parser still answers --help instead of migrating a database.
    argparse.ArgumentParser(
        prog="flashsale-bootstrap",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args(argv)
    asyncio.run(bootstrap(Settings.from_env()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
