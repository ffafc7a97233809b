"""An async def function is refused by every adapter when it is decorated, not run as a no-op.

Called, an async function only makes a coroutine: the unit of work would succeed (an SQS record
be deleted) with its body never run, or run later in whatever scope awaited it.
"""

from __future__ import annotations

import functools
import gc
import inspect
import re
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from tenantscope import api_handler, sfn_task, sqs_handler, sqs_record_handler
from tenantscope._credentials import CredentialVendor
from tenantscope._jwt import JwksCache, StaticJwksSource
from tenantscope.testing import (
    RING,
    LocalIssuer,
    http_api_event,
    sfn_task_event,
    signed_sqs_record,
    sqs_event,
)
from tests.conftest import LambdaContext


async def handler(event: Any, context: Any) -> Any:
    return {"statusCode": 200}


async def generator(event: Any, context: Any) -> AsyncIterator[Any]:
    yield event


@pytest.mark.parametrize("fn", [handler, generator], ids=["coroutine", "async generator"])
@pytest.mark.parametrize(
    ("decorator", "named"),
    [
        (api_handler, "@api_handler"),
        (sqs_handler, "@sqs_handler"),
        (sqs_record_handler, "@sqs_record_handler"),
        (sfn_task, "@sfn_task"),
    ],
    ids=["api", "sqs", "sqs record", "sfn"],
)
def test_an_async_function_is_refused_when_decorated(
    decorator: Callable[[Any], Any], named: str, fn: Callable[..., Any]
) -> None:
    with pytest.raises(TypeError) as refused:
        decorator(fn)
    assert str(refused.value) == (
        f"{named} takes a plain function: {fn.__qualname__!r} is async, and Lambda's Python runtime "
        "calls handlers synchronously; run async code with asyncio.run() inside it"
    )


def test_an_async_callable_without_a_name_is_refused_by_its_repr() -> None:
    unnamed = functools.partial(handler)  # a partial has no __qualname__
    with pytest.raises(TypeError) as refused:
        api_handler(unnamed)
    assert str(refused.value).startswith(f"@api_handler takes a plain function: {unnamed!r} is async")


# --- async functions the decorators cannot see -------------------------------------------------------

ran: list[str] = []


returned: list[Any] = []  # what the wrapped functions returned: their coroutines, unrun


def plain_wrapper(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An ordinary synchronous decorator: it hides that the function it wraps is async."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        returned.append(fn(*args, **kwargs))
        return returned[-1]

    return wrapper


@plain_wrapper
async def wrapped(event: Any, context: Any) -> Any:
    ran.append("wrapped")


class AsyncCallable:
    async def __call__(self, event: Any, context: Any) -> Any:
        ran.append("callable")


@plain_wrapper
async def wrapped_generator(event: Any, context: Any) -> AsyncIterator[Any]:
    ran.append("generator")
    yield event


HIDDEN = [wrapped, AsyncCallable(), wrapped_generator]
RETURNS = {"wrapped": "coroutine", "AsyncCallable": "coroutine", "wrapped_generator": "async_generator"}
HIDDEN_IDS = ["async def behind a plain wrapper", "async __call__", "async generator behind a plain wrapper"]
FIX = "Lambda's Python runtime calls handlers synchronously; run async code with asyncio.run() inside it"


@pytest.fixture
def no_unawaited_warnings() -> Iterator[None]:
    ran.clear()
    returned.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # "coroutine ... was never awaited"
        yield
    gc.collect()  # a coroutine left open would warn when collected
    assert ran == []  # no body ran, now or later


@pytest.mark.usefixtures("no_unawaited_warnings")
@pytest.mark.parametrize("fn", HIDDEN, ids=HIDDEN_IDS)
def test_a_hidden_async_api_handler_answers_500_and_logs_the_fix(
    fn: Any, issuer: LocalIssuer, vendor: CredentialVendor, caplog: pytest.LogCaptureFixture
) -> None:
    handler = api_handler(jwks=JwksCache(StaticJwksSource(issuer.jwks())), vendor=vendor)(fn)
    response = handler(http_api_event(issuer.token("acme")), LambdaContext())
    assert response["statusCode"] == 500
    [line] = [message for message in caplog.messages if "failed in its handler" in message]
    kind = RETURNS[getattr(fn, "__name__", type(fn).__name__)]
    failed = "tenantscope: API request failed in its handler"
    assert line == f"{failed}: the handler returned a {kind} without running it: it is async, and {FIX}"
    # AND a coroutine it returned was closed, never to run
    for value in returned:
        if inspect.iscoroutine(value):
            assert inspect.getcoroutinestate(value) == inspect.CORO_CLOSED


@pytest.mark.usefixtures("no_unawaited_warnings")
@pytest.mark.parametrize("fn", HIDDEN, ids=HIDDEN_IDS)
def test_a_hidden_async_sqs_record_function_fails_its_record_and_the_rest_go_on(
    fn: Any, vendor: CredentialVendor
) -> None:
    # GIVEN a batch of a record for the hidden async function's handler
    handler = sqs_handler(ring=RING, vendor=vendor)(fn)
    event = sqs_event([signed_sqs_record('{"pay": 1}', tenant_id="acme", message_id="m-1")])
    # THEN its record fails rather than being deleted unrun
    assert handler(event, LambdaContext()) == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    record = sqs_record_handler(ring=RING, vendor=vendor)(fn)
    with pytest.raises(TypeError, match=f"without running it: it is async, and {re.escape(FIX)}$"):
        record(event["Records"][0], LambdaContext())


@pytest.mark.usefixtures("no_unawaited_warnings")
@pytest.mark.parametrize("fn", HIDDEN, ids=HIDDEN_IDS)
def test_a_hidden_async_sfn_task_raises_rather_than_returns(fn: Any, vendor: CredentialVendor) -> None:
    task = sfn_task(name="charge", ring=RING, vendor=vendor)(fn)
    with pytest.raises(TypeError, match=f"without running it: it is async, and {re.escape(FIX)}$"):
        task(sfn_task_event({"order_id": "o-1"}, tenant_id="acme", execution_name="acme-1"), LambdaContext())
