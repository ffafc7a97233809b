"""The worked example of docs/architecture.md, "Adding a trigger", run as written: a DynamoDB Streams
consumer made of a resolver and a mapper, on the same pipeline as every other trigger."""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Any

import pytest

from tenantscope import current_tenant
from tenantscope._credentials import CredentialVendor, FakeSts
from tenantscope.testing import LambdaContext

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


@pytest.fixture(scope="module")
def example() -> types.ModuleType:
    """The guide's code block, executed as a module."""
    section = GUIDE.read_text(encoding="utf-8").split("## Adding a trigger", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    module = types.ModuleType("ddbstream_example")
    exec(compile(code, str(GUIDE), "exec"), module.__dict__)  # our own documentation
    return module


def stream_record(pk: object, sequence: str) -> dict[str, Any]:
    return {
        "eventID": f"event-{sequence}",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {"Keys": {"pk": {"S": pk}, "sk": {"S": "1"}}, "SequenceNumber": sequence},
    }


def test_each_stream_record_runs_as_the_tenant_that_owns_its_key(
    example: types.ModuleType, vendor: CredentialVendor, fake_sts: FakeSts
) -> None:
    # GIVEN a stream consumer built from the guide's resolver and mapper
    ran: list[tuple[str, str]] = []

    @example.stream_handler
    def on_change(record: dict[str, Any], context: Any) -> None:
        ran.append((record["eventID"], current_tenant().tenant_id))
        if record["dynamodb"]["Keys"]["pk"]["S"].endswith("#BROKEN"):
            raise RuntimeError("the application failed")

    # WHEN a batch mixes two tenants, keys no tenant owns, and a record whose handler fails
    event = {
        "Records": [
            stream_record("TENANT#acme#ITEM", "1"),
            stream_record("TENANT#acme-corp#ORDER", "2"),
            stream_record("ITEM#1", "3"),  # not a tenant's key
            stream_record("TENANT#Acme#ITEM", "4"),  # outside the tenant id grammar
            stream_record(None, "5"),
            stream_record("TENANT#acme#BROKEN", "6"),
        ]
    }
    response = on_change(event, LambdaContext())
    # THEN each owned record ran as its owner; the others failed alone, before any STS call
    assert response == {"batchItemFailures": [{"itemIdentifier": s} for s in ("3", "4", "5", "6")]}
    assert ran == [("event-1", "acme"), ("event-2", "acme-corp"), ("event-6", "acme")]
    assert sorted({r.tenant_id for r in fake_sts.requests}) == ["acme", "acme-corp"]


@pytest.mark.parametrize("key", ["TENANT#acme", "TENANT#acme#", "TENANT#acme#a#b\n"])
def test_the_resolver_reads_the_owner_of_every_key_form(example: types.ModuleType, key: str) -> None:
    assert example.resolve_stream_record(stream_record(key, "1")).tenant_id == "acme"
