"""The order service: an order per reservation, payment callbacks, cancellations and
unpaid timeouts.

`flashsale-order` or `python -m services.order`; --help for its usage.
"""

from __future__ import annotations

from services.common.cli import run_service
from services.common.logs import configure_logging
from services.common.runner import serve
from services.common.settings import Settings
from services.order.app import create_app, create_ops


async def run_forever() -> None:
    settings = Settings.from_env()
    configure_logging("order", settings.log_level)
    api = create_app(settings)
    await serve([(api, settings.order_port), (create_ops(api), settings.order_ops_port)], settings)


def main() -> None:
    run_service("flashsale-order", __doc__, run_forever)


if __name__ == "__main__":
    main()
