"""The sample events in events/ do what they say, against the real handlers on the local AWS.

Fresh samples are generated for the run (signed events expire); the committed ones must be the
same set, in the same shape, signed by the development keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from devtools import events as samples
from devtools.issuer import DevIssuer
from devtools.local_aws import LOCAL_PARAMETERS, LocalAws, local_aws
from tenantscope import TenantAuthError, tenant_key, tenant_scope, tenant_table

COMMITTED = Path(__file__).resolve().parents[2] / "events"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("events")
    samples.generate(out)
    return out


@pytest.fixture(scope="module")
def aws(generated: Path) -> Iterator[LocalAws]:
    """One local deployment, configured like `sam local invoke --env-vars events/env.json`."""
    with local_aws(LOCAL_PARAMETERS, environment=load(generated, "env")["Parameters"]) as deployed:
        yield deployed


def load(directory: Path, name: str) -> Any:
    return json.loads((directory / f"{name}.json").read_text())


def prepare(aws: LocalAws, name: str, event: dict[str, Any]) -> None:
    """The data a sample assumes: items, PENDING orders for the worker, stock and an order for the tasks."""
    table = aws.physical["AppTable"]["Ref"]
    orders: list[tuple[str, str]] = []
    for tenant in ("acme", "globex"):
        with tenant_scope(tenant):
            tenant_table(table).put_item(Item={"pk": tenant_key("ITEM"), "sk": "widget", "stock": 10})
    if name.startswith("sqs_"):
        for record in event["Records"]:
            tenant = record["messageAttributes"].get("tenantscope-tenant", {}).get("stringValue")
            if tenant in ("acme", "globex"):
                orders.append((tenant, json.loads(record["body"])["order_id"]))
    if name.startswith("sfn_"):
        orders.append(("acme", samples.ORDER_ID))
    for tenant, order_id in orders:
        with tenant_scope(tenant):
            tenant_table(table).put_item(
                Item={
                    "pk": tenant_key("ORDER"),
                    "sk": order_id,
                    "status": "PENDING",
                    "item_id": "widget",
                    "quantity": 2,
                }
            )


@pytest.mark.parametrize("name", sorted(samples.SAMPLES))
def test_each_sample_does_what_it_says(name: str, generated: Path, aws: LocalAws) -> None:
    sample = samples.SAMPLES[name]
    event = load(generated, name)
    prepare(aws, name, event)
    kind, _, detail = sample.expect.partition(" ")
    if kind == "raises":
        with pytest.raises(TenantAuthError) as raised:
            aws.invoke(sample.function, event)
        assert type(raised.value).__name__ == detail
        return
    result = aws.invoke(sample.function, event)
    if kind == "status":
        assert result["statusCode"] == int(detail), result
    elif kind == "failures":
        expected = [] if detail == "none" else detail.split(",")
        assert [f["itemIdentifier"] for f in result["batchItemFailures"]] == expected
    else:
        assert kind == "returns"
        assert detail.removeprefix("results.") in result["results"]
        assert result["tenantscope"] == event["tenantscope"]  # the envelope is carried forward


def test_committed_samples_are_the_generated_set_in_the_same_shape(generated: Path) -> None:
    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shape(v) for v in value]
        return type(value).__name__

    committed = sorted(p.name for p in COMMITTED.glob("*.json"))
    assert committed == sorted(p.name for p in generated.glob("*.json")), "run `make events`"
    for path in COMMITTED.glob("*.json"):
        if path.name != "env.json":
            assert shape(json.loads(path.read_text())) == shape(load(generated, path.stem)), path.name


def test_committed_samples_are_named_source_scenario() -> None:
    for path in COMMITTED.glob("*.json"):
        source, _, scenario = path.stem.partition("_")
        assert path.stem == "env" or (source in {"api", "sqs", "sfn"} and scenario), path.name


def test_committed_tokens_are_signed_by_the_development_issuer() -> None:
    issuer = DevIssuer.from_dev_key()
    jwks = json.loads(load(COMMITTED, "env")["Parameters"]["TENANTSCOPE_JWKS_URL"].removeprefix("inline:"))
    assert jwks == issuer.jwks()
    for name in samples.SAMPLES:
        if not name.startswith("api_") or name in ("api_missing_token", "api_forged_token"):
            continue
        header = load(COMMITTED, name)["headers"]["authorization"]
        claims = jwt.decode(
            header.split()[1],
            issuer.public_key,
            algorithms=["RS256"],
            audience=issuer.audience,
            options={"verify_exp": False},
        )
        assert claims["iss"] == issuer.issuer
