"""The identity service: mini-program logins, refresh tokens, merchant logins and
signing keys.

`flashsale-identity` or `python -m services.identity`; --help for its usage.
"""

from __future__ import annotations

from services.common.cli import run_service
from services.common.logs import configure_logging
from services.common.runner import serve
from services.common.settings import Settings
from services.identity.app import create_app, create_ops


async def run_forever() -> None:
    settings = Settings.from_env()
    configure_logging("identity", settings.log_level)
    api = create_app(settings)
    await serve(
        [(api, settings.identity_port), (create_ops(api), settings.identity_ops_port)],
        settings,
    )


def main() -> None:
    run_service("flashsale-identity", __doc__, run_forever)


if __name__ == "__main__":
    main()
