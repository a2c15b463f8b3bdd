"""The two comparison servers of the benchmark, each run as its own process on uvloop,
like the services:

    python -m loadtest.bench.servers hello PORT       # the framework's floor
    python -m loadtest.bench.servers naive PORT       # what a typical shop would write

`hello`: a plain aiohttp JSON endpoint, no auth, no I/O: the most any aiohttp handler
can do on this machine. `naive`: the same request as the reservation endpoint (JWT
checked, JSON body parsed) answered by PostgreSQL alone: in one transaction,
`UPDATE ... SET stock = stock - n WHERE stock >= n` on the sale's row, then the
reservation row is inserted. Honest, not crippled: a pool of connections, prepared
statements (asyncpg caches them), one round trip per statement; it checks no per-user
limit, no rate limit and writes no outbox, so it does less than the Lua script.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from services.common.errors import DomainError
from services.common.http import (
    HttpMetrics,
    auth_middleware,
    errors_and_metrics_middleware,
    json_response,
    principal,
    read_json_object,
)
from services.common.settings import Settings
from services.seckill.domain import parse_quantity

NAIVE_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE IF NOT EXISTS bench.naive_stock (
    activity_id bigint PRIMARY KEY,
    stock       integer NOT NULL CHECK (stock >= 0)
);
CREATE TABLE IF NOT EXISTS bench.naive_reservations (
    id          uuid        PRIMARY KEY,
    activity_id bigint      NOT NULL,
    user_id     text        NOT NULL,
    quantity    integer     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
"""
TAKE_STOCK = """
UPDATE bench.naive_stock SET stock = stock - $2 WHERE activity_id = $1 AND stock >= $2
RETURNING stock
"""
INSERT_RESERVATION = """
INSERT INTO bench.naive_reservations (id, activity_id, user_id, quantity) VALUES ($1, $2, $3, $4)
"""
POOL_SIZE = 20
POOL: web.AppKey[asyncpg.Pool] = web.AppKey("pool", asyncpg.Pool)


async def hello(_: web.Request) -> web.Response:
    return web.json_response({"hello": "world"})


def hello_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/hello", hello)
    return app


async def naive_reserve(request: web.Request) -> web.Response:
    activity_id = int(request.match_info["id"])
    user = principal(request).user_id
    quantity = parse_quantity(await read_json_object(request))
    rid = uuid.uuid4()
    async with request.app[POOL].acquire() as conn, conn.transaction():
        left = await conn.fetchval(TAKE_STOCK, activity_id, quantity)
        if left is None:
            raise DomainError(410, "sold_out", "sold out")
        await conn.execute(INSERT_RESERVATION, rid, activity_id, user, quantity)
    return json_response({"reservation_id": str(rid), "quantity": quantity}, 201)


def naive_app(settings: Settings) -> web.Application:
    from prometheus_client import CollectorRegistry

    app = web.Application(
        middlewares=[
            errors_and_metrics_middleware(HttpMetrics(CollectorRegistry())),
            auth_middleware(settings.jwt_keys()),
        ]
    )

    async def pool(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await asyncpg.create_pool(
            settings.database_url, min_size=POOL_SIZE, max_size=POOL_SIZE
        )
        yield
        await app[POOL].close()

    app.cleanup_ctx.append(pool)
    app.router.add_post("/api/naive/activities/{id}/reservations", naive_reserve)
    return app


async def serve(app: web.Application, host: str, port: int, backlog: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # The services' listen backlog, so that the comparison is of handlers, not queues.
    await web.TCPSite(runner, host, port, backlog=backlog).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on {host}:{port}", flush=True)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str]) -> int:
    import uvloop

    if len(argv) != 2 or argv[0] not in ("hello", "naive"):
        print("usage: python -m loadtest.bench.servers hello|naive PORT", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    app = hello_app() if argv[0] == "hello" else naive_app(settings)
    uvloop.run(serve(app, settings.http_host, int(argv[1]), settings.http_listen_backlog))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
