"""Prepare the shared infrastructure: create the database, apply migrations, create topics.

Idempotent; `make up` and the test suite run it. Usage: python -m tools.bootstrap
"""

from __future__ import annotations

import asyncio
import sys

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


def main() -> int:
    asyncio.run(bootstrap(Settings.from_env()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
