"""One call to run your handlers as deployed functions would, on moto, with tenants' credentials."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .._cache import reset_process_state
from .._config import _csv, _parse_tables
from .._keyring import KeyRing, StaticKeyRing
from ._doubles import LambdaContext
from ._events import REGION, RING, RING_DOCUMENT, http_api_event, ring_spec, sfn_task_event, signed_sqs_record
from ._issuer import LocalIssuer

__all__ = ["LocalTenants", "local_tenants"]

ROLE_ARN = "arn:aws:iam::123456789012:role/tenantscope-tenant"


@dataclass
class LocalTenants:
    """What :func:`local_tenants` gives a test: the issuer, the key ring, and event builders that use them."""

    issuer: LocalIssuer
    ring: KeyRing
    environment: dict[str, str] = field(repr=False)

    def token(self, tenant_id: str, **claims: Any) -> str:
        """A valid bearer token for ``tenant_id`` (extra claims override the defaults)."""
        return self.issuer.token(tenant_id, claims=claims or None)

    def api_event(
        self, tenant_id: str | None, *, method: str = "GET", path: str = "/", body: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        """An HTTP API request with ``tenant_id``'s token (None: no Authorization header)."""
        token = self.token(tenant_id) if tenant_id is not None else None
        return http_api_event(token, method=method, path=path, body=body, **kwargs)

    def sqs_record(self, body: str, *, tenant_id: str, **kwargs: Any) -> dict[str, Any]:
        """An SQS record whose body is sealed for ``tenant_id`` (see :func:`signed_sqs_record`)."""
        return signed_sqs_record(body, tenant_id=tenant_id, ring=self.ring, **kwargs)

    def sfn_event(self, payload: Any, *, tenant_id: str, **kwargs: Any) -> dict[str, Any]:
        """The event of a task of an execution sealed for ``tenant_id`` (see :func:`sfn_task_event`)."""
        return sfn_task_event(payload, tenant_id=tenant_id, ring=self.ring, **kwargs)

    def context(self, **kwargs: Any) -> LambdaContext:
        return LambdaContext(**kwargs)

    def assumed_tenants(self) -> list[str]:
        """The tenant of every AssumeRole call moto's STS has served, in order: count STS calls."""
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.sts.models import sts_backends

        return [role.session_name for role in sts_backends[DEFAULT_ACCOUNT_ID]["global"].assumed_roles]


@contextmanager
def local_tenants(
    *,
    tables: str = "",
    buckets: str = "",
    sort_key: str | None = "sk",
    issuer: LocalIssuer | None = None,
    ring_document: Mapping[str, Any] | None = None,
    environment: Mapping[str, str] | None = None,
) -> Iterator[LocalTenants]:
    """Run handlers against moto (in process) as deployed functions would run against AWS.

    Inside the block: moto's ``mock_aws`` is active; the environment is a function's, pointed at
    a local issuer (its JWKS inline) and an inline signing key ring (``ring_document``, by default
    the test ring :data:`RING`), with ``TENANTSCOPE_TABLES`` set
    to ``tables`` (its syntax: ``"notes=pk,notes/by_owner=owner_pk"``) and each of those tables
    created (partition key, and ``sort_key`` unless None), and ``TENANTSCOPE_BUCKETS`` set to
    ``buckets`` (comma-separated names) and each bucket created; credentials are vended per
    tenant by moto's STS, exactly as the real STS would be called. Everything is put back
    afterwards. moto does not enforce IAM: the guards are what keep tenants apart here.

    The environment is put back whole when the block ends. In a pytest test, change a variable
    inside the block with ``monkeypatch.context()``: pytest's own ``monkeypatch`` is undone only
    after the block has ended, and would then put back the value the block had set, for the
    tests that follow.

    Needs ``moto[dynamodb,sts,iam]`` in your test dependencies (not in the layer), and ``s3``
    among the extras for ``buckets``.

    >>> from tenantscope import api_handler, current_tenant
    >>> @api_handler
    ... def handler(event, context):
    ...     return {"statusCode": 200, "body": current_tenant().tenant_id}
    >>> with local_tenants() as local:
    ...     handler(local.api_event("acme"), local.context())["body"]
    'acme'
    """
    from moto import mock_aws

    issuer = issuer or LocalIssuer.generate()
    document = ring_document or RING_DOCUMENT
    variables = {
        **issuer.environment(),
        "TENANTSCOPE_ROLE_ARN": ROLE_ARN,
        "TENANTSCOPE_TABLES": tables,
        "TENANTSCOPE_BUCKETS": buckets,
        "TENANTSCOPE_SIGNING_KEYS": ring_spec(document),
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        **(environment or {}),
    }
    saved = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_LAMBDA_FUNCTION_NAME"):
        os.environ.pop(name, None)
    os.environ.update(variables)
    reset_process_state()
    try:
        with mock_aws():
            # Where the function's settings look for them, should ``environment`` name another region.
            region = variables["AWS_REGION"]
            _create_tables(tables, sort_key, region)
            _create_buckets(buckets, region)
            ring = RING if ring_document is None else StaticKeyRing(document)
            yield LocalTenants(issuer, ring, variables)
    finally:
        reset_process_state()
        os.environ.clear()
        os.environ.update(saved)


def _create_buckets(buckets: str, region: str) -> None:
    import boto3

    s3 = boto3.client("s3", region_name=region)
    # S3 names the region of a bucket outside us-east-1, and refuses us-east-1 named.
    location: dict[str, Any] = (
        {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    )
    for name in _csv(buckets):
        s3.create_bucket(Bucket=name, **location)


def _create_tables(tables: str, sort_key: str | None, region: str) -> None:
    import boto3

    dynamodb = boto3.client("dynamodb", region_name=region)
    for spec in _parse_tables(tables):
        if not spec.partition_key:
            raise ValueError(f"local_tenants needs each table's partition key: {spec.name}=<key>")
        keys = [(spec.partition_key, "HASH"), *([(sort_key, "RANGE")] if sort_key else [])]
        indexes = [
            {
                "IndexName": index,
                "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index, key in spec.index_partition_keys
        ]
        attributes = {name for name, _ in keys} | {key for _, key in spec.index_partition_keys}
        table: dict[str, Any] = {
            "TableName": spec.name,
            "KeySchema": [{"AttributeName": name, "KeyType": kind} for name, kind in keys],
            "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in sorted(attributes)],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if indexes:
            table["GlobalSecondaryIndexes"] = indexes
        dynamodb.create_table(**table)
