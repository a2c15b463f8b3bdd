"""Errors that carry their own HTTP meaning; raised by domain code and mapped in http.py."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A refusal the caller should see: status code, machine code and a human message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra


class ValidationError(DomainError):
    """Bad input: 400 naming the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(400, "invalid_request", f"{field}: {message}", field=field)
        self.field = field


class NotFound(DomainError):
    def __init__(self, what: str) -> None:
        super().__init__(404, "not_found", f"{what} not found")


class OutcomeUnknown(DomainError):
    """A state-changing call whose reply never came (Redis timed out or the connection
    broke mid-call): it may have been applied. Answered 503 with where to look, never a
    blind 500: the caller learns the truth from `check` instead of guessing."""

    def __init__(self, check: str, **ids: Any) -> None:
        super().__init__(
            503,
            "outcome_unknown",
            f"the request may or may not have been applied; GET {check} tells which "
            "(a 404 there means it was not)",
            check=check,
            **ids,
        )


class RedisUnavailable(DomainError):
    """Redis could not be asked (unreachable, loading its data, not answering): 503 with
    Retry-After. One second, like the gateway's own 503: a shopper's retry stays within a
    sale's opening seconds without hammering a Redis that is coming back."""

    RETRY_AFTER_SECONDS = 1

    def __init__(self, message: str) -> None:
        super().__init__(
            503, "redis_unavailable", message, {"Retry-After": str(self.RETRY_AFTER_SECONDS)}
        )
