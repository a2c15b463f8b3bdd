"""The seckill API: activities, reservations (one Redis Lua script per press) and the
merchant routes; its background work too unless SECKILL_EMBEDDED_WORKER is false.

`flashsale-seckill` or `python -m services.seckill`; --help for its usage.
"""

from __future__ import annotations

from services.common.cli import run_service
from services.common.logs import configure_logging
from services.common.runner import serve
from services.common.settings import Settings
from services.seckill.app import create_app, create_ops


async def run_forever() -> None:
    settings = Settings.from_env()
    configure_logging("seckill", settings.log_level)
    api = create_app(settings)
    await serve(
        [(api, settings.seckill_port), (create_ops(api), settings.seckill_ops_port)],
        settings,
    )


def main() -> None:
    run_service("flashsale-seckill", __doc__, run_forever)


if __name__ == "__main__":
    main()
