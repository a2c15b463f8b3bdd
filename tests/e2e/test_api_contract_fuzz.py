"""Schemathesis against the real services: every operation of every service's OpenAPI
document, with valid and invalid data, and stateful runs that follow the documents'
links (create activity -> reserve -> reservation -> order; create campaign -> open group
-> join; login -> refresh, logout). Every answer must be documented: no 5xx, a documented
status, media type, body and headers.

The services run as real processes (`python -m services.<name>`) on the real Redis,
PostgreSQL and broker, the identity service with the fake WeChat provider. Schemathesis
reads one document merged from all of them (what each serves, plus the links that cross
services) and sends each operation to the service that owns it. The run is bounded and
reproducible: a fixed seed, derandomized generation, MAX_EXAMPLES per operation and
phase. A finding fails the test with schemathesis's report: the check, the answer and a
curl command that reproduces it (docs/api.md, "Fuzzing the contract").
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import hypothesis
import orjson
import pytest
import requests
import schemathesis
from schemathesis import Case
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.stateful.state_machine import StepInput, StepOutput

from services.common.auth import mint_token
from services.common.kafka import delete_topics, ensure_topics
from services.common.openapi.spec import BEARER, build_document
from services.common.settings import Settings
from services.order.payments import SIGNATURE_HEADER, sign
from tests.child_process import ChildProcess
from tests.e2e.processes import ROOT, ServiceProcess
from tests.helpers import (
    activity_body,
    campaign_body,
    free_port,
    reset_stores,
    settings_env,
    template_body,
)
from tools.openapi import SERVICES

pytestmark = pytest.mark.slow

# Per operation and phase (examples, coverage, fuzzing): enough to reach every parameter's
# bounds and types, few enough that the whole run stays within minutes on two cores.
MAX_EXAMPLES = 15
# Stateful suites, scenarios per suite and their length: each scenario starts anywhere
# and follows the links of the answers it gets.
STATEFUL_EXAMPLES = 30
STATEFUL_SUITES = 4
STATEFUL_MAX_STEPS = 8
SEED = 14
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "ignored_auth",
    "missing_required_header",
    "unsupported_method",
)
PAYMENT_CALLBACK = "/api/payments/callback"


@dataclasses.dataclass
class Stack:
    """The running services and what the fuzzer needs to call them."""

    settings: Settings
    # path template -> base URL of the service that routes it
    base_urls: dict[str, str]
    # examples run, by (phase, generation mode); stateful steps
    counts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    def base_url(self, case: Case) -> str:
        return self.base_urls[case.operation.path]

    def call_kwargs(self, case: Case) -> dict[str, Any]:
        """base_url, and for the payment callback in positive mode a body signed as the
        provider signs it (schemathesis cannot compute the HMAC): so that valid callbacks
        reach the handler, not only the signature check."""
        kwargs: dict[str, Any] = {"base_url": self.base_url(case)}
        if case.operation.path == PAYMENT_CALLBACK and _mode(case) == "positive":
            raw = orjson.dumps(case.body) if case.body is not None else b""
            signature = sign(self.settings.payment_webhook_secret, int(time.time()), raw)
            kwargs["data"] = raw
            kwargs["headers"] = {SIGNATURE_HEADER: signature, "Content-Type": "application/json"}
            self.counts["signed payment callbacks"] += 1
        return kwargs

    def count(self, case: Case, where: str) -> None:
        self.counts[f"{where} {_phase(case)} {_mode(case)}"] += 1


def _mode(case: Case) -> str:
    meta = case.meta
    return str(meta.generation.mode.value) if meta is not None else "explicit"


def _phase(case: Case) -> str:
    meta = case.meta
    return str(meta.phase.name.value) if meta is not None else "explicit"


def fuzz_document() -> dict[str, Any]:
    """Every service's operations in one document, as each serves them (build_document
    without the gateway's answers), keeping the links that cross services."""
    return build_document(
        list(SERVICES.values()),
        title="Flash-sale platform: services",
        description="Every service's operations, for the contract fuzzer.",
    )


def fuzz_config() -> SchemathesisConfig:
    checks: dict[str, Any] = {"enabled": False}
    checks.update({name: {"enabled": True} for name in CHECKS})
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "request-timeout": 10,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"stateful": {"max-steps": STATEFUL_MAX_STEPS}},
            "checks": checks,
        }
    )


class FakeWeChatProcess(ChildProcess):
    """python -m tools.fake_wechat: the provider identity's login calls, in its own process
    (the fuzzer's calls are synchronous, so an in-process fake would never answer)."""

    def start(self, settings: Settings) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tools.fake_wechat"],
                cwd=ROOT,
                env=settings_env(settings),
                stdout=out,
                stderr=out,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_tail()
            with contextlib.suppress(requests.ConnectionError):
                requests.get(f"{settings.wechat_api_url}/fake/messages", timeout=2)
                return
            time.sleep(0.1)
        raise AssertionError(f"fake WeChat not ready:\n{self.log_tail()}")


def _fuzz_settings(base: Settings) -> Settings:
    fake_port = free_port()
    ports = {
        f"{name}_{kind}": free_port()
        for name in ("seckill", "order", "groupbuy", "notify", "identity", "console", "coupon")
        for kind in ("port", "ops_port")
    }
    return dataclasses.replace(
        base,
        kafka_topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        instance_id=f"fuzz-{uuid.uuid4().hex[:6]}",
        seckill_worker_ops_port=free_port(),
        fake_wechat_port=fake_port,
        wechat_api_url=f"http://127.0.0.1:{fake_port}",
        **ports,
    )


def _create_sales(settings: Settings, admin: str) -> None:
    """A live activity, campaign and coupon template, so that examples with small ids
    hit real stock and not only 404s."""
    headers = {"Authorization": f"Bearer {admin}"}
    for service, path, body in (
        ("seckill", "/api/seckill/admin/activities", activity_body(stock=1000)),
        ("groupbuy", "/api/groupbuy/admin/campaigns", campaign_body(stock=1000)),
        ("coupon", "/api/coupons/admin/templates", template_body(quantity=1000)),
    ):
        port = getattr(settings, f"{service}_port")
        url = f"http://127.0.0.1:{port}{path}"
        resp = requests.post(url, json=body, headers=headers, timeout=10)
        assert resp.status_code == 201, resp.text


@pytest.fixture(scope="module")
def stack(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = _fuzz_settings(base_settings)
    logs = tmp_path_factory.mktemp("fuzz")

    async def prepare() -> None:
        await reset_stores(settings)
        await ensure_topics(settings, partitions=2)

    asyncio.run(prepare())
    fake = FakeWeChatProcess(logs / "fake_wechat.log")
    names = [spec.tag for spec in SERVICES.values()]
    procs = [
        ServiceProcess(name, settings, getattr(settings, f"{name}_ops_port"), logs / f"{name}.log")
        for name in names
    ]
    try:
        fake.start(settings)
        for proc in procs:
            asyncio.run(proc.start())
        base_urls = {}
        for spec in SERVICES.values():
            url = f"http://127.0.0.1:{getattr(settings, f'{spec.tag}_port')}"
            served = requests.get(f"{url}/api/openapi.json", timeout=10).json()
            # What is fuzzed is what each service serves.
            assert served == spec.document(), spec.tag
            for op in spec.operations:
                base_urls[op.path] = url
        base_urls.setdefault("/api/openapi.json", f"http://127.0.0.1:{settings.seckill_port}")
        assert settings.jwt_keys() == Settings.from_env().jwt_keys()
        _create_sales(settings, mint_token(settings.jwt_keys(), "fuzz-admin", ["admin"]))
        stack = Stack(settings, base_urls)
        yield stack
        print("\ncontract fuzz:", dict(sorted(stack.counts.items())))
    except BaseException as exc:
        for proc in procs:
            exc.add_note(f"--- {proc.name} log (tail) ---\n{proc.log_tail()}")
        raise
    finally:
        for proc in procs:
            proc.stop()
        fake.stop()
        asyncio.run(delete_topics(settings))


def _token(operation: dict[str, Any]) -> str | None:
    """A bearer token for an operation that needs one: a merchant's (admin role) on the
    admin routes, a shopper's on the others; none on the public and signed ones. The keys
    are the ones every service of the run verifies with (tests' settings share them)."""
    if operation.get("security") != [{BEARER: []}]:
        return None
    keys = Settings.from_env().jwt_keys()
    if "x-required-role" in operation:
        return mint_token(keys, "fuzz-admin", ["admin"])
    return mint_token(keys, "fuzz-shopper")


# The document is code (no service needed to read it): loaded at collection, so that
# each operation is a test of its own; the calls go to the services the fixture starts.
schema = schemathesis.openapi.from_dict(fuzz_document(), config=fuzz_config())


@schema.auth(refresh_interval=None)
class Tokens:
    def get(self, case: Case, ctx: Any) -> str | None:
        return _token(ctx.operation.definition.raw)

    def set(self, case: Case, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.parametrize()
def test_every_operation_answers_valid_and_invalid_requests_as_documented(
    case: Case, stack: Stack
) -> None:
    stack.count(case, "examples")
    case.call_and_validate(**stack.call_kwargs(case))


def test_chains_of_calls_through_the_documents_links_answer_as_documented(stack: Stack) -> None:
    """Scenarios start from any operation and go on through the links of its answer:
    the ids passed on are real ones (a created sale, its reservation, its order ...).

    A finding is recorded and the scenarios go on, then all are reported together:
    raising would make Hypothesis replay the scenario to shrink it, and a replay against
    live services does not meet the same state (the stock moved, the ids are new), which
    Hypothesis reports as flaky instead of the finding."""
    findings: dict[tuple[str, str], str] = {}

    class Links(schema.as_state_machine()):  # type: ignore[misc]
        def step(self, input: StepInput) -> StepOutput:
            link = input.transition
            if link is not None and not link.is_inferred and input.applied_parameters:
                stack.counts[f"link {link.id}"] += 1
            try:
                return super().step(input)  # type: ignore[no-any-return]
            except Exception as exc:  # a call that got no answer at all, ...
                curl = input.case.as_curl_command()
                findings.setdefault(
                    (input.case.operation.label, type(exc).__name__), f"{exc!r}\n    {curl}"
                )
                # Rejected, not raised: the same reason as for the failures below.
                hypothesis.reject()

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            stack.counts["stateful steps"] += 1
            stack.count(case, "stateful")
            return stack.call_kwargs(case)

        def validate_response(
            self, response: Any, case: Case, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            try:
                super().validate_response(response, case, additional_checks, **kwargs)
            except FailureGroup as group:
                for failure in group.exceptions:
                    findings.setdefault((case.operation.label, failure.title), str(group))

    # Only the generate phase: no replay, no shrinking (see above). A scenario whose
    # next draw depends on an answer that differed from an earlier one makes Hypothesis
    # stop with Flaky; schemathesis's own runner then starts a new suite, and so does this.
    settings = hypothesis.settings(
        phases=[hypothesis.Phase.generate],
        max_examples=STATEFUL_EXAMPLES,
        stateful_step_count=STATEFUL_MAX_STEPS,
        database=None,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    for suite in range(STATEFUL_SUITES):
        try:
            hypothesis.seed(SEED + suite)(Links).run(settings=settings)
        except hypothesis.errors.Flaky:
            stack.counts["stateful suites cut short (flaky generation)"] += 1
    assert not findings, "\n".join(
        [f"{len(findings)} findings in stateful runs:", *findings.values()]
    )
    assert stack.counts["stateful steps"] > 0


def test_the_fuzz_run_covered_every_operation(stack: Stack) -> None:
    operations = {result.ok().label for result in schema.get_all_operations()}
    routes = {
        f"{op.method.upper()} {op.path}" for spec in SERVICES.values() for op in spec.operations
    }
    assert operations == routes | {"GET /api/openapi.json"}
    assert stack.counts, "no example ran"
