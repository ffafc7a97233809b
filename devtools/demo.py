"""`make demo`: the order-fulfilment application, end to end, on an embedded local AWS.

The resources come from template.yaml (see devtools/local_aws.py). Two tenants create items
and place orders; the orders become signed queue messages; the worker takes them as a batch
and starts sealed executions; the state machine's tasks run the real handlers and write each
completed order's receipt. Each tenant uploads an attachment with the form the API answers and
downloads it with the link it answers (moto's mock answers the requests library too), side by
side in one pooled bucket. Then each attack is shown being stopped. Exits 0 only if every
expectation held.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from devtools.local_aws import LOCAL_PARAMETERS, LocalAws, local_aws
from tenantscope.testing import LocalIssuer, RecordingTracer

TENANTS = ("acme", "globex")


class Demo:
    def __init__(self) -> None:
        self.failures = 0

    def expect(self, what: str, ok: bool, detail: str = "") -> None:
        self.failures += not ok
        print(f"  [{'ok  ' if ok else 'FAIL'}] {what}{f'  ({detail})' if detail else ''}")


def body(response: dict[str, Any]) -> Any:
    return json.loads(response.get("body") or "null")


def drain(aws: LocalAws, rounds: int = 10) -> list[tuple[int, list[str]]]:
    """Let the worker's event source poll until the queue is empty."""
    batches = []
    for _ in range(rounds):
        delivered, failed = aws.poll_queue("OrderWorkerFunction")
        if not delivered:
            break
        batches.append((delivered, failed))
    return batches


def main() -> int:
    logging.getLogger().setLevel(logging.ERROR)
    # The demo reports refusals itself; moto's Step Functions logs every Fail state it runs.
    for noisy in ("tenantscope", "moto"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)

    issuer = LocalIssuer.generate()
    forger = LocalIssuer.generate()  # the same issuer name and kid, another key
    jwks_file = Path(tempfile.mkdtemp(prefix="tenantscope-demo-")) / "jwks.json"
    jwks_file.write_text(json.dumps(issuer.jwks()))
    demo = Demo()
    tracer = RecordingTracer()

    # The stack trusts the development issuer (its tokens are minted here), its JWKS from a local file.
    with local_aws(LOCAL_PARAMETERS, environment={"TENANTSCOPE_JWKS_URL": jwks_file.as_uri()}) as aws:
        import boto3
        import requests
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.sts.models import sts_backends

        from tenantscope import (
            CrossTenantAccess,
            seal_input,
            set_tracer,
            sign_message,
            tenant_bucket,
            tenant_s3,
            tenant_scope,
            tenant_table,
        )

        set_tracer(tracer)
        implicit_roles = {f"{name}Role" for name in aws.functions}
        created = [n for n in aws.physical if n not in aws.skipped and n not in implicit_roles]
        print(f"Local AWS from template.yaml: {len(created)} resources ({', '.join(sorted(created))})")
        tokens = {t: issuer.token(t, subject=f"{t}-user") for t in TENANTS}
        table_name = aws.physical["AppTable"]["Ref"]
        bucket_name = aws.physical["FilesBucket"]["Ref"]

        print("1. Two tenants stock the same item id in one pooled table")
        for tenant, stock in (("acme", 5), ("globex", 3)):
            r = aws.http("PUT", "/items/widget", tokens[tenant], {"name": f"{tenant} widget", "stock": stock})
            demo.expect(
                f"{tenant} PUT /items/widget stock={stock} -> {r['statusCode']}", r["statusCode"] == 200
            )

        print("2. Orders become signed messages, then sealed executions")
        orders: dict[str, list[tuple[str, str]]] = defaultdict(list)  # tenant -> [(order id, expected)]
        for tenant, quantity, fail in (
            ("acme", 2, False),
            ("acme", 2, False),
            ("globex", 1, False),
            ("globex", 1, True),
        ):
            request = {"item_id": "widget", "quantity": quantity, "simulate_payment_failure": fail}
            # The first order carries an Idempotency-Key, as a client that may retry it sends it.
            key = {"Idempotency-Key": f"{tenant}-first"} if not orders[tenant] else None
            r = aws.http("POST", "/orders", tokens[tenant], request, key)
            orders[tenant].append((body(r)["id"], "FAILED" if fail else "COMPLETED"))
            demo.expect(
                f"{tenant} POST /orders quantity={quantity}{' (payment will fail)' if fail else ''}"
                f"{' with an Idempotency-Key' if key else ''} -> {r['statusCode']} {body(r).get('status')}",
                r["statusCode"] == 202,
            )
        # A retry of acme's first order (its answer lost to a timeout): the same order, not another.
        first = orders["acme"][0][0]
        r = aws.http(
            "POST",
            "/orders",
            tokens["acme"],
            {"item_id": "widget", "quantity": 2},
            {"Idempotency-Key": "acme-first"},
        )
        demo.expect(
            f"acme POST /orders again with the same Idempotency-Key -> {r['statusCode']}, "
            f"order {body(r).get('id', '')[:8]}, the same order",
            r["statusCode"] == 202 and body(r).get("id") == first,
        )
        batches = drain(aws)
        # Five messages: the retry sent the PENDING order's again, and the worker starts it once.
        demo.expect(
            f"worker took {sum(d for d, _ in batches)} records in {len(batches)} batch(es), "
            f"{sum(len(f) for _, f in batches)} failures",
            batches == [(5, [])],
        )
        executions = aws.wait_for_executions()
        demo.expect(
            f"{len(executions)} executions ran",
            len(executions) == 4,
            ", ".join(sorted(Counter(e["status"] for e in executions.values()).elements())),
        )
        for tenant in TENANTS:
            for order_id, expected in orders[tenant]:
                status = body(aws.http("GET", f"/orders/{order_id}", tokens[tenant])).get("status")
                demo.expect(f"{tenant} order {order_id[:8]} is {status}", status == expected)
        for tenant, expected in (("acme", 1), ("globex", 2)):
            stock = body(aws.http("GET", "/items/widget", tokens[tenant])).get("stock")
            demo.expect(
                f"{tenant} widget stock is {stock} (failed payment released its reservation)"
                if tenant == "globex"
                else f"{tenant} widget stock is {stock}",
                stock == expected,
            )

        print("3. Each tenant's files, side by side in one pooled bucket")
        manuals = {tenant: f"{tenant}'s widget manual".encode() for tenant in TENANTS}
        for tenant in TENANTS:
            r = aws.http("POST", "/items/widget/attachment", tokens[tenant], {"content_type": "text/plain"})
            form = body(r) if r["statusCode"] == 200 else {"url": "", "fields": {}}
            key = form["fields"].get("key")
            upload = {"file": ("manual.txt", manuals[tenant])}
            posted = (
                requests.post(form["url"], data=form["fields"], files=upload, timeout=10) if key else None
            )
            demo.expect(
                f"{tenant} POST /items/widget/attachment -> {r['statusCode']}, a form for {key}; "
                f"the upload -> {'-' if posted is None else posted.status_code}",
                key == f"tenants/{tenant}/items/widget/attachment" and posted is not None and posted.ok,
            )
        for tenant in TENANTS:
            r = aws.http("GET", "/items/widget/attachment", tokens[tenant])
            url = body(r).get("url")
            content = requests.get(url, timeout=10).content if url else b""
            demo.expect(
                f"{tenant} GET /items/widget/attachment -> {r['statusCode']}, its link downloads: "
                f"{content.decode(errors='replace')}",
                content == manuals[tenant],
            )
        for tenant in TENANTS:
            completed = sorted(o for o, expected in orders[tenant] if expected == "COMPLETED")
            with tenant_scope(tenant):
                receipts = tenant_bucket(bucket_name).list("receipts/")
            r = aws.http("GET", f"/orders/{completed[0]}/receipt", tokens[tenant])
            url = body(r).get("url")
            receipt = requests.get(url, timeout=10).json() if url else {}
            demo.expect(
                f"{tenant} has {len(receipts)} receipt(s), one per completed order; "
                f"GET /orders/{completed[0][:8]}/receipt -> {r['statusCode']}, a link to its receipt",
                receipts == [f"receipts/{o}.json" for o in completed]
                and receipt.get("order_id") == completed[0],
            )

        print("4. Attacks are stopped")
        r = aws.http("GET", "/items/widget", forger.token("acme"))
        demo.expect(f"forged JWT (right kid, wrong key) -> {r['statusCode']}", r["statusCode"] == 401)
        r = aws.http("GET", "/items/widget", issuer.token("acme", lifetime=-3600))
        demo.expect(f"expired JWT -> {r['statusCode']}", r["statusCode"] == 401)
        acme_order = orders["acme"][0][0]
        r = aws.http("GET", f"/orders/{acme_order}", tokens["globex"])
        demo.expect(f"globex GET acme's order -> {r['statusCode']}", r["statusCode"] == 404)
        with tenant_scope("globex"):
            try:
                tenant_table(table_name).get_item(Key={"pk": "TENANT#acme#ORDER", "sk": acme_order})
                demo.expect("globex code reading acme's key directly is refused by the guard", False)
            except CrossTenantAccess as refusal:
                demo.expect(
                    "globex code reading acme's key directly is refused by the guard", True, str(refusal)
                )
        r = aws.http("GET", f"/orders/{acme_order}/receipt", tokens["globex"])
        demo.expect(f"globex GET acme's receipt -> {r['statusCode']}", r["statusCode"] == 404)
        acme_file = "tenants/acme/items/widget/attachment"
        with tenant_scope("globex"):
            for what, attempt in (
                (
                    "reading acme's attachment by its key",
                    lambda: tenant_s3().get_object(Bucket=bucket_name, Key=acme_file),
                ),
                (
                    "signing a link to acme's attachment",
                    lambda: tenant_s3().generate_presigned_url(
                        "get_object", Params={"Bucket": bucket_name, "Key": acme_file}
                    ),
                ),
                (
                    "reaching acme's attachment with ../",
                    lambda: tenant_bucket(bucket_name).get("../acme/items/widget/attachment"),
                ),
                (
                    "listing every tenant's files",
                    lambda: tenant_s3().list_objects_v2(Bucket=bucket_name, Prefix="tenants/"),
                ),
            ):
                try:
                    attempt()
                    demo.expect(f"globex code {what} is refused by the guard", False)
                except CrossTenantAccess as refusal:
                    demo.expect(f"globex code {what} is refused by the guard", True, str(refusal))

        sqs = boto3.client("sqs")
        queue_url, queue_arn = aws.physical["OrderQueue"]["Ref"], aws.physical["OrderQueue"]["Arn"]
        # Sealed for an order acme does not have, then sent naming acme's order: accepted, it would
        # succeed (the order is already started), so only the refused signature can fail it.
        sealed = json.dumps({"order_id": "0" * 32})
        attributes = sign_message(sealed, destination=queue_arn, tenant_id="acme")
        tampered = sealed.replace("0" * 32, acme_order)
        sqs.send_message(QueueUrl=queue_url, MessageBody=tampered, MessageAttributes=attributes)
        batches = drain(aws)
        dlq = sqs.receive_message(
            QueueUrl=aws.physical["OrderDeadLetterQueue"]["Ref"], MaxNumberOfMessages=10
        ).get("Messages", [])
        demo.expect(
            f"tampered queue message: a batch item failure on each of {len(batches)} deliveries, "
            "then the DLQ",
            all(len(f) == 1 for _, f in batches) and [m["Body"] for m in dlq] == [tampered],
        )

        sfn = boto3.client("stepfunctions")
        machine = aws.physical["OrderStateMachine"]["Arn"]
        document = seal_input(
            {"order_id": acme_order, "item_id": "widget", "quantity": 1},
            state_machine_arn=machine,
            execution_name="sealed-for-this-one",
            tenant_id="acme",
        )
        sfn.start_execution(stateMachineArn=machine, name="started-as-another", input=json.dumps(document))
        failed = aws.wait_for_executions()["started-as-another"]
        demo.expect(
            f"input sealed for another execution -> {failed['status']} with {failed.get('error')}",
            failed["status"] == "FAILED" and failed.get("error") == "TenantAuthError",
        )

        print("5. Per tenant")
        served = sts_backends[DEFAULT_ACCOUNT_ID]["global"].assumed_roles
        for tenant in TENANTS:
            statuses = Counter(
                body(aws.http("GET", f"/orders/{o}", tokens[tenant])).get("status") for o, _ in orders[tenant]
            )
            sts_calls = sum(1 for role in served if role.session_name == tenant)
            spans = Counter(
                s.name.rsplit(".", 1)[-1] for s in tracer.spans if s.annotations.get("tenant_id") == tenant
            )
            print(
                f"  {tenant:7} orders {dict(statuses)}; STS AssumeRole calls: {sts_calls}; "
                f"traced units: {dict(spans)}"
            )
            demo.expect(f"{tenant} credentials were vended once and reused", sts_calls == 1)
        refused = Counter(
            error.__name__
            for s in tracer.spans
            if "tenant_id" not in s.annotations
            for error, _ in s.errors[:1]
        )
        print(f"  refused before any tenant was trusted: {dict(refused)}")
        set_tracer(None)

    print(
        "demo: all expectations held" if not demo.failures else f"demo: {demo.failures} expectation(s) FAILED"
    )
    return 1 if demo.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
