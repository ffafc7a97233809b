"""tenantscope.testing.local_tenants with buckets: a user's handler that keeps files, on moto."""

from __future__ import annotations

import json
from typing import Any

from tenantscope import api_handler, tenant_bucket
from tenantscope.testing import local_tenants


@api_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    files = tenant_bucket("uploads")
    name = event["pathParameters"]["name"]
    if event["requestContext"]["http"]["method"] == "PUT":
        files.put(name, event["body"].encode())
        return {"statusCode": 204}
    return {"statusCode": 200, "body": json.dumps({"body": files.get(name).decode(), "all": files.list()})}


def request(local: Any, tenant: str, name: str, body: str | None = None) -> dict[str, Any]:
    method = "GET" if body is None else "PUT"
    event = local.api_event(tenant, method=method, path=f"/files/{name}", body=body)
    event["pathParameters"] = {"name": name}
    if body is not None:
        event["body"] = body
    response: dict[str, Any] = handler(event, local.context())
    return response


def test_each_tenant_keeps_its_own_files_and_a_foreign_key_is_refused() -> None:
    # GIVEN two tenants that each upload notes.txt to the pooled bucket
    with local_tenants(buckets="uploads") as local:
        assert request(local, "acme", "notes.txt", "acme's")["statusCode"] == 204
        assert request(local, "globex", "notes.txt", "globex's")["statusCode"] == 204
        # THEN each reads its own, and lists only its own
        assert json.loads(request(local, "acme", "notes.txt")["body"]) == {
            "body": "acme's",
            "all": ["notes.txt"],
        }
        # AND a key that climbs out of the tenant's prefix is a 403 that says nothing more
        refused = request(local, "acme", "../globex/notes.txt")
        assert refused["statusCode"] == 403
        assert "globex" not in refused["body"]
        assert local.assumed_tenants() == ["acme", "globex"]
