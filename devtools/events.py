"""`make events`: regenerate the sample events in events/ and events/env.json.

Signed events expire (development JWTs and envelopes last 30 days here), so they are generated,
not written by hand. Every sample is made by the layer's own producer functions and the
development issuer, and :data:`SAMPLES` says which function takes it and what it must do, so
the tests can check each one against the real handlers.

The env files for ``sam local invoke --env-vars`` all start from :func:`identity` (the
development issuer and key ring, and envelope lifetimes as long as the samples'):
``env.json`` is that alone; ``make local-aws`` writes ``env.local.json`` (plus the local AWS's
endpoint and resources) and ``make env-from-stack`` writes ``env.deployed.json`` (plus a deployed
stack's resources). This command refreshes the identity in those two when they exist.

The samples assume data: :func:`seed` and :func:`seed_files` list it, and ``make local-aws``
writes it.

    python -m devtools.events [--out events]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.issuer import dev_issuer
from tenantscope import StaticKeyRing
from tenantscope._config import Settings
from tenantscope.testing import (
    ACCOUNT_ID,
    REGION,
    LocalIssuer,
    authorizer_claims,
    http_api_event,
    key_bytes,
    make_ring,
    ring_spec,
    sealed_input,
    signed_sqs_record,
    sqs_event,
    task_event,
)

ROOT = Path(__file__).resolve().parents[1]
EVENTS_DIR = ROOT / "events"
DEV_RING_PATH = Path(__file__).with_name("dev_signing_ring.json")
# The deployed dev stack's names (samconfig.toml: stack tenantscope-dev, Stage=dev).
STAGE = "dev"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:tenantscope-dev-OrderQueue"
OTHER_QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:another-service-queue"
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:tenantscope-dev-OrderStateMachine"
LIFETIME = 30 * 86400
ORDER_ID = "0f8fad5bd9cb469fa16570867728950e"
ITEM_ID = "widget"
QUANTITY = 2
ORDER = {"order_id": ORDER_ID, "item_id": ITEM_ID, "quantity": QUANTITY}
# An order of acme's that is COMPLETED, with its receipt.
COMPLETED_ORDER_ID = "5d0c3a8f1b2e4c6a9e7f0a1b2c3d4e5f"
# An order of acme's whose execution failed while it held its stock: the compensation's sample.
FAILING_ORDER_ID = "9b1e4f2a7c3d4e8f8a6b5c4d3e2f1a0b"
FAILING_ORDER = {**ORDER, "order_id": FAILING_ORDER_ID}
ATTACHMENT_TYPE = "application/pdf"
EXECUTION = ORDER_ID
# (tenant, order id) of the orders each batch's records name.
VALID_BATCH_ORDERS = [("acme", f"{n:032x}") for n in (1, 2)]
MIXED_BATCH_ORDERS = [(("acme", "globex")[n % 2], f"{n:032x}") for n in range(10)]
LOCAL_ENV = "env.local.json"
DEPLOYED_ENV = "env.deployed.json"


@dataclass(frozen=True)
class Sample:
    """One sample event: the function that takes it and what it must do there."""

    function: str
    expect: str  # "status 200", "failures m-2", "raises TenantAuthError", "returns results.<task>"
    build: Callable[[Context], dict[str, Any]]

    def outcome(self) -> str:
        """What it must do, in the README's ``# expect:`` form: ``statusCode 200``,
        ``batchItemFailures 1``, ``error TenantAuthError`` or ``ok``."""
        kind, _, detail = self.expect.partition(" ")
        if kind == "status":
            return f"statusCode {detail}"
        if kind == "failures":
            return f"batchItemFailures {0 if detail == 'none' else len(detail.split(','))}"
        if kind == "raises":
            return f"error {detail}"
        return "ok"


def outcome(response: Any) -> str:
    """A function's response (as ``sam local invoke`` prints it) in the ``# expect:`` form."""
    if isinstance(response, dict) and "errorType" in response:
        return f"error {response['errorType']}"
    if isinstance(response, dict) and "statusCode" in response:
        return f"statusCode {response['statusCode']}"
    if isinstance(response, dict) and isinstance(response.get("batchItemFailures"), list):
        return f"batchItemFailures {len(response['batchItemFailures'])}"
    return "ok" if isinstance(response, dict) else f"unexpected {json.dumps(response)[:80]}"


@dataclass(frozen=True)
class Context:
    issuer: LocalIssuer
    forger: LocalIssuer
    ring: StaticKeyRing
    settings: Settings
    now: int


def dev_ring_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DEV_RING_PATH.read_text())
    return document


def identity(issuer: LocalIssuer) -> dict[str, str]:
    """What every env file sets: the development JWKS and key ring, inline (refused in a deployed
    function), and envelope lifetimes as long as the samples'."""
    return {
        **issuer.environment(),
        "TENANTSCOPE_SIGNING_KEYS": ring_spec(dev_ring_document()),
        "TENANTSCOPE_SQS_ENVELOPE_TTL_SECONDS": str(LIFETIME),
        "TENANTSCOPE_SFN_ENVELOPE_TTL_SECONDS": str(LIFETIME),
    }


def write_env_file(path: Path, variables: dict[str, str]) -> None:
    """An ``--env-vars`` file: one set of variables for every function (SAM passes each function
    only those its template declares)."""
    path.write_text(json.dumps({"Parameters": variables}, indent=2) + "\n")


@dataclass(frozen=True)
class Record:
    """An item or an order of one tenant in the pooled table (functions/app/items.py's keys)."""

    tenant: str
    kind: str
    record_id: str
    attributes: dict[str, Any]


def seed() -> list[Record]:
    """The data the samples assume: the item they stock and reserve, for both tenants, a PENDING
    order for every order an SQS or Step Functions sample names, a COMPLETED one of each tenant's
    (the bad SQS records name it), and one of acme's that holds its stock for the compensation to
    release."""
    item = {"name": "Widget", "stock": 10}
    order = {"status": "PENDING", "item_id": ITEM_ID, "quantity": QUANTITY}
    orders = sorted({("acme", ORDER_ID), *VALID_BATCH_ORDERS, *MIXED_BATCH_ORDERS})
    return [
        *(Record(tenant, "ITEM", ITEM_ID, item) for tenant in ("acme", "globex")),
        *(Record(tenant, "ORDER", order_id, order) for tenant, order_id in orders),
        *(
            Record(tenant, "ORDER", COMPLETED_ORDER_ID, {**order, "status": "COMPLETED"})
            for tenant in ("acme", "globex")
        ),
        Record("acme", "ORDER", FAILING_ORDER_ID, {**order, "status": "PROCESSING", "reserved": QUANTITY}),
    ]


@dataclass(frozen=True)
class File:
    """A file of one tenant in the pooled bucket, by the record it belongs to: an ITEM's attachment
    or an ORDER's receipt (functions/app/files.py's keys)."""

    tenant: str
    kind: str
    record_id: str
    content_type: str
    body: bytes


def seed_files() -> list[File]:
    """The files the samples assume: acme's widget's attachment, and the receipt of acme's
    COMPLETED order (as CompleteOrder writes it)."""
    receipt = {
        "order_id": COMPLETED_ORDER_ID,
        "item_id": ITEM_ID,
        "quantity": QUANTITY,
        "charge_reference": f"sim-{COMPLETED_ORDER_ID}",
        "completed_at": "2026-11-30T12:00:00+00:00",
    }
    return [
        File("acme", "ITEM", ITEM_ID, ATTACHMENT_TYPE, b"%PDF-1.7 the widget's manual"),
        File("acme", "ORDER", COMPLETED_ORDER_ID, "application/json", json.dumps(receipt).encode()),
    ]


def _api(
    method: str,
    path: str,
    route: str,
    tenant: str | None,
    body: Any = None,
    token: Callable[[Context], str | None] | None = None,
    authorized: bool = True,
) -> Callable[[Context], dict[str, Any]]:
    """An HTTP API request; ``authorized`` when the API's JWT authorizer passes its token on (with
    its claims, as a deployed HTTP API adds them), False for one it answers 401 itself."""

    def build(ctx: Context) -> dict[str, Any]:
        bearer = token(ctx) if token else (ctx.issuer.token(tenant, lifetime=LIFETIME) if tenant else None)
        # The route's {id}, where it is in the path: /items/{id}/attachment -> the item id.
        pattern = "/".join("(?P<id>[^/]+)" if p == "{id}" else re.escape(p) for p in route.split("/"))
        matched = re.fullmatch(pattern, path)
        if matched is None:
            raise ValueError(f"{path} is not a path of {route}")
        return http_api_event(
            bearer,
            method=method,
            path=path,
            route=route,
            body=body,
            path_parameters=matched.groupdict(),
            claims=authorizer_claims(bearer) if authorized and bearer else None,
            stage=STAGE,
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
    # SQS hashes the body it was sent: a changed message was sent changed (by a sender without the
    # key), so its digest is of the body as delivered.
    changed["md5OfBody"] = hashlib.md5(changed["body"].encode("utf-8"), usedforsecurity=False).hexdigest()
    return changed


def _task(
    tenant: str = "acme",
    results: dict[str, Any] | None = None,
    execution: str = EXECUTION,
    sealed_for: str = EXECUTION,
    order: dict[str, Any] = ORDER,
) -> Callable[[Context], dict[str, Any]]:
    def build(ctx: Context) -> dict[str, Any]:
        state = sealed_input(
            order,
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


# A bad record names an order its tenant (acme, or globex for a record moved to globex) has
# COMPLETED: accepted, it would succeed with nothing to start, so a sample's failure shows that
# the envelope was refused, not that the order was missing.
def _changed(
    change: Callable[[dict[str, Any]], None], order_id: str = COMPLETED_ORDER_ID
) -> Callable[[Context], dict[str, Any]]:
    """A record sealed properly, then sent changed by a sender without the key."""
    return lambda ctx: _tampered(_order_record(ctx, "acme", "m-2", order_id=order_id), change)


def _sealed(**wrongly: Any) -> Callable[[Context], dict[str, Any]]:
    """A record sealed with one thing wrong (keys, dates or destination)."""
    return lambda ctx: _order_record(
        ctx,
        "acme",
        "m-2",
        order_id=COMPLETED_ORDER_ID,
        **{k: v(ctx) if callable(v) else v for k, v in wrongly.items()},
    )


# One sample per kind of bad envelope (docs/envelope.md, verification).
_BAD_RECORDS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "tampered_body": _changed(
        lambda r: r.update(body=r["body"].replace(ORDER_ID, COMPLETED_ORDER_ID)), order_id=ORDER_ID
    ),
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

RESERVED = {"reserve_inventory": {"item_id": ITEM_ID, "quantity": QUANTITY}}
CHARGED = {**RESERVED, "charge_payment": {"charged": True, "reference": f"sim-{ORDER_ID}"}}

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
        _api("POST", "/orders", "/orders", "acme", {"item_id": ITEM_ID, "quantity": QUANTITY}),
    ),
    "api_get_order_acme": Sample(
        "ApiFunction", "status 200", _api("GET", f"/orders/{ORDER_ID}", "/orders/{id}", "acme")
    ),
    # Tenant files: a form that uploads the item's attachment, a link that downloads it, a link
    # to an order's receipt, and a content type the attachment may not have.
    "api_attachment_upload_acme": Sample(
        "ApiFunction",
        "status 200",
        _api(
            "POST",
            f"/items/{ITEM_ID}/attachment",
            "/items/{id}/attachment",
            "acme",
            {"content_type": ATTACHMENT_TYPE},
        ),
    ),
    "api_attachment_download_acme": Sample(
        "ApiFunction",
        "status 200",
        _api("GET", f"/items/{ITEM_ID}/attachment", "/items/{id}/attachment", "acme"),
    ),
    "api_attachment_bad_type_acme": Sample(
        "ApiFunction",
        "status 400",
        _api(
            "POST",
            f"/items/{ITEM_ID}/attachment",
            "/items/{id}/attachment",
            "acme",
            {"content_type": "text/html"},
        ),
    ),
    "api_get_receipt_acme": Sample(
        "ApiFunction",
        "status 200",
        _api("GET", f"/orders/{COMPLETED_ORDER_ID}/receipt", "/orders/{id}/receipt", "acme"),
    ),
    # A deployed HTTP API's JWT authorizer answers these three 401 itself; the function's own
    # verification answers them where no authorizer runs (sam local, a misconfigured route).
    "api_missing_token": Sample("ApiFunction", "status 401", _api("GET", "/items", "/items", None)),
    "api_forged_token": Sample(
        "ApiFunction",
        "status 401",
        _api(
            "GET",
            "/items",
            "/items",
            None,
            token=lambda ctx: ctx.forger.token("acme", lifetime=LIFETIME),
            authorized=False,
        ),
    ),
    "api_expired_token": Sample(
        "ApiFunction",
        "status 401",
        _api(
            "GET",
            "/items",
            "/items",
            None,
            token=lambda ctx: ctx.issuer.token("acme", lifetime=-60),
            authorized=False,
        ),
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
                _order_record(ctx, tenant, f"m-{n}", order_id=order_id)
                for n, (tenant, order_id) in enumerate(VALID_BATCH_ORDERS, 1)
            ]
        ),
    ),
    "sqs_mixed_tenants": Sample(
        "OrderWorkerFunction",
        "failures none",
        _sqs(
            lambda ctx: [
                _order_record(ctx, tenant, f"m-{n}", order_id=order_id)
                for n, (tenant, order_id) in enumerate(MIXED_BATCH_ORDERS)
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
        "CompleteOrderFunction", "returns results.complete_order", _task(results=CHARGED)
    ),
    "sfn_release_inventory": Sample(
        "ReleaseInventoryFunction",
        "returns results.release_inventory",
        _task(results=RESERVED, order=FAILING_ORDER, execution=FAILING_ORDER_ID, sealed_for=FAILING_ORDER_ID),
    ),
    "sfn_other_execution": Sample(
        "ReserveInventoryFunction", "raises TenantAuthError", _task(execution="another-execution")
    ),
    "sfn_tampered_tenant": Sample("ReserveInventoryFunction", "raises TenantAuthError", _tampered_tenant),
    "sfn_missing_envelope": Sample("ReserveInventoryFunction", "raises TenantAuthError", _without_envelope),
}


def generate(out: Path = EVENTS_DIR, *, issuer: LocalIssuer | None = None) -> list[Path]:
    """Write every sample and env.json into ``out``, and refresh the identity in its
    env.local.json and env.deployed.json when they exist; returns the files written."""
    issuer = issuer or dev_issuer()
    env = identity(issuer)
    settings = Settings.load(environ=env)
    ctx = Context(
        issuer,
        LocalIssuer.generate(kid=issuer.kid),
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
    write_env_file(out / "env.json", env)
    written.append(out / "env.json")
    for derived in (out / LOCAL_ENV, out / DEPLOYED_ENV):
        if derived.exists():
            variables = json.loads(derived.read_text())["Parameters"]
            write_env_file(derived, {**variables, **env})
            written.append(derived)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=EVENTS_DIR)
    args = parser.parse_args(argv)
    written = generate(args.out)
    print(f"wrote {len(written)} files to {args.out} (signed events valid for {LIFETIME // 86400} days)")
    if args.out == EVENTS_DIR:
        print(
            "the committed samples now carry new dates and signatures: commit them once the committed"
            " ones have expired, or `git checkout events/` to keep those"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
