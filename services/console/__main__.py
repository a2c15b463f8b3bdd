"""The merchant console's pages, served on the admin side only.

`flashsale-console` or `python -m services.console`; --help for its usage.
"""

from __future__ import annotations

from services.common.cli import run_service
from services.common.logs import configure_logging
from services.common.runner import serve
from services.common.settings import Settings
from services.console.app import create_app, create_ops


async def run_forever() -> None:
    settings = Settings.from_env()
    configure_logging("console", settings.log_level)
    api = create_app(settings)
    await serve(
        [(api, settings.console_port), (create_ops(api), settings.console_ops_port)],
        settings,
    )


def main() -> None:
    run_service("flashsale-console", __doc__, run_forever)


if __name__ == "__main__":
    main()
