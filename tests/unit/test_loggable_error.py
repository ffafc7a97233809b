"""LoggableError: an application's own error whose message is safe to log, while any other
exception's message stays out of logs and traces."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tenantscope import (
    LoggableError,
    Reason,
    SqsRecord,
    TenantAuthError,
    api_handler,
    sqs_handler,
)
from tenantscope._credentials import CredentialVendor
from tenantscope._errors import log_reason, without_message
from tenantscope._jwt import JwksCache
from tenantscope.testing import RING, LocalIssuer, signed_sqs_record, sqs_event
from tests.conftest import LambdaContext, http_api_event


class OrderNotFound(LoggableError, LookupError):
    """What an application raises when a message names an order it does not have."""


FOREIGN_SECRET = "card 4111111111111111"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (OrderNotFound("order 42 not found for this tenant"), "order 42 not found for this tenant"),
        (TenantAuthError(Reason.UNKNOWN_KID), "unknown kid"),
        (LookupError(FOREIGN_SECRET), "LookupError"),
        (RuntimeError(FOREIGN_SECRET), "RuntimeError"),
    ],
    ids=["loggable", "tenantscope", "foreign lookup", "foreign runtime"],
)
def test_only_loggable_and_tenantscope_messages_are_a_log_reason(error: Exception, reason: str) -> None:
    assert log_reason(error) == reason


def test_a_loggable_error_is_traced_as_it_is_and_a_foreign_one_without_its_message() -> None:
    loggable = OrderNotFound("order 42 not found for this tenant")
    assert without_message(loggable) is loggable
    foreign = LookupError(FOREIGN_SECRET)
    stand_in = without_message(foreign)
    assert type(stand_in).__name__ == "LookupError" and str(stand_in) == ""


def loggable_raised_from_data() -> OrderNotFound:
    """A loggable error raised while handling one whose message holds data, with a note too."""
    try:
        try:
            raise ValueError(FOREIGN_SECRET)
        except ValueError as cause:
            raise OrderNotFound("order 42 not found for this tenant") from cause
    except OrderNotFound as error:
        error.add_note(f"while reading {FOREIGN_SECRET}")
        return error


def test_a_loggable_error_keeps_its_message_but_not_what_is_chained_to_it() -> None:
    error = loggable_raised_from_data()
    stand_in = without_message(error)
    assert type(stand_in).__name__ == "OrderNotFound"
    assert str(stand_in) == "order 42 not found for this tenant"
    assert stand_in.__traceback__ is error.__traceback__
    assert stand_in.__cause__ is None and stand_in.__context__ is None
    assert not getattr(stand_in, "__notes__", None)
    assert error.__cause__ is not None  # the application's own error is left as it was


def loggable_with_cause_only() -> OrderNotFound:
    """A cause set as ``raise ... from`` sets it, with nothing it was raised while handling."""
    error = OrderNotFound("order 42 not found for this tenant")
    error.__cause__ = ValueError(FOREIGN_SECRET)
    return error


def loggable_raised_while_handling() -> OrderNotFound:
    """Raised inside an ``except`` without ``from``: the handled error is its implicit context."""
    try:
        try:
            raise ValueError(FOREIGN_SECRET)
        except ValueError:
            raise OrderNotFound("order 42 not found for this tenant")  # noqa: B904
    except OrderNotFound as error:
        return error


def loggable_with_a_note_only() -> OrderNotFound:
    error = OrderNotFound("order 42 not found for this tenant")
    error.add_note(f"while reading {FOREIGN_SECRET}")
    return error


@pytest.mark.parametrize(
    "make_error",
    [loggable_with_cause_only, loggable_raised_while_handling, loggable_with_a_note_only],
    ids=["a cause only", "an implicit context only", "a note only"],
)
def test_each_thing_a_traceback_prints_besides_the_message_makes_a_stand_in(
    make_error: Any,
) -> None:
    # GIVEN a loggable error carrying one thing its traceback would print beyond its message
    error = make_error()
    # WHEN it is made ready for a log
    stand_in = without_message(error)
    # THEN a stand-in of the same name and module carries the message and nothing else
    assert stand_in is not error
    assert type(stand_in).__name__ == "OrderNotFound"
    assert type(stand_in).__module__ == OrderNotFound.__module__ == __name__
    assert str(stand_in) == "order 42 not found for this tenant"
    assert stand_in.__cause__ is None and stand_in.__context__ is None
    assert not getattr(stand_in, "__notes__", None)


def raise_loggable_from_none() -> None:
    try:
        raise ValueError(FOREIGN_SECRET)
    except ValueError:
        raise OrderNotFound("order 42 not found for this tenant") from None


def test_an_error_raised_from_none_is_given_as_it_is() -> None:
    with pytest.raises(OrderNotFound) as caught:
        raise_loggable_from_none()
    assert without_message(caught.value) is caught.value


def sqs_raising(vendor: CredentialVendor, error: Exception) -> Any:
    @sqs_handler(ring=RING, vendor=vendor)
    def handler(record: SqsRecord, context: Any) -> None:
        raise error

    return handler


@pytest.mark.parametrize(
    ("error", "logged", "hidden"),
    [
        (OrderNotFound("order 42 not found for this tenant"), "order 42 not found for this tenant", None),
        (loggable_raised_from_data(), "order 42 not found for this tenant", FOREIGN_SECRET),
        (LookupError(FOREIGN_SECRET), "LookupError", FOREIGN_SECRET),
    ],
    ids=["loggable", "loggable raised from data", "foreign"],
)
def test_a_failed_record_says_why_only_when_the_error_is_loggable(
    vendor: CredentialVendor,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
    logged: str,
    hidden: str | None,
) -> None:
    # GIVEN a worker whose record handler fails
    handler = sqs_raising(vendor, error)
    # WHEN a valid record reaches it
    response = handler(
        sqs_event([signed_sqs_record("{}", tenant_id="acme", message_id="m-1")]), LambdaContext()
    )
    # THEN the record fails, and its log line carries the reason only if the error is loggable
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    (line,) = [r.getMessage() for r in caplog.records if "failed in its handler" in r.getMessage()]
    assert line == f"tenantscope: SQS record m-1 failed in its handler: {logged}"
    if hidden is not None:
        assert hidden not in caplog.text


@pytest.mark.parametrize(
    ("error", "shown", "hidden"),
    [
        (OrderNotFound("order 42 not found for this tenant"), "order 42 not found for this tenant", None),
        (loggable_raised_from_data(), "order 42 not found for this tenant", FOREIGN_SECRET),
        (ValueError(FOREIGN_SECRET), "ValueError", FOREIGN_SECRET),
    ],
    ids=["loggable", "loggable raised from data", "foreign"],
)
def test_an_api_handler_error_is_logged_with_its_message_only_when_loggable(
    issuer: LocalIssuer,
    jwks: JwksCache,
    vendor: CredentialVendor,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
    shown: str,
    hidden: str | None,
) -> None:
    @api_handler(jwks=jwks, vendor=vendor)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise error

    caplog.set_level(logging.ERROR)
    assert handler(http_api_event(issuer.token("acme")), LambdaContext())["statusCode"] == 500
    assert shown in caplog.text
    if hidden is not None:
        assert hidden not in caplog.text
