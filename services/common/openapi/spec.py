"""OpenAPI 3.1 pieces every service's document shares: the error body, the security
schemes, the answers the shared HTTP edge gives on every route (services/common/http.py),
and an Operation that adds them from what the route is (who may call it, whether it reads
a JSON body, whether it takes an Idempotency-Key). Pure data, no I/O."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from services.common.http import MAX_BODY_BYTES
from services.common.idempotency import IDEMPOTENCY_KEY_HEADER, MAX_KEY_LENGTH
from services.common.openapi.schemas import Schema, integer, obj, ref, string
from services.common.paging import DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET

OPENAPI_VERSION = "3.1.0"
# The version of the HTTP contract (info.version), not of any one service's code.
API_VERSION = "0.1.0"
OPENAPI_PATH = "/api/openapi.json"
# Routes the public gateway never routes (deploy/gateway/nginx.conf.template holds the
# same expression): every /api/<service>/admin/..., the merchant login among them.
ADMIN_PATH = re.compile(r"^/api/[^/]+/admin(/|$)")

BEARER = "bearerAuth"
PAYMENT_SIGNATURE = "paymentSignature"
SECURITY_SCHEMES: dict[str, Schema] = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token of the identity service (HS256, `kid` header): "
        "`POST /api/auth/login` for shoppers, `POST /api/auth/admin/login` for merchants. "
        "`sub` is the caller; merchant tokens carry `roles` (`admin` > `operator` > "
        "`viewer`).",
    },
    PAYMENT_SIGNATURE: {
        "type": "apiKey",
        "in": "header",
        "name": "X-Payment-Signature",
        "description": "`t=<unix seconds>,v1=<hex HMAC-SHA256>` of `<t>.<raw body>` with "
        "the shared PAYMENT_WEBHOOK_SECRET; older than PAYMENT_SIGNATURE_MAX_AGE_SECONDS "
        "is refused.",
    },
}

ERROR: Schema = obj(
    {
        "error": string(pattern="^[a-z][a-z0-9_]*$", description="a stable machine code"),
        "message": string(description="for people: what went wrong and what to do"),
        "field": string(
            description="400 invalid_request: the body field or query parameter at fault"
        ),
    },
    ["error", "message"],
    closed=False,
    description="Every error: {error, message}, plus `field` for bad input and, for some "
    "codes, the ids or figures needed to act on it (`check`, `reserved`, ...).",
)

HEADERS: dict[str, Schema] = {
    "RetryAfter": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "Location": {"description": "Where the new resource is read.", "schema": string()},
    "IdempotentReplayed": {
        "description": "`true` when this is the recorded first answer of the request's "
        "Idempotency-Key (nothing changed now).",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "WWWAuthenticate": {"description": "`Bearer`", "schema": string()},
}

PARAMETERS: dict[str, Schema] = {
    "IdempotencyKey": {
        "name": IDEMPOTENCY_KEY_HEADER,
        "in": "header",
        "required": False,
        "description": "A retry with the same key (scoped per user) gets the first answer "
        "back, same status and body, instead of acting twice (docs/idempotency.md). Send "
        "it once: a repeated header is refused.",
        "schema": string(
            minLength=1, maxLength=MAX_KEY_LENGTH, pattern=f"^[!-~]{{1,{MAX_KEY_LENGTH}}}$"
        ),
    },
}


class Access(Enum):
    """Who may call a route, and so which security and refusals it documents."""

    PUBLIC = "public"  # no credentials
    SHOPPER = "shopper"  # any valid access token
    VIEWER = "viewer"  # a merchant token whose roles grant viewer
    OPERATOR = "operator"  # ... grant operator
    SIGNED = "signed"  # the payment provider's signature header


def header_ref(name: str) -> Schema:
    return {"$ref": f"#/components/headers/{name}"}


def json_answer(
    description: str,
    schema: Schema,
    *,
    headers: Mapping[str, str] | None = None,
    links: Mapping[str, Schema] | None = None,
) -> Schema:
    """A JSON answer; headers: header name -> component name."""
    answer: Schema = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        answer["headers"] = {name: header_ref(component) for name, component in headers.items()}
    if links:
        answer["links"] = dict(links)
    return answer


def event_stream(description: str, figures: Schema) -> Schema:
    """A Server-Sent Events answer (services/common/live.py). The schema is that of one
    event, as OpenAPI 3.2's itemSchema and the SSE-aware tools read it: `event: figures`
    whose data is the JSON of `figures`, or `event: unavailable` whose data is an Error."""
    event = obj(
        {
            "event": {"type": "string", "enum": ["figures", "unavailable"]},
            "data": string(
                contentMediaType="application/json",
                contentSchema={"anyOf": [figures, ref("Error")]},
            ),
            "id": string(),
            "retry": integer(0),
        },
        [],
    )
    return {"description": description, "content": {"text/event-stream": {"schema": event}}}


def no_content(description: str) -> Schema:
    return {"description": description}


def link(
    operation_id: str,
    description: str,
    request_body: Schema | None = None,
    **parameters: str,
) -> Schema:
    """An OpenAPI link: values of this answer ($response.body#/...) feed parameters or
    the body of another operation."""
    found: Schema = {"operationId": operation_id, "description": description}
    if parameters:
        found["parameters"] = parameters
    if request_body is not None:
        found["requestBody"] = request_body
    return found


def path_param(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def query_param(name: str, schema: Schema, description: str, required: bool = False) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


def filter_param(name: str, schema: Schema, description: str) -> Schema:
    """An optional list filter (services/common/paging.py): empty, as an HTML form sends
    a field left blank, is the same as absent (no filter)."""
    return query_param(name, {"anyOf": [schema, {"const": ""}]}, f"{description} (empty: any)")


def paging_parameters() -> list[Schema]:
    """limit and offset of the admin lists (services/common/paging.py)."""
    # Empty is the default, as parse_page reads it (an HTML form's blank field).
    return [
        query_param(
            "limit",
            {"anyOf": [integer(1, MAX_LIMIT), {"const": ""}], "default": DEFAULT_LIMIT},
            "page size (empty: the default)",
        ),
        query_param(
            "offset",
            {"anyOf": [integer(0, MAX_OFFSET), {"const": ""}], "default": 0},
            "items to skip (empty: none)",
        ),
    ]


# The 503s of a route that reads or writes PostgreSQL, Redis or both.
DATABASE_UNAVAILABLE = (
    "`database_unavailable`: PostgreSQL is not reachable, retry after Retry-After"
)
REDIS_UNAVAILABLE = "`redis_unavailable`: Redis is not reachable, retry after Retry-After"
BOTH_UNAVAILABLE = f"{DATABASE_UNAVAILABLE}; {REDIS_UNAVAILABLE}"
UNKNOWN_QUERY = (
    "Unknown query parameters are refused (400 `invalid_request` naming the parameter), "
    "so a misspelt filter never lists everything."
)


def _error(description: str, status: int) -> Schema:
    headers: dict[str, str] = {}
    if status == 401:
        headers = {"WWW-Authenticate": "WWWAuthenticate"}
    elif status in (429, 503):
        headers = {"Retry-After": "RetryAfter"}
    return json_answer(description, ref("Error"), headers=headers)


@dataclass(frozen=True)
class Operation:
    """One route. `answers`: the successes (status -> response object); `errors`: status ->
    the error codes it answers with, as text. The refusals of the shared edge are added
    from the rest: 401/403 from `access`, 400/413/415 from `json_body`, 400 from
    `idempotency_key`, 503 from the document's `unavailable`."""

    method: str
    path: str
    operation_id: str
    summary: str
    access: Access
    answers: Mapping[int, Schema]
    errors: Mapping[int, str] = field(default_factory=dict)
    description: str = ""
    parameters: Sequence[Schema] = ()
    body: Schema | None = None
    body_required: bool = True
    # The body is read by read_json_object (415 for another media type).
    json_body: bool = True
    idempotency_key: bool = False
    # Answered from memory: no database or Redis behind it, so no 503.
    static: bool = False
    # The 503s of this route when they are not the document's (which store it uses).
    unavailable: str | None = None

    @property
    def admin(self) -> bool:
        return bool(ADMIN_PATH.match(self.path))

    def responses(self, unavailable: str, gateway: bool) -> dict[str, Schema]:
        errors: dict[int, list[str]] = {}

        def add(status: int, text: str) -> None:
            errors.setdefault(status, []).append(text)

        for status, text in self.errors.items():
            add(status, text)
        if self.access in (Access.SHOPPER, Access.VIEWER, Access.OPERATOR):
            add(
                401,
                "`unauthorized`: no token, or one that is invalid, expired or signed "
                "with an unknown key",
            )
        if self.access in (Access.VIEWER, Access.OPERATOR):
            add(403, f"`forbidden`: the token's roles do not grant `{self.access.value}`")
        if self.idempotency_key:
            add(400, "`invalid_idempotency_key`: not 1-64 visible ASCII characters, or sent twice")
        if self.body is not None:
            add(
                400,
                "`invalid_json`: the body is not a JSON object; `invalid_request`: a "
                "field is missing, of the wrong type, out of range or unknown (`field` "
                "names it)",
            )
            add(413, f"`payload_too_large`: the body exceeds {MAX_BODY_BYTES} bytes")
            if self.json_body:
                add(
                    415,
                    "`unsupported_media_type`: a body sent as another type than application/json",
                )
        if self.unavailable is not None:
            unavailable = self.unavailable
        if not self.static and unavailable:
            add(503, unavailable)
        if gateway:
            for status, text in GATEWAY_ANSWERS.items():
                add(status, text)
            if self.method in ("post", "put", "patch"):
                add(413, "`payload_too_large` (gateway): a body over GATEWAY_MAX_BODY_BYTES")
        # Copies: a document drops links from its answers (_drop_dangling_links).
        responses = {str(status): copy.deepcopy(answer) for status, answer in self.answers.items()}
        for status, texts in errors.items():
            if str(status) in responses:
                raise ValueError(f"{self.method} {self.path}: {status} is both ok and error")
            responses[str(status)] = _error("; ".join(texts), status)
        return dict(sorted(responses.items()))

    def to_openapi(self, tag: str, unavailable: str, gateway: bool) -> Schema:
        op: Schema = {
            "operationId": self.operation_id,
            "summary": self.summary,
            "tags": [tag],
        }
        if self.description:
            op["description"] = self.description
        if self.access is Access.PUBLIC:
            op["security"] = []
        elif self.access is Access.SIGNED:
            op["security"] = [{PAYMENT_SIGNATURE: []}]
        else:
            op["security"] = [{BEARER: []}]
            if self.access in (Access.VIEWER, Access.OPERATOR):
                op["x-required-role"] = self.access.value
        params = list(self.parameters)
        if self.idempotency_key:
            params.append({"$ref": "#/components/parameters/IdempotencyKey"})
        if params:
            op["parameters"] = params
        if self.body is not None:
            op["requestBody"] = {
                "required": self.body_required,
                "content": {"application/json": {"schema": self.body}},
            }
        op["responses"] = self.responses(unavailable, gateway)
        return op


# What the gateway itself may answer on any route (deploy/gateway/nginx.conf.template).
GATEWAY_ANSWERS = {
    429: "`rate_limited` (gateway): too many requests from this address",
    503: "`unavailable` (gateway): the service could not be reached, nothing was applied; "
    "`outcome_unknown` (gateway): it was sent the request and did not answer",
}

OPENAPI_OPERATION = Operation(
    "get",
    OPENAPI_PATH,
    "get_openapi_document",
    "This API's OpenAPI document",
    Access.PUBLIC,
    {200: json_answer("An OpenAPI 3.1 document.", {"type": "object"})},
    description="A service answers its own document; the gateway answers every service's "
    "operations merged (on the public server: the public ones only).",
    static=True,
)


@dataclass(frozen=True)
class ServiceSpec:
    """One service's part of the contract: its operations and the schemas they name."""

    title: str
    tag: str
    description: str
    operations: Sequence[Operation]
    schemas: Mapping[str, Schema]
    # The 503s every non-static route may answer (which store was unreachable).
    unavailable: str

    def document(self) -> dict[str, Any]:
        """The service's own document (what it serves at OPENAPI_PATH)."""
        return build_document([self], title=self.title, description=self.description)


def build_document(
    specs: Sequence[ServiceSpec],
    *,
    title: str,
    description: str,
    include: Callable[[Operation], bool] = lambda _: True,
    gateway: bool = False,
) -> dict[str, Any]:
    """One document of the `include`d operations of `specs`. gateway: every operation
    also documents what the gateway answers by itself. Links to operations left out and
    schemas nothing names are dropped, so a partial document stands alone."""
    paths: dict[str, dict[str, Schema]] = {}
    schemas: dict[str, Schema] = {"Error": ERROR}
    tags = []
    for spec in specs:
        chosen = [op for op in spec.operations if include(op)]
        if chosen:
            tags.append({"name": spec.tag, "description": spec.title})
        for op in chosen:
            methods = paths.setdefault(op.path, {})
            if op.method in methods:
                raise ValueError(f"{op.method.upper()} {op.path} is described twice")
            methods[op.method] = op.to_openapi(spec.tag, spec.unavailable, gateway)
        for name, schema in spec.schemas.items():
            if schemas.setdefault(name, schema) != schema:
                raise ValueError(f"schema {name} is defined twice, differently")
    paths.setdefault(OPENAPI_PATH, {})["get"] = OPENAPI_OPERATION.to_openapi("openapi", "", gateway)
    tags.append({"name": "openapi", "description": "This document"})
    _drop_dangling_links(paths)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": API_VERSION, "description": description},
        "tags": tags,
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": _referenced(schemas, paths),
            "securitySchemes": SECURITY_SCHEMES,
            "headers": HEADERS,
            "parameters": PARAMETERS,
        },
    }


def _drop_dangling_links(paths: dict[str, dict[str, Schema]]) -> None:
    known = {op["operationId"] for methods in paths.values() for op in methods.values()}
    for methods in paths.values():
        for op in methods.values():
            for answer in op["responses"].values():
                links = answer.get("links")
                if links is None:
                    continue
                kept = {n: v for n, v in links.items() if v["operationId"] in known}
                if kept:
                    answer["links"] = kept
                else:
                    del answer["links"]


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = set()
        target = node.get("$ref")
        if isinstance(target, str) and target.startswith("#/components/schemas/"):
            found.add(target.rpartition("/")[2])
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    return set()


def _referenced(schemas: dict[str, Schema], paths: dict[str, Any]) -> dict[str, Schema]:
    """The schemas the paths name, directly or through other schemas."""
    wanted, todo = set(), _refs(paths)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo |= _refs(schemas[name])
    return {name: schema for name, schema in schemas.items() if name in wanted}
