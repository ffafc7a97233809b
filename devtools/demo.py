"""`make demo`: two tenants use the sample API on an embedded local AWS (moto, in-process).

Prints one line per step and exits 0 only if every expectation held.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/tenantscope-demo-tenant"
TABLE = "tenantscope-demo"


class Demo:
    def __init__(self) -> None:
        self.failures = 0

    def expect(self, what: str, ok: bool, detail: str = "") -> None:
        mark = "ok  " if ok else "FAIL"
        self.failures += not ok
        print(f"  [{mark}] {what}{f'  ({detail})' if detail else ''}")


def api_event(
    token: str | None, method: str, path: str, record_id: str | None = None, body: Any = None
) -> dict[str, Any]:
    resource = path if record_id is None else path.replace(record_id, "{id}")
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return {
        "version": "2.0",
        "routeKey": f"{method} {resource}",
        "rawPath": path,
        "headers": headers,
        "pathParameters": {"id": record_id} if record_id else {},
        "requestContext": {"http": {"method": method, "path": path}, "requestId": "demo"},
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


def main() -> int:
    # Local AWS: fake function-role credentials, never a real account.
    os.environ.update(
        AWS_ACCESS_KEY_ID="demo-function-role",
        AWS_SECRET_ACCESS_KEY="demo",
        AWS_SESSION_TOKEN="demo",
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
    )
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)

    import boto3
    from moto import mock_aws
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sts.models import sts_backends

    from devtools.issuer import DevIssuer

    issuer = DevIssuer.generate()
    forger = DevIssuer.generate()  # same issuer name and kid, different key
    workdir = Path(tempfile.mkdtemp(prefix="tenantscope-demo-"))
    jwks_file = workdir / "jwks.json"
    jwks_file.write_text(json.dumps(issuer.jwks()))
    os.environ.update(
        TENANTSCOPE_JWT_ISSUER=issuer.issuer,
        TENANTSCOPE_JWT_AUDIENCE=issuer.audience,
        TENANTSCOPE_JWKS_URL=jwks_file.as_uri(),
        TENANTSCOPE_ROLE_ARN=ROLE_ARN,
        TENANTSCOPE_TABLES=f"{TABLE}=pk",
        APP_TABLE_NAME=TABLE,
    )
    sys.path.insert(0, str(ROOT / "functions"))

    # The layer logs each refusal; the demo reports them itself.
    logging.getLogger("tenantscope").setLevel(logging.CRITICAL)
    demo = Demo()
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName=TABLE,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        from app import api
        from tenantscope import CrossTenantAccess, tenant_scope, tenant_table

        call: Callable[..., dict[str, Any]] = lambda *a, **k: api.handler(api_event(*a, **k), None)  # noqa: E731
        tokens = {t: issuer.token(t, subject=f"{t}-user") for t in ("acme", "globex")}

        print("1. Two tenants write and read the same item id in one pooled table")
        for tenant, colour in (("acme", "red"), ("globex", "blue")):
            r = call(tokens[tenant], "PUT", "/items/widget", "widget", {"colour": colour})
            demo.expect(f"{tenant} PUT /items/widget -> {r['statusCode']}", r["statusCode"] == 200)
        for tenant, colour in (("acme", "red"), ("globex", "blue")):
            r = call(tokens[tenant], "GET", "/items/widget", "widget")
            got = json.loads(r["body"]).get("colour")
            demo.expect(f"{tenant} GET /items/widget sees its own colour {got!r}", got == colour)
            r = call(tokens[tenant], "GET", "/items")
            listed = json.loads(r["body"])["items"]
            demo.expect(
                f"{tenant} GET /items lists only its own item", [i["colour"] for i in listed] == [colour]
            )

        print("2. Attacks are refused")
        r = call(forger.token("acme"), "GET", "/items/widget", "widget")
        demo.expect(f"forged JWT (right kid, wrong key) -> {r['statusCode']}", r["statusCode"] == 401)
        r = call(issuer.token("acme", lifetime=-3600), "GET", "/items/widget", "widget")
        demo.expect(f"expired JWT -> {r['statusCode']}", r["statusCode"] == 401)
        r = call(issuer.token("acme#globex"), "GET", "/items")
        demo.expect(f"tenant claim 'acme#globex' -> {r['statusCode']}", r["statusCode"] == 403)
        with tenant_scope("globex"):
            try:
                tenant_table(TABLE).get_item(Key={"pk": "TENANT#acme#ITEM", "sk": "widget"})
                demo.expect("globex code reading acme's key directly is refused by the guard", False)
            except CrossTenantAccess as refusal:
                demo.expect(
                    "globex code reading acme's key directly is refused by the guard", True, str(refusal)
                )

        print("3. Summary")
        served = sts_backends[DEFAULT_ACCOUNT_ID]["global"].assumed_roles
        for tenant in ("acme", "globex"):
            calls = sum(1 for role in served if role.session_name == tenant)
            print(f"  {tenant}: {calls} STS AssumeRole call(s) for all its requests")
            demo.expect(f"{tenant} credentials were vended once and cached", calls == 1)

    print(
        "demo: all expectations held" if not demo.failures else f"demo: {demo.failures} expectation(s) FAILED"
    )
    return 1 if demo.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
