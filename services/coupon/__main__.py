"""The coupon service: templates, claim rushes, the record of issued coupons.

`flashsale-coupon` or `python -m services.coupon`; --help for its usage.
"""

from __future__ import annotations

from services.common.cli import run_service
from services.common.logs import configure_logging
from services.common.runner import serve
from services.common.settings import Settings
from services.coupon.app import create_app, create_ops


async def run_forever() -> None:
    settings = Settings.from_env()
    configure_logging("coupon", settings.log_level)
    api = create_app(settings)
    await serve(
        [(api, settings.coupon_port), (create_ops(api), settings.coupon_ops_port)],
        settings,
    )


def main() -> None:
    run_service("flashsale-coupon", __doc__, run_forever)


if __name__ == "__main__":
    main()
