"""An async def function is refused by every adapter when it is decorated, not run as a no-op.

Called, an async function only makes a coroutine: the unit of work would succeed (an SQS record
be deleted) with its body never run, or run later in whatever scope awaited it.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tenantscope import api_handler, sfn_task, sqs_handler, sqs_record_handler


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
