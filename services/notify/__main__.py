"""python -m services.notify"""

from __future__ import annotations

from services.common.logs import configure_logging
from services.common.runner import run, serve
from services.common.settings import Settings
from services.notify.app import create_app, create_ops


async def main() -> None:
    settings = Settings.from_env()
    configure_logging("notify", settings.log_level)
    api = create_app(settings)
    await serve(
        [(api, settings.notify_port), (create_ops(api), settings.notify_ops_port)],
        settings,
    )


if __name__ == "__main__":
    run(main)
