"""`make events`: regenerate the sample events in events/ and events/env.json.

Signed events expire (development JWTs and envelopes last 30 days here), so they are generated,
not written by hand. Every sample is made by the layer's own producer functions and the
development issuer, and :data:`SAMPLES` says which function takes it and what it must do, so
the tests can check each one against the real handlers.

    python -m devtools.events [--out events]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.issuer import DevIssuer
from devtools.lambda_events import (
    ACCOUNT_ID,
    REGION,
    http_api_event,
    key_bytes,
    make_ring,
    sealed_input,
    signed_sqs_record,
    sqs_event,
    task_event,
)
from tenantscope import StaticKeyRing
from tenantscope._config import Settings

ROOT = Path(__file__).resolve().parents[1]
EVENTS_DIR = ROOT / "events"
DEV_RING_PATH = Path(__file__).with_name("dev_signing_ring.json")
# The deployed dev stack's names (samconfig.toml: stack tenantscope-dev).
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:tenantscope-dev-OrderQueue"
OTHER_QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:another-service-queue"
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:tenantscope-dev-OrderStateMachine"
LIFETIME = 30 * 86400
ORDER_ID = "0f8fad5bd9cb469fa16570867728950e"
ORDER = {"order_id": ORDER_ID, "item_id": "widget", "quantity": 2}
EXECUTION = ORDER_ID


@dataclass(frozen=True)
class Sample:
    """One sample event: the function that takes it and what it must do there."""

    function: str
    expect: str  # "status 200", "failures m-2", "raises TenantAuthError", "returns results.<task>"
    build: Callable[[Context], dict[str, Any]]


@dataclass(frozen=True)
class Context:
    issuer: DevIssuer
    forger: DevIssuer
    ring: StaticKeyRing
    settings: Settings
    now: int


def dev_ring_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DEV_RING_PATH.read_text())
    return document


def environment(issuer: DevIssuer) -> dict[str, dict[str, str]]:
    """events/env.json: the development JWKS and key ring, inline, for `sam local invoke --env-vars`."""
    return {
        "Parameters": {
            "TENANTSCOPE_JWT_ISSUER": issuer.issuer,
            "TENANTSCOPE_JWT_AUDIENCE": issuer.audience,
            "TENANTSCOPE_JWKS_URL": "inline:" + json.dumps(issuer.jwks(), separators=(",", ":")),
            "TENANTSCOPE_SIGNING_KEYS": "inline:" + json.dumps(dev_ring_document(), separators=(",", ":")),
            "TENANTSCOPE_SQS_ENVELOPE_TTL_SECONDS": str(LIFETIME),
            "TENANTSCOPE_SFN_ENVELOPE_TTL_SECONDS": str(LIFETIME),
        }
    }


def _api(
    method: str,
    path: str,
    route: str,
    tenant: str | None,
    body: Any = None,
    token: Callable[[Context], str | None] | None = None,
) -> Callable[[Context], dict[str, Any]]:
    def build(ctx: Context) -> dict[str, Any]:
        bearer = token(ctx) if token else (ctx.issuer.token(tenant, lifetime=LIFETIME) if tenant else None)
        record_id = path.rsplit("/", 1)[1] if "{id}" in route else None
        return http_api_event(
            bearer,
            method=method,
            path=path,
            route=route,
            body=body,
            path_parameters={"id": record_id} if record_id else {},
        )

    return build


def _sqs(records: Callable[[Context], list[dict[str, Any]]]) -> Callable[[Context], dict[str, Any]]:
    return lambda ctx: sqs_event(records(ctx))


def _order_record(ctx: Context, tenant: str, message_id: str, **overrides: Any) -> dict[str, Any]:
    body = json.dumps({"order_id": overrides.pop("order_id", ORDER_ID)})
    signing = {"ring": ctx.ring, "settings": ctx.settings, **overrides}
    return signed_sqs_record(body, tenant_id=tenant, queue_arn=QUEUE_ARN, message_id=message_id, **signing)


def _tampered(record: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    changed = copy.deepcopy(record)
    change(changed)
    return changed


def _task(
    tenant: str = "acme",
    results: dict[str, Any] | None = None,
    execution: str = EXECUTION,
    sealed_for: str = EXECUTION,
) -> Callable[[Context], dict[str, Any]]:
    def build(ctx: Context) -> dict[str, Any]:
        state = sealed_input(
            ORDER,
            tenant_id=tenant,
            state_machine_arn=STATE_MACHINE_ARN,
            execution_name=sealed_for,
            ring=ctx.ring,
            settings=ctx.settings,
        )
        state["results"] = results or {}
        return task_event(state, execution_name=execution, state_machine_arn=STATE_MACHINE_ARN)

    return build


def _without_envelope(ctx: Context) -> dict[str, Any]:
    event = _task()(ctx)
    del event["tenantscope"]
    return event


def _tampered_tenant(ctx: Context) -> dict[str, Any]:
    event = _task()(ctx)
    event["tenantscope"]["tenant"] = "globex"
    return event


def _header_field(index: int, value: str) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        attribute = record["messageAttributes"]["tenantscope-envelope"]
        fields = attribute["stringValue"].split(" ")
        fields[index] = value
        attribute["stringValue"] = " ".join(fields)

    return change


def _changed(change: Callable[[dict[str, Any]], None]) -> Callable[[Context], dict[str, Any]]:
    """A record sealed properly, then changed in transit."""
    return lambda ctx: _tampered(_order_record(ctx, "acme", "m-2"), change)


def _sealed(**wrongly: Any) -> Callable[[Context], dict[str, Any]]:
    """A record sealed with one thing wrong (keys, dates or destination)."""
    return lambda ctx: _order_record(
        ctx, "acme", "m-2", **{k: v(ctx) if callable(v) else v for k, v in wrongly.items()}
    )


# One sample per kind of bad envelope (docs/envelope.md, verification).
_BAD_RECORDS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "tampered_body": _changed(lambda r: r.update(body=r["body"].replace("0f8f", "0f8e"))),
    "tampered_tenant": _changed(
        lambda r: r["messageAttributes"]["tenantscope-tenant"].update(stringValue="globex")
    ),
    "missing_tenant": _changed(lambda r: r["messageAttributes"].pop("tenantscope-tenant")),
    "missing_envelope": _changed(lambda r: r["messageAttributes"].pop("tenantscope-envelope")),
    "missing_signature": _changed(lambda r: r["messageAttributes"].pop("tenantscope-signature")),
    "malformed_signature": _changed(
        lambda r: r["messageAttributes"]["tenantscope-signature"].update(stringValue="!" * 43)
    ),
    "oversized_attribute": _changed(
        lambda r: r["messageAttributes"]["tenantscope-tenant"].update(stringValue="a" * 600)
    ),
    "unknown_version": _changed(_header_field(0, "2")),
    "wrong_queue": _sealed(sealed_for=OTHER_QUEUE_ARN),
    "expired": _sealed(issued_at=lambda ctx: ctx.now - 2 * LIFETIME),
    "issued_in_future": _sealed(issued_at=lambda ctx: ctx.now + 3600),
    "unknown_key": _sealed(ring=make_ring({"retired-key": key_bytes("retired-key")})),
    # the listed key id, signed with another key
    "wrong_key": _sealed(ring=make_ring({"dev-1": key_bytes("not-the-dev-key")})),
}

RESERVED = {"reserve_inventory": {"item_id": "widget", "quantity": 2}}

SAMPLES: dict[str, Sample] = {
    # ---------------------------------------------------------------- HTTP API (payload v2)
    "api_put_item_acme": Sample(
        "ApiFunction",
        "status 200",
        _api("PUT", "/items/widget", "/items/{id}", "acme", {"name": "Widget", "stock": 10}),
    ),
    "api_get_item_acme": Sample(
        "ApiFunction", "status 200", _api("GET", "/items/widget", "/items/{id}", "acme")
    ),
    "api_list_items_globex": Sample("ApiFunction", "status 200", _api("GET", "/items", "/items", "globex")),
    "api_put_item_globex": Sample(
        "ApiFunction", "status 200", _api("PUT", "/items/widget", "/items/{id}", "globex", {"stock": 3})
    ),
    "api_delete_item_globex": Sample(
        "ApiFunction", "status 204", _api("DELETE", "/items/widget", "/items/{id}", "globex")
    ),
    "api_place_order_acme": Sample(
        "ApiFunction",
        "status 202",
        _api("POST", "/orders", "/orders", "acme", {"item_id": "widget", "quantity": 2}),
    ),
    "api_get_order_acme": Sample(
        "ApiFunction", "status 404", _api("GET", f"/orders/{ORDER_ID}", "/orders/{id}", "acme")
    ),
    "api_missing_token": Sample("ApiFunction", "status 401", _api("GET", "/items", "/items", None)),
    "api_forged_token": Sample(
        "ApiFunction",
        "status 401",
        _api("GET", "/items", "/items", None, token=lambda ctx: ctx.forger.token("acme", lifetime=LIFETIME)),
    ),
    "api_expired_token": Sample(
        "ApiFunction",
        "status 401",
        _api("GET", "/items", "/items", None, token=lambda ctx: ctx.issuer.token("acme", lifetime=-60)),
    ),
    "api_wildcard_tenant": Sample(
        "ApiFunction",
        "status 403",
        _api("GET", "/items", "/items", None, token=lambda ctx: ctx.issuer.token("*", lifetime=LIFETIME)),
    ),
    # ---------------------------------------------------------------- SQS batches (the worker)
    "sqs_valid_batch": Sample(
        "OrderWorkerFunction",
        "failures none",
        _sqs(
            lambda ctx: [
                _order_record(ctx, "acme", "m-1", order_id="0" * 31 + "1"),
                _order_record(ctx, "acme", "m-2", order_id="0" * 31 + "2"),
            ]
        ),
    ),
    "sqs_mixed_tenants": Sample(
        "OrderWorkerFunction",
        "failures none",
        _sqs(
            lambda ctx: [
                _order_record(ctx, ("acme", "globex")[n % 2], f"m-{n}", order_id=f"{n:032x}")
                for n in range(10)
            ]
        ),
    ),
    # A good record and, as m-2, one bad in a single way: only m-2 may fail.
    **{
        f"sqs_{name}": Sample(
            "OrderWorkerFunction",
            "failures m-2",
            _sqs(lambda ctx, bad=bad: [_order_record(ctx, "acme", "m-1"), bad(ctx)]),
        )
        for name, bad in _BAD_RECORDS.items()
    },
    # ---------------------------------------------------------------- Step Functions tasks
    "sfn_reserve_inventory": Sample("ReserveInventoryFunction", "returns results.reserve_inventory", _task()),
    "sfn_charge_payment": Sample(
        "ChargePaymentFunction", "returns results.charge_payment", _task(results=RESERVED)
    ),
    "sfn_complete_order": Sample(
        "CompleteOrderFunction", "returns results.complete_order", _task(results=RESERVED)
    ),
    "sfn_release_inventory": Sample(
        "ReleaseInventoryFunction", "returns results.release_inventory", _task(results=RESERVED)
    ),
    "sfn_other_execution": Sample(
        "ReserveInventoryFunction", "raises TenantAuthError", _task(execution="another-execution")
    ),
    "sfn_tampered_tenant": Sample("ReserveInventoryFunction", "raises TenantAuthError", _tampered_tenant),
    "sfn_missing_envelope": Sample("ReserveInventoryFunction", "raises TenantAuthError", _without_envelope),
}


def generate(out: Path = EVENTS_DIR, *, issuer: DevIssuer | None = None) -> list[Path]:
    """Write every sample and env.json into ``out``; returns the files written."""
    issuer = issuer or DevIssuer.from_dev_key()
    env = environment(issuer)["Parameters"]
    settings = Settings.load(environ=env)
    ctx = Context(
        issuer,
        DevIssuer.generate(kid=issuer.kid),
        StaticKeyRing(dev_ring_document()),
        settings,
        int(time.time()),
    )
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, sample in SAMPLES.items():
        path = out / f"{name}.json"
        path.write_text(json.dumps(sample.build(ctx), indent=2) + "\n")
        written.append(path)
    env_path = out / "env.json"
    env_path.write_text(json.dumps(environment(issuer), indent=2) + "\n")
    return [*written, env_path]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=EVENTS_DIR)
    args = parser.parse_args(argv)
    written = generate(args.out)
    print(f"wrote {len(written)} files to {args.out} (signed events valid for {LIFETIME // 86400} days)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
