"""What a tenant's STS session is allowed: session tags or an inline session policy.

Both strategies produce an :class:`AssumeRoleRequest` for one validated tenant id.
The role session name and SourceIdentity carry the tenant id so CloudTrail shows who acted, and
the tenant tag is sent in both: the tenant role's trust policy (:func:`trust_policy`) and the
callers' own policies (:func:`assume_statement`) must allow what the request carries.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._config import ENV, ISOLATION_SESSION_POLICY, ISOLATION_SESSION_TAGS, Settings
from ._errors import ConfigurationError, Reason
from ._tenant_id import validate_tenant_id

__all__ = [
    "ASSUME_ACTIONS",
    "ITEM_ACTIONS",
    "MAX_SESSION_POLICY_CHARS",
    "OBJECT_ACTIONS",
    "AssumeRoleRequest",
    "assume_role_request",
    "assume_statement",
    "leading_key_patterns",
    "object_prefix_patterns",
    "session_policy",
    "tenant_object_prefix",
    "tenant_prefix",
    "tenant_statements",
    "trust_policy",
]

# Item-level actions only. Never Scan (ForAllValues:StringLike is vacuously true when a
# request has no leading key) and never PartiQL (ExecuteStatement and friends).
ITEM_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
)
# Object-level actions on the tenant's prefix only: no bucket-level write, no ACL, no policy,
# no object versions (s3:GetObjectVersion is what a VersionId needs, and it is not granted).
OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
MAX_SESSION_POLICY_CHARS = 2048
_LONGEST_TENANT_ID = "a" * 64  # the tenant id grammar's longest
# What every AssumeRoleRequest needs, whatever the strategy: AssumeRole itself, TagSession for the
# tenant tag and SetSourceIdentity for the tenant as SourceIdentity. The tenant role's trust policy
# and the caller's identity policy must both allow all three, or STS refuses every request.
ASSUME_ACTIONS = ("sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity")


def tenant_prefix(tenant_ref: str) -> str:
    """The partition key prefix owned by a tenant: the one place its format is defined.

    ``tenant_ref`` is an id already validated (a TenantContext's, or at an AssumeRole request)
    or an IAM policy variable.

    >>> tenant_prefix("acme")
    'TENANT#acme'
    """
    return f"TENANT#{tenant_ref}"


def tenant_object_prefix(tenant_ref: str) -> str:
    """The object key prefix owned by a tenant in a pooled bucket: the one place its format is
    defined. The trailing ``/`` is what keeps ``acme`` from reaching ``acme-corp``'s objects.

    >>> tenant_object_prefix("acme")
    'tenants/acme/'
    """
    return f"tenants/{tenant_ref}/"


def object_prefix_patterns(tenant_ref: str) -> list[str]:
    """StringLike patterns for the ``s3:prefix`` of a tenant's listings: its folder, or below it.

    ``tenant_ref`` is a validated id or an IAM policy variable.
    """
    prefix = tenant_object_prefix(tenant_ref)
    return [prefix, f"{prefix}*"]


def leading_key_patterns(tenant_ref: str) -> list[str]:
    """StringLike patterns for the keys of one tenant: the exact prefix, or the prefix then '#'.

    The '#' after the id is what keeps ``acme`` from matching ``acme-corp`` or ``acme1``.
    ``tenant_ref`` is a validated id or an IAM policy variable.
    """
    prefix = tenant_prefix(tenant_ref)
    return [prefix, f"{prefix}#*"]


@dataclass(frozen=True)
class AssumeRoleRequest:
    """The parameters of one STS AssumeRole call for one tenant."""

    tenant_id: str
    role_arn: str
    strategy: str
    duration_seconds: int
    tags: tuple[tuple[str, str], ...]
    policy: str | None

    def to_boto3(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "RoleArn": self.role_arn,
            "RoleSessionName": self.tenant_id,
            "SourceIdentity": self.tenant_id,
            "DurationSeconds": self.duration_seconds,
            "Tags": [{"Key": k, "Value": v} for k, v in self.tags],
        }
        if self.policy is not None:
            params["Policy"] = self.policy
        return params


def _partition_and_account(settings: Settings) -> tuple[str, str]:
    # arn:<partition>:iam::<account>:role/<name> gives the partition and account.
    parts = (settings.role_arn or "").split(":")
    if len(parts) < 6 or not settings.region:
        raise ConfigurationError(
            Reason.MISSING_SETTING, f"session-policy needs {ENV.ROLE_ARN} and {ENV.REGION}"
        )
    return parts[1], parts[4]


def tenant_statements(
    tenant_ref: str, table_arns: Sequence[str] = (), bucket_arns: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The statements that limit a principal to one tenant's items and objects: the one
    definition of both, used with a literal id by the session policy and with the session tag's
    policy variable for the role's ABAC policy (which the template must equal).

    ``tenant_ref`` is a validated id or an IAM policy variable.
    """
    statements: list[dict[str, Any]] = []
    if table_arns:
        statements.append(
            {
                "Sid": "TenantItems",
                "Effect": "Allow",
                "Action": list(ITEM_ACTIONS),
                "Resource": [r for arn in table_arns for r in (arn, f"{arn}/index/*")],
                "Condition": {
                    "ForAllValues:StringLike": {"dynamodb:LeadingKeys": leading_key_patterns(tenant_ref)},
                    "Null": {"dynamodb:LeadingKeys": "false"},
                },
            }
        )
    if bucket_arns:
        prefix = tenant_object_prefix(tenant_ref)
        statements += [
            {
                "Sid": "TenantObjects",
                "Effect": "Allow",
                "Action": list(OBJECT_ACTIONS),
                "Resource": [f"{arn}/{prefix}*" for arn in bucket_arns],
            },
            {
                # Listing needs a prefix, and only the tenant's. StringLike on an absent prefix is
                # already false; the Null test says so outright, and keeps saying it if the
                # operator is ever edited to an ...IfExists one, which an absent prefix would pass.
                "Sid": "TenantListing",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": list(bucket_arns),
                "Condition": {
                    "StringLike": {"s3:prefix": object_prefix_patterns(tenant_ref)},
                    "Null": {"s3:prefix": "false"},
                },
            },
        ]
    return statements


def trust_policy(caller_role_arns: Sequence[Any], tag_key: str = "TenantId") -> dict[str, Any]:
    """The tenant role's trust policy: only ``caller_role_arns`` (the roles of the functions that
    use tenantscope) may assume it, only with the tenant tag and SourceIdentity every request
    carries, and with no session tag other than ``tag_key`` (``TENANTSCOPE_TENANT_TAG_KEY``).

    >>> trust_policy(["arn:aws:iam::123456789012:role/api"])["Statement"][0]["Action"]
    ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity']
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ThisStacksFunctionsOnly",
                "Effect": "Allow",
                "Principal": {"AWS": list(caller_role_arns)},
                "Action": list(ASSUME_ACTIONS),
                "Condition": {
                    "ForAllValues:StringEquals": {"aws:TagKeys": [tag_key]},
                    # ForAllValues holds over no tags at all: the tag and the source identity
                    # must each be present, so no session is made for no tenant.
                    "Null": {f"aws:RequestTag/{tag_key}": "false", "sts:SourceIdentity": "false"},
                },
            }
        ],
    }


def assume_statement(tenant_role_arn: Any) -> dict[str, Any]:
    """The statement a caller's (a function role's) own policy needs to assume the tenant role."""
    return {
        "Sid": "AssumeTenantRole",
        "Effect": "Allow",
        "Action": list(ASSUME_ACTIONS),
        "Resource": tenant_role_arn,
    }


def session_policy(tenant_id: str, settings: Settings) -> str:
    """The inline session policy that limits a session to one tenant's leading keys and objects.

    Raises :class:`ConfigurationError` before a policy could exceed the STS limit.
    """
    tenant_id = validate_tenant_id(tenant_id)  # never build a pattern from an unchecked id
    if not settings.tables and not settings.buckets:
        raise ConfigurationError(
            Reason.MISSING_SETTING, f"session-policy needs {ENV.TABLES} or {ENV.BUCKETS}"
        )
    partition, account = _partition_and_account(settings)
    tables = [f"arn:{partition}:dynamodb:{settings.region}:{account}:table/{t.name}" for t in settings.tables]
    buckets = [f"arn:{partition}:s3:::{name}" for name in settings.buckets]
    # The size is judged for the longest id the grammar allows, so that a configuration serves
    # every tenant or none, rather than failing only for the tenants with long ids.
    longest = len(_policy_document(_LONGEST_TENANT_ID, tables, buckets))
    if longest > MAX_SESSION_POLICY_CHARS:
        raise ConfigurationError(
            Reason.SESSION_POLICY_TOO_LARGE,
            f"{longest} chars for a tenant id of {len(_LONGEST_TENANT_ID)}, over {MAX_SESSION_POLICY_CHARS}: "
            "configure fewer tables or buckets",
        )
    return _policy_document(tenant_id, tables, buckets)


def _policy_document(tenant_id: str, tables: list[str], buckets: list[str]) -> str:
    statements = tenant_statements(tenant_id, tables, buckets)
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))


def assume_role_request(tenant_id: str, settings: Settings) -> AssumeRoleRequest:
    """The AssumeRole request that scopes a session to ``tenant_id`` under the configured strategy."""
    tenant_id = validate_tenant_id(tenant_id)
    if not settings.role_arn:
        raise ConfigurationError(
            Reason.MISSING_SETTING, f"{ENV.ROLE_ARN}: set it to the ARN of the role assumed for each tenant"
        )
    duration = settings.session_seconds
    tags = ((settings.tenant_tag_key, tenant_id),)
    if settings.isolation == ISOLATION_SESSION_TAGS:
        policy = None
    elif settings.isolation == ISOLATION_SESSION_POLICY:
        policy = session_policy(tenant_id, settings)
    else:  # Settings.load refuses other values; settings made otherwise fail closed here
        raise ConfigurationError(Reason.INVALID_SETTING, "unknown isolation strategy")
    return AssumeRoleRequest(tenant_id, settings.role_arn, settings.isolation, duration, tags, policy)
