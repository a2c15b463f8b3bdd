"""A fake of the WeChat server API the platform calls, for local runs and tests.

One aiohttp process serves the three calls, shaped like the real ones:
- GET  /sns/jscode2session?appid&secret&js_code&grant_type=authorization_code (code2Session)
  -> {"openid", "session_key", "unionid"} or {"errcode", "errmsg"}, as text/plain like the
  real one. A code is "<who>.<nonce>": the openid depends on the appid and <who> only, so
  one shopper logging in again with a new code keeps the openid. A code is single use
  (40163 the second time); a code starting with "invalid" is unknown (40029).
- POST /cgi-bin/stable_token {"grant_type": "client_credential", "appid", "secret",
  "force_refresh"} -> {"access_token", "expires_in"}. A forced refresh issues a new token
  and retires the previous one.
- POST /cgi-bin/message/subscribe/send?access_token=... -> {"errcode": 0, "errmsg": "ok"};
  an unknown, retired or expired token gets 40001.
- GET  /fake/messages[?touser=] -> {"accepted": [...]}: what it accepted (demo, e2e tests).

`make up` runs it (`python -m tools.fake_wechat`, on FAKE_WECHAT_PORT, with WECHAT_APPID and
WECHAT_SECRET); tests run it in-process with `running_fake_wechat()` and steer it through
the FakeWeChat fields.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.common.settings import Settings
from services.notify.channels import SEND_PATH

CODE2SESSION_PATH = "/sns/jscode2session"
STABLE_TOKEN_PATH = "/cgi-bin/stable_token"

MESSAGES_PATH = "/fake/messages"
# A token every fake accepts, for tests that configure notify with a static token.
STATIC_TOKEN = "test-access-token"


def openid_for(appid: str, who: str) -> str:
    """The openid the fake gives <who> under appid: 28 characters, like the real ones."""
    digest = hashlib.sha256(f"{appid}:{who}".encode()).digest()
    return "o" + base64.urlsafe_b64encode(digest).decode()[:27]


def unionid_for(who: str) -> str:
    digest = hashlib.sha256(f"union:{who}".encode()).digest()
    return "u" + base64.urlsafe_b64encode(digest).decode()[:27]


def code_for(who: str) -> str:
    """A fresh login code for <who>, as wx.login() would give the mini-program."""
    return f"{who}.{secrets.token_urlsafe(8)}"


@dataclass
class FakeWeChat:
    """The provider's state and the knobs tests turn.

    Login: login_errcode answers every code2Session with that errcode (45011 rate limit,
    -1 busy); login_delay_seconds delays each answer (a slow provider); with_unionid adds a
    unionid. Tokens: token_ttl_seconds is the life of an issued access_token. Sends, per
    touser: fail_times[u] = n answers errcode -1 n times, then succeeds; errcode[u] = c
    always answers c; users in `hang` get no answer until release(); after accept_limit
    acceptances every send is held like a stalling provider (release() answers 503).
    """

    appid: str
    secret: str
    with_unionid: bool = True
    login_errcode: int | None = None
    login_delay_seconds: float = 0.0
    token_ttl_seconds: int = 7200
    logins: Counter[str] = field(default_factory=Counter)
    used_codes: set[str] = field(default_factory=set)
    token_fetches: int = 0
    # access_token -> expiry (epoch seconds); STATIC_TOKEN never expires.
    tokens: dict[str, float] = field(default_factory=lambda: {STATIC_TOKEN: float("inf")})
    current_token: str | None = None
    accepted: list[dict[str, Any]] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    fail_times: dict[str, int] = field(default_factory=dict)
    errcode: dict[str, int] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)
    accept_limit: int | None = None
    held: int = 0
    bad_token: int = 0
    url: str = ""
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    def accepted_by_user(self) -> Counter[str]:
        return Counter(b["touser"] for b in self.accepted)

    def duplicates(self) -> list[Any]:
        seen = Counter(orjson.dumps(b, option=orjson.OPT_SORT_KEYS) for b in self.accepted)
        return [k for k, n in seen.items() if n > 1]

    def release(self) -> None:
        self._release.set()

    def revoke_tokens(self) -> None:
        """Every issued access_token becomes invalid (as after a fetch elsewhere)."""
        self.tokens = {t: 0.0 for t in self.tokens if t != STATIC_TOKEN}

    def token_valid(self, token: str) -> bool:
        return self.tokens.get(token, 0.0) > time.time()

    # code2Session
    async def code2session(self, request: web.Request) -> web.Response:
        q = request.query
        if self.login_delay_seconds:
            await asyncio.sleep(self.login_delay_seconds)
        if q.get("grant_type") != "authorization_code":
            return _plain({"errcode": 40002, "errmsg": "invalid grant_type"})
        if q.get("appid") != self.appid:
            return _plain({"errcode": 40013, "errmsg": "invalid appid"})
        if q.get("secret") != self.secret:
            return _plain({"errcode": 40125, "errmsg": "invalid appsecret"})
        code = q.get("js_code", "")
        if not code:
            return _plain({"errcode": 41008, "errmsg": "missing code"})
        if self.login_errcode is not None:
            return _plain({"errcode": self.login_errcode, "errmsg": "refused by the fake"})
        if code.startswith("invalid") or len(code) > 256:
            return _plain({"errcode": 40029, "errmsg": "invalid code"})
        if code in self.used_codes:
            return _plain({"errcode": 40163, "errmsg": "code been used"})
        self.used_codes.add(code)
        who = code.rsplit(".", 1)[0] if "." in code else code
        openid = openid_for(self.appid, who)
        self.logins[openid] += 1
        answer = {"openid": openid, "session_key": secrets.token_urlsafe(16)}
        if self.with_unionid:
            answer["unionid"] = unionid_for(who)
        return _plain(answer)

    # stable_token
    async def stable_token(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.json_response({"errcode": 47001, "errmsg": "data format error"})
        if not isinstance(body, dict) or body.get("grant_type") != "client_credential":
            return web.json_response({"errcode": 40002, "errmsg": "invalid grant_type"})
        if body.get("appid") != self.appid:
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        if body.get("secret") != self.secret:
            return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"})
        self.token_fetches += 1
        now = time.time()
        current = self.current_token
        if body.get("force_refresh") or current is None or not self.token_valid(current):
            if current is not None:
                self.tokens[current] = 0.0
            current = f"fake-token-{next(self._serial)}-{secrets.token_hex(6)}"
            self.tokens[current] = now + self.token_ttl_seconds
            self.current_token = current
        expires_in = int(self.tokens[current] - now)
        return web.json_response({"access_token": current, "expires_in": expires_in})

    # subscribe-message send
    async def send(self, request: web.Request) -> web.Response:
        if not self.token_valid(request.query.get("access_token", "")):
            self.bad_token += 1
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        body = orjson.loads(await request.read())
        user = body["touser"]
        self.requests[user] += 1
        if user in self.hang or (
            self.accept_limit is not None and len(self.accepted) >= self.accept_limit
        ):
            self.held += 1
            await self._release.wait()
            return web.json_response({"errcode": -1, "errmsg": "released"}, status=503)
        if user in self.errcode:
            return web.json_response({"errcode": self.errcode[user], "errmsg": "refused"})
        if self.fail_times.get(user, 0) > 0:
            self.fail_times[user] -= 1
            return web.json_response({"errcode": -1, "errmsg": "system busy"})
        self.accepted.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def messages(self, request: web.Request) -> web.Response:
        touser = request.query.get("touser")
        found = [b for b in self.accepted if touser is None or b["touser"] == touser]
        return web.json_response({"accepted": found})


def _plain(body: dict[str, Any]) -> web.Response:
    # The real code2Session answers JSON labelled text/plain: clients must not insist on
    # application/json.
    return web.Response(body=orjson.dumps(body), content_type="text/plain")


def create_app(fake: FakeWeChat) -> web.Application:
    app = web.Application()
    app.router.add_get(CODE2SESSION_PATH, fake.code2session)
    app.router.add_post(STABLE_TOKEN_PATH, fake.stable_token)
    app.router.add_post(SEND_PATH, fake.send)
    app.router.add_get(MESSAGES_PATH, fake.messages)
    return app


@contextlib.asynccontextmanager
async def running_fake_wechat(
    appid: str = "wx-test-appid", secret: str = "test-app-secret"
) -> AsyncIterator[FakeWeChat]:
    """A fake on a free loopback port; its url is set once it listens."""
    fake = FakeWeChat(appid=appid, secret=secret)
    server = TestServer(create_app(fake), host="127.0.0.1")
    await server.start_server()
    fake.url = f"http://127.0.0.1:{server.port}"
    try:
        yield fake
    finally:
        fake.release()
        await asyncio.sleep(0.05)
        await server.close()


def main() -> None:
    settings = Settings.from_env()
    fake = FakeWeChat(appid=settings.wechat_appid, secret=settings.wechat_secret)
    web.run_app(
        create_app(fake),
        host=settings.http_host,
        port=settings.fake_wechat_port,
        print=lambda _: None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
