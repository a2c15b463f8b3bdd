"""The group-buy service: campaigns, opening and joining groups, their completion or
expiry.

`flashsale-groupbuy` or `python -m services.groupbuy`; --help for its usage.
"""

from __future__ import annotations

from services.common.cli import run_service
from services.common.logs import configure_logging
from services.common.runner import serve
from services.common.settings import Settings
from services.groupbuy.app import create_app, create_ops


async def run_forever() -> None:
    settings = Settings.from_env()
    configure_logging("groupbuy", settings.log_level)
    api = create_app(settings)
    await serve(
        [(api, settings.groupbuy_port), (create_ops(api), settings.groupbuy_ops_port)],
        settings,
    )


def main() -> None:
    run_service("flashsale-groupbuy", __doc__, run_forever)


if __name__ == "__main__":
    main()
