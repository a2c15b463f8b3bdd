"""python -m services.console"""

from __future__ import annotations

from services.common.logs import configure_logging
from services.common.runner import run, serve
from services.common.settings import Settings
from services.console.app import create_app, create_ops


async def main() -> None:
    settings = Settings.from_env()
    configure_logging("console", settings.log_level)
    api = create_app(settings)
    await serve(
        [(api, settings.console_port), (create_ops(api), settings.console_ops_port)],
        settings,
    )


if __name__ == "__main__":
    run(main)
