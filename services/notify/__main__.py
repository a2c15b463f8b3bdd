"""The notify service: events to the subscription messages a customer consented to.

`flashsale-notify` or `python -m services.notify`; --help for its usage.
"""

from __future__ import annotations

from services.common.cli import run_service
from services.common.logs import configure_logging
from services.common.runner import serve
from services.common.settings import Settings
from services.notify.app import create_app, create_ops


async def run_forever() -> None:
    settings = Settings.from_env()
    configure_logging("notify", settings.log_level)
    api = create_app(settings)
    await serve(
        [(api, settings.notify_port), (create_ops(api), settings.notify_ops_port)],
        settings,
    )


def main() -> None:
    run_service("flashsale-notify", __doc__, run_forever)


if __name__ == "__main__":
    main()
