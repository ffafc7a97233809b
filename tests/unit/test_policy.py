"""Policies as data: what a tenant's STS session may do, under both isolation strategies.

moto enforces neither session policies, nor session tags, nor StringLike/ForAllValues/Null
conditions, so the documents are evaluated with the small IAM evaluator in tests/iam_eval.py.
The first part of this file tests that evaluator itself.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tenantscope import _policy
from tenantscope._config import MAX_CLOCK_SKEW_SECONDS, Settings, TableSpec
from tenantscope._credentials import CredentialVendor, FakeSts
from tenantscope._errors import (
    ConfigurationError,
    InvalidTenantId,
    Reason,
    TemporarilyUnavailable,
)
from tenantscope._policy import (
    ASSUME_ACTIONS,
    ITEM_ACTIONS,
    MAX_SESSION_POLICY_CHARS,
    OBJECT_ACTIONS,
    assume_role_request,
    assume_statement,
    leading_key_patterns,
    session_policy,
    tenant_object_prefix,
    tenant_prefix,
    trust_policy,
)
from tenantscope._replay import RETAIN_AFTER_EXPIRY_SECONDS
from tenantscope._tenant_id import TENANT_ID_PATTERN, validate_tenant_id
from tests.conftest import BUCKET, REGION, ROLE_ARN, TABLE, policy_settings
from tests.iam_eval import (
    TABLE_WIDE_ACTIONS,
    TENANT_TAG_VARIABLE,
    NotModelled,
    abac_policy,
    allowed_by_all,
    decide,
    glob_match,
    is_allowed,
)

ACCOUNT = "123456789012"
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}"
INDEX_ARN = f"{TABLE_ARN}/index/gsi1"
LEADING_KEYS = "dynamodb:LeadingKeys"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"

MANAGEMENT_ACTIONS = (
    "dynamodb:CreateTable",
    "dynamodb:DeleteTable",
    "dynamodb:UpdateTable",
    "dynamodb:DescribeTable",
    "dynamodb:CreateBackup",
    "dynamodb:DeleteBackup",
    "dynamodb:RestoreTableFromBackup",
    "dynamodb:RestoreTableToPointInTime",
    "dynamodb:UpdateContinuousBackups",
    "dynamodb:ExportTableToPointInTime",
    "dynamodb:ImportTable",
    "dynamodb:UpdateTimeToLive",
    "dynamodb:TagResource",
    "dynamodb:UntagResource",
    "dynamodb:PutResourcePolicy",
    "dynamodb:DeleteResourcePolicy",
    "dynamodb:CreateGlobalTable",
    "dynamodb:UpdateGlobalTable",
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListTables",
    "dynamodb:*",
    "iam:PassRole",
    "sts:AssumeRole",
)
OTHER_RESOURCES = (
    f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/other",
    f"{TABLE_ARN}-2",
    f"{TABLE_ARN}2",
    f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE[:-1]}",
    f"arn:aws:dynamodb:us-west-2:{ACCOUNT}:table/{TABLE}",
    f"arn:aws:dynamodb:{REGION}:210987654321:table/{TABLE}",
    f"arn:aws-cn:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}",
    f"{TABLE_ARN}/stream/2026-01-01T00:00:00.000",
    f"{TABLE_ARN}/backup/01234567890123-abcdefgh",
    f"{TABLE_ARN}/export/01234567890123-abcdefgh",
    f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE.upper()}",
    f"arn:aws:s3:::{TABLE}",
    "*",
)

# Tenant ids that share prefixes: the classic way a "starts with" check leaks.
PREFIX_FAMILY = ("acme", "acme-corp", "acme1", "acme-1", "acme-co", "a1", "a10", "a100", "ab", "abc")


def random_tenant_ids(count: int, seed: int = 20261101) -> list[str]:
    """``count`` valid tenant ids, many of them prefixes of each other (fixed seed)."""
    rng = random.Random(seed)
    alphabet = string.ascii_lowercase + string.digits
    ids: set[str] = set()
    while len(ids) < count:
        length = rng.choice([2, 2, 3, 4, 5, 8, 12, 20, 40, 63, 64])
        inner = "".join(rng.choice(alphabet + "-") for _ in range(length - 2))
        base = rng.choice(alphabet) + inner + rng.choice(alphabet)
        ids.add(base)
        if len(base) <= 62:  # its "neighbours": longer ids that start with it
            ids.update({base + rng.choice(alphabet), base + "-" + rng.choice(alphabet)})
    return sorted(ids)[:count]


RANDOM_IDS = random_tenant_ids(300)
assert all(re.fullmatch(TENANT_ID_PATTERN, t) for t in RANDOM_IDS)


def foreign_keys(a: str, b: str) -> list[str]:
    """Leading keys that tenant ``a`` must never reach: ``b``'s keys and crafted look-alikes."""
    return [
        f"TENANT#{b}",
        f"TENANT#{b}#",
        f"TENANT#{b}#ITEM#1",
        f"TENANT#{b}#TENANT#{a}",
    ]


def look_alike_keys(a: str) -> list[str]:
    """Crafted keys near ``a``'s own (an id of digits has no upper case: those are left out)."""
    candidates = [
        "",
        "TENANT#",
        "TENANT##",
        "TENANT#*",
        "TENANT#?",
        f"TENANT#{a}X",
        f"TENANT#{a}1",
        f"TENANT#{a}-corp",
        f"TENANT#{a}-",
        f"TENANT#{a[:-1]}",
        f"TENANT#{a}*",
        f"TENANT#{a} ",
        f"TENANT#{a}\n",
        f"TENANT#{a}\u0000",
        f" TENANT#{a}",
        f"TENANT{a}",
        f"TENANT:{a}",
        f"TENANT#{a.upper()}",
        f"TENANT#{a.upper()}#ITEM#1",
        f"tenant#{a}",
        f"tenant#{a}#ITEM#1",
        f"Tenant#{a}#ITEM#1",
        f"{a}#ITEM#1",
        f"ITEM#1#TENANT#{a}",
        f"X#TENANT#{a}#1",
    ]
    return [k for k in candidates if not (k == f"TENANT#{a}" or k.startswith(f"TENANT#{a}#"))]


def own_keys(a: str) -> list[str]:
    return [f"TENANT#{a}", f"TENANT#{a}#", f"TENANT#{a}#ITEM#1", f"TENANT#{a}#ORDER#42#LINE#7"]


# --- the evaluator itself ---------------------------------------------------------------------


def one_statement(
    condition: dict[str, Any] | None = None,
    *,
    effect: str = "Allow",
    action: Any = "dynamodb:GetItem",
    resource: Any = "*",
    version: str = "2012-10-17",
) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": effect, "Action": action, "Resource": resource}
    if condition is not None:
        statement["Condition"] = condition
    return {"Version": version, "Statement": [statement]}


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("TENANT#acme#*", "TENANT#acme#", True),
        ("TENANT#acme#*", "TENANT#acme#ITEM#1", True),
        ("TENANT#acme#*", "TENANT#acme", False),
        ("TENANT#acme#*", "TENANT#acme1", False),
        ("TENANT#acme", "TENANT#acme#ITEM", False),  # full match, not a prefix match
        ("TENANT#acme", "xTENANT#acme", False),
        ("*", "", True),
        ("*", "any#thing:/at all\n", True),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("a?c", "abbc", False),
        ("a.c", "abc", False),  # '.' is literal, not a regex
        ("a[b]c", "abc", False),
        ("a[b]c", "a[b]c", True),
        ("a+", "aa", False),
        ("^a$", "^a$", True),
        ("a\\d", "a1", False),
        ("acme", "ACME", False),  # case-sensitive
        ("a*b*c", "axxbyyc", True),
        ("a*b*c", "axxbyy", False),
    ],
)
def test_glob_match_is_the_iam_string_like_glob(pattern: str, value: str, expected: bool) -> None:
    assert glob_match(pattern, value) is expected


def test_for_all_values_is_vacuously_true_without_the_key() -> None:
    # GIVEN a ForAllValues:StringLike condition alone
    policy = one_statement({"ForAllValues:StringLike": {LEADING_KEYS: ["TENANT#acme"]}})
    # THEN a request without the key, or with an empty list, passes: this is the Scan hole
    assert is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {})
    assert is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {LEADING_KEYS: []})
    # AND every value has to match
    assert is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {LEADING_KEYS: ["TENANT#acme"] * 2})
    assert not is_allowed(
        policy, "dynamodb:GetItem", TABLE_ARN, {LEADING_KEYS: ["TENANT#acme", "TENANT#globex"]}
    )
    # AND a Null condition closes the hole
    policy["Statement"][0]["Condition"]["Null"] = {LEADING_KEYS: "false"}
    assert not is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {})
    assert not is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {LEADING_KEYS: []})
    assert is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {LEADING_KEYS: ["TENANT#acme"]})


def test_for_any_value_needs_one_match_and_fails_without_the_key() -> None:
    policy = one_statement({"ForAnyValue:StringEquals": {LEADING_KEYS: ["a", "b"]}})
    assert is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {LEADING_KEYS: ["x", "b"]})
    assert not is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {LEADING_KEYS: ["x", "y"]})
    assert not is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {})


def test_string_equals_is_exact_and_has_no_wildcards() -> None:
    policy = one_statement({"StringEquals": {"aws:SourceAccount": ["1*", "222"]}})
    assert is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {"aws:SourceAccount": "222"})
    assert not is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {"aws:SourceAccount": "111"})
    assert is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {"aws:SourceAccount": "1*"})
    assert not is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {})  # absent key: no match


def test_null_condition() -> None:
    absent = one_statement({"Null": {"aws:SourceAccount": "true"}})
    present = one_statement({"Null": {"aws:SourceAccount": "false"}})
    assert is_allowed(absent, "dynamodb:GetItem", TABLE_ARN, {})
    assert not is_allowed(absent, "dynamodb:GetItem", TABLE_ARN, {"aws:SourceAccount": "1"})
    assert is_allowed(present, "dynamodb:GetItem", TABLE_ARN, {"aws:SourceAccount": "1"})
    assert not is_allowed(present, "dynamodb:GetItem", TABLE_ARN, {})


def test_operators_and_keys_are_anded_values_are_ored() -> None:
    policy = one_statement(
        {
            "StringEquals": {"k1": ["a", "b"], "k2": "c"},
            "StringLike": {"k3": "d*"},
        }
    )
    assert is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {"k1": "b", "k2": "c", "k3": "dx"})
    assert not is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {"k1": "b", "k2": "c", "k3": "x"})
    assert not is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {"k1": "b", "k3": "dx"})


def test_condition_key_names_are_case_insensitive_values_are_not() -> None:
    policy = one_statement(
        {
            "ForAllValues:StringLike": {"dynamodb:leadingkeys": "TENANT#acme"},
            "Null": {"DYNAMODB:LEADINGKEYS": "false"},
        }
    )
    assert is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {LEADING_KEYS: ["TENANT#acme"]})
    assert not is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {LEADING_KEYS: ["TENANT#ACME"]})


def test_explicit_deny_wins() -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "dynamodb:Scan", "Resource": "*"},
        ],
    }
    assert decide(policy, "dynamodb:GetItem", TABLE_ARN) == "Allow"
    assert decide(policy, "dynamodb:Scan", TABLE_ARN) == "ExplicitDeny"
    assert decide(policy, "s3:GetObject", "arn:aws:s3:::b/k") == "ImplicitDeny"


def test_actions_match_with_wildcards_case_insensitively_and_not_action() -> None:
    policy = one_statement(action=["dynamodb:Get*", "dynamodb:?uery"])
    assert is_allowed(policy, "dynamodb:GetItem", TABLE_ARN)
    assert is_allowed(policy, "DynamoDB:getitem", TABLE_ARN)
    assert is_allowed(policy, "dynamodb:Query", TABLE_ARN)
    assert not is_allowed(policy, "dynamodb:PutItem", TABLE_ARN)
    not_action = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "NotAction": "dynamodb:Scan", "Resource": "*"}],
    }
    assert is_allowed(not_action, "dynamodb:GetItem", TABLE_ARN)
    assert not is_allowed(not_action, "dynamodb:Scan", TABLE_ARN)


def test_resources_match_with_wildcards_case_sensitively() -> None:
    policy = one_statement(action="dynamodb:Query", resource=[TABLE_ARN, f"{TABLE_ARN}/index/*"])
    assert is_allowed(policy, "dynamodb:Query", INDEX_ARN)
    assert is_allowed(policy, "dynamodb:Query", TABLE_ARN)
    assert not is_allowed(policy, "dynamodb:Query", f"{TABLE_ARN}/stream/x")
    assert not is_allowed(policy, "dynamodb:Query", TABLE_ARN.upper())
    not_resource = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "dynamodb:GetItem", "NotResource": f"{TABLE_ARN}*"}],
    }
    assert is_allowed(not_resource, "dynamodb:GetItem", OTHER_RESOURCES[0])
    assert not is_allowed(not_resource, "dynamodb:GetItem", INDEX_ARN)


def test_policy_variables_come_from_principal_tags() -> None:
    policy = abac_policy([TABLE_ARN])
    keys = {LEADING_KEYS: ["TENANT#acme#ITEM#1"]}
    assert is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, keys, {"TenantId": "acme"})
    assert not is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, keys, {"TenantId": "globex"})
    # a missing tag makes the pattern match nothing (the Null condition stops the no-key case)
    assert not is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, keys, {})
    assert not is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, keys, {"tenantid": "acme"})
    assert not is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {}, {"TenantId": "acme"})


def test_policy_variables_need_version_2012_and_support_escapes() -> None:
    keys = {LEADING_KEYS: ["TENANT#acme"]}
    condition = {"ForAllValues:StringLike": {LEADING_KEYS: f"TENANT#{TENANT_TAG_VARIABLE}"}}
    old = one_statement(condition, version="2008-10-17")
    assert not is_allowed(old, "dynamodb:GetItem", TABLE_ARN, keys, {"TenantId": "acme"})
    assert is_allowed(old, "dynamodb:GetItem", TABLE_ARN, {LEADING_KEYS: [f"TENANT#{TENANT_TAG_VARIABLE}"]})
    escaped = one_statement({"StringLike": {"k": "a${*}b*"}})
    assert is_allowed(escaped, "dynamodb:GetItem", TABLE_ARN, {"k": "a*bxyz"})
    assert not is_allowed(escaped, "dynamodb:GetItem", TABLE_ARN, {"k": "axbxyz"})
    # conservatively, a wildcard inside a tag value acts as a wildcard: why ids may hold no '*'
    star = {"TenantId": "*"}
    assert is_allowed(
        abac_policy([TABLE_ARN]), "dynamodb:GetItem", TABLE_ARN, {LEADING_KEYS: ["TENANT#globex"]}, star
    )


def test_allowed_by_all_is_an_intersection() -> None:
    broad = one_statement(action="dynamodb:*")
    narrow = one_statement(action="dynamodb:GetItem")
    assert allowed_by_all([broad, narrow], "dynamodb:GetItem", TABLE_ARN)
    assert not allowed_by_all([broad, narrow], "dynamodb:PutItem", TABLE_ARN)
    assert not allowed_by_all([], "dynamodb:GetItem", TABLE_ARN)


@pytest.mark.parametrize(
    "policy",
    [
        one_statement({"StringNotEquals": {"k": "v"}}),
        one_statement({"StringLikeIfExists": {"k": "v"}}),
        one_statement({"ForAnyValue:ArnLike": {"k": "v"}}),
        one_statement({"ForAllValues:Null": {"k": "true"}}),
        one_statement({"Null": {"k": "maybe"}}),
        one_statement({"StringLike": {"k": "${aws:PrincipalTag/x, 'default'}"}}),
        one_statement(effect="Permit"),
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*"}]},
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Principal": {"AWS": "arn"}}],
        },
        {"Version": "2012-10-17"},
    ],
)
def test_unmodelled_semantics_raise_rather_than_guess(policy: dict[str, Any]) -> None:
    with pytest.raises(NotModelled):
        decide(policy, "dynamodb:GetItem", TABLE_ARN, {"k": "v"}, {"x": "y"})


def test_resource_policy_denies_with_bool_and_arn_conditions() -> None:
    # GIVEN a queue policy: nobody without TLS, and only the producer role may send
    producer = "arn:aws:iam::123456789012:role/stack-ApiFunctionRole-1"
    queue = "arn:aws:sqs:us-east-1:123456789012:orders"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "sqs:*", "Resource": queue},
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sqs:*",
                "Resource": queue,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "sqs:SendMessage",
                "Resource": queue,
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": [producer]}},
            },
        ],
    }

    def send(principal: str, tls: str = "true") -> str:
        context = {"aws:PrincipalArn": principal, "aws:SecureTransport": tls}
        return decide(policy, "sqs:SendMessage", queue, context)

    assert send(producer) == "Allow"
    assert send(producer, tls="false") == "ExplicitDeny"
    assert send(producer.replace("ApiFunction", "OrderWorkerFunction")) == "ExplicitDeny"
    assert decide(policy, "sqs:SendMessage", queue, {"aws:SecureTransport": "true"}) == "ExplicitDeny"
    like = one_statement({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/stack-*"}})
    assert is_allowed(like, "dynamodb:GetItem", TABLE_ARN, {"aws:PrincipalArn": producer})
    assert not is_allowed(like, "dynamodb:GetItem", TABLE_ARN, {})


def test_unqualified_operator_on_a_multi_valued_key_raises() -> None:
    policy = one_statement({"StringLike": {LEADING_KEYS: "TENANT#acme*"}})
    with pytest.raises(NotModelled):
        decide(policy, "dynamodb:GetItem", TABLE_ARN, {LEADING_KEYS: ["TENANT#acme", "TENANT#acme#1"]})


def test_json_string_policies_are_accepted() -> None:
    assert is_allowed(json.dumps(one_statement()), "dynamodb:GetItem", TABLE_ARN)


# --- the tenant policies under both strategies -------------------------------------------------


@dataclass(frozen=True)
class TenantSession:
    """What IAM sees for one tenant's session: the policy that limits it and its principal tags."""

    tenant_id: str
    strategy: str
    policy: dict[str, Any]
    tags: dict[str, str]

    def allows(
        self, action: str, resource: str = TABLE_ARN, leading_keys: Sequence[str] | None = None
    ) -> bool:
        context = {} if leading_keys is None else {LEADING_KEYS: list(leading_keys)}
        return is_allowed(self.policy, action, resource, context, self.tags)

    def allows_object(self, action: str, key: str, bucket_arn: str = BUCKET_ARN) -> bool:
        return is_allowed(self.policy, action, f"{bucket_arn}/{key}", {}, self.tags)

    def allows_listing(self, prefix: str | None, bucket_arn: str = BUCKET_ARN) -> bool:
        context = {} if prefix is None else {"s3:prefix": prefix}
        return is_allowed(self.policy, "s3:ListBucket", bucket_arn, context, self.tags)


def session_policy_session(tenant_id: str) -> TenantSession:
    request = assume_role_request(tenant_id, policy_settings())
    assert request.policy is not None
    return TenantSession(tenant_id, request.strategy, json.loads(request.policy), dict(request.tags))


def session_tags_session(tenant_id: str) -> TenantSession:
    request = assume_role_request(tenant_id, policy_settings(isolation="session-tags"))
    assert request.policy is None  # the role's own ABAC policy does the limiting
    policy = abac_policy([TABLE_ARN], [BUCKET_ARN])
    return TenantSession(tenant_id, request.strategy, policy, dict(request.tags))


STRATEGIES: dict[str, Callable[[str], TenantSession]] = {
    "session-policy": session_policy_session,
    "session-tags": session_tags_session,
}


@pytest.fixture(params=sorted(STRATEGIES))
def make_session(request: pytest.FixtureRequest) -> Callable[[str], TenantSession]:
    return STRATEGIES[request.param]


def test_session_carries_the_expected_strategy(make_session: Callable[[str], TenantSession]) -> None:
    session = make_session("acme")
    assert session.strategy in STRATEGIES
    assert session.tags == {"TenantId": "acme"}


def test_session_policy_names_only_the_tenants_patterns() -> None:
    (statement,) = json.loads(session_policy("acme", policy_settings(buckets=())))["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == list(ITEM_ACTIONS)
    assert statement["Resource"] == [TABLE_ARN, f"{TABLE_ARN}/index/*"]
    assert statement["Condition"] == {
        "ForAllValues:StringLike": {LEADING_KEYS: ["TENANT#acme", "TENANT#acme#*"]},
        "Null": {LEADING_KEYS: "false"},
    }
    assert leading_key_patterns(TENANT_TAG_VARIABLE) == [
        "TENANT#${aws:PrincipalTag/TenantId}",
        "TENANT#${aws:PrincipalTag/TenantId}#*",
    ]


@pytest.mark.parametrize("action", ITEM_ACTIONS)
@pytest.mark.parametrize("resource", [TABLE_ARN, INDEX_ARN])
def test_tenant_reaches_its_own_keys(
    make_session: Callable[[str], TenantSession], action: str, resource: str
) -> None:
    session = make_session("acme")
    for key in own_keys("acme"):
        assert session.allows(action, resource, [key]), key
    assert session.allows(action, resource, own_keys("acme"))  # a batch of own keys


@pytest.mark.parametrize("tenant", PREFIX_FAMILY)
def test_tenant_never_reaches_prefix_sharing_tenants_or_look_alikes(
    make_session: Callable[[str], TenantSession], tenant: str
) -> None:
    session = make_session(tenant)
    others = [b for b in PREFIX_FAMILY if b != tenant]
    keys = [k for b in others for k in foreign_keys(tenant, b)] + look_alike_keys(tenant)
    for action in ITEM_ACTIONS:
        for key in keys:
            assert not session.allows(action, TABLE_ARN, [key]), (action, key)
            assert not session.allows(action, INDEX_ARN, [key]), (action, key)
    assert session.allows("dynamodb:GetItem", TABLE_ARN, [tenant_prefix(tenant)])


def test_random_tenants_reach_only_their_own_keys(make_session: Callable[[str], TenantSession]) -> None:
    # GIVEN a few hundred valid ids, many of them prefixes of others (fixed seed)
    rng = random.Random(7)
    checked = 0
    for index, a in enumerate(RANDOM_IDS):
        session = make_session(a)
        # the sorted neighbours share the longest prefixes; add a few random others
        others = {
            *RANDOM_IDS[max(0, index - 3) : index],
            *RANDOM_IDS[index + 1 : index + 4],
            *rng.sample(RANDOM_IDS, 3),
        } - {a}
        # THEN own keys pass
        for key in own_keys(a):
            assert session.allows("dynamodb:GetItem", TABLE_ARN, [key]), (a, key)
        # AND no key of another tenant, nor a look-alike, passes
        for b in others:
            for key in foreign_keys(a, b):
                assert not session.allows("dynamodb:GetItem", TABLE_ARN, [key]), (a, key)
                checked += 1
        for key in look_alike_keys(a):
            assert not session.allows("dynamodb:Query", INDEX_ARN, [key]), (a, key)
            checked += 1
    assert checked > 10_000


@hypothesis_settings(max_examples=300, database=None, derandomize=True, deadline=None)
@given(
    a=st.from_regex(TENANT_ID_PATTERN, fullmatch=True),
    b=st.from_regex(TENANT_ID_PATTERN, fullmatch=True),
    suffix=st.text(max_size=8),
)
def test_any_two_tenants_are_separated(a: str, b: str, suffix: str) -> None:
    # The key of b with any suffix is reachable by a only when a == b.
    for make_session in STRATEGIES.values():
        session = make_session(a)
        key = f"TENANT#{b}#{suffix}"
        assert session.allows("dynamodb:GetItem", TABLE_ARN, [key]) is (a == b)
        assert session.allows("dynamodb:GetItem", TABLE_ARN, [f"TENANT#{b}"]) is (a == b)


@pytest.mark.parametrize("action", ITEM_ACTIONS)
def test_no_leading_key_is_denied(make_session: Callable[[str], TenantSession], action: str) -> None:
    # A Scan-like request carries no dynamodb:LeadingKeys: ForAllValues alone would pass it.
    session = make_session("acme")
    assert not session.allows(action, TABLE_ARN, None)
    assert not session.allows(action, TABLE_ARN, [])
    assert not session.allows(action, INDEX_ARN, None)


@pytest.mark.parametrize("action", TABLE_WIDE_ACTIONS + MANAGEMENT_ACTIONS)
def test_scan_partiql_and_management_actions_are_denied(
    make_session: Callable[[str], TenantSession], action: str
) -> None:
    session = make_session("acme")
    for resource in (TABLE_ARN, INDEX_ARN, "*"):
        assert not session.allows(action, resource, None)
        assert not session.allows(action, resource, ["TENANT#acme#ITEM#1"])


@pytest.mark.parametrize("resource", OTHER_RESOURCES)
def test_other_tables_are_denied(make_session: Callable[[str], TenantSession], resource: str) -> None:
    session = make_session("acme")
    for action in ITEM_ACTIONS:
        assert not session.allows(action, resource, ["TENANT#acme#ITEM#1"]), action


@pytest.mark.parametrize("other", ["acme-corp", "acme1", "globex", "ac"])
def test_a_batch_mixing_two_tenants_is_denied(
    make_session: Callable[[str], TenantSession], other: str
) -> None:
    session = make_session("acme")
    for action in ("dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:Query"):
        assert session.allows(action, TABLE_ARN, ["TENANT#acme#1", "TENANT#acme#2"])
        assert not session.allows(action, TABLE_ARN, ["TENANT#acme#1", f"TENANT#{other}#1"])
        assert not session.allows(action, TABLE_ARN, [f"TENANT#{other}#1", "TENANT#acme#1"])


def test_both_strategies_decide_alike() -> None:
    tenants = [*PREFIX_FAMILY, *RANDOM_IDS[:40]]
    for a in tenants:
        by_policy, by_tags = session_policy_session(a), session_tags_session(a)
        for b in tenants[:20]:
            for key in [*foreign_keys(a, b), *own_keys(a)]:
                assert by_policy.allows("dynamodb:PutItem", TABLE_ARN, [key]) == by_tags.allows(
                    "dynamodb:PutItem", TABLE_ARN, [key]
                ), (a, key)


def test_session_tags_without_the_tag_reach_no_tenant() -> None:
    policy = abac_policy([TABLE_ARN])
    real_keys = ["TENANT#acme", "TENANT#acme#1", "TENANT#ab#x"]
    for tags in ({}, {"OtherTag": "acme"}, {"TenantId": ""}):
        for key in real_keys:
            assert not is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {LEADING_KEYS: [key]}, tags), (
                tags,
                key,
            )
    # an EMPTY tag value would own the "TENANT#" space that no valid id can: this is why
    # assume_role_request only ever tags a validated (non-empty) id
    assert is_allowed(policy, "dynamodb:GetItem", TABLE_ARN, {LEADING_KEYS: ["TENANT##x"]}, {"TenantId": ""})
    with pytest.raises(InvalidTenantId):
        assume_role_request("", policy_settings(isolation="session-tags"))


def test_abac_policy_covers_every_table_and_index() -> None:
    other = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/other"
    (statement,) = abac_policy([TABLE_ARN, other])["Statement"]
    assert statement["Resource"] == [TABLE_ARN, f"{TABLE_ARN}/index/*", other, f"{other}/index/*"]
    assert statement["Action"] == list(ITEM_ACTIONS)


# --- limits and request parameters -----------------------------------------------------------


SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
TAG_CHARS = re.compile(r"[\w .:/=+\-@]*")


def test_session_policy_fits_the_sts_limit_for_the_longest_tenant_id() -> None:
    longest = "a" + "-" * 62 + "z"
    for isolation_tables in [
        (TableSpec(TABLE, "pk"),),
        (TableSpec(TABLE, "pk"), TableSpec("tenantscope-audit", "pk")),
    ]:
        document = session_policy(longest, policy_settings(tables=isolation_tables))
        assert len(document) <= MAX_SESSION_POLICY_CHARS
        assert json.loads(document)["Version"] == "2012-10-17"


def test_the_session_policy_is_compact_json() -> None:
    # Every character counts against the STS limit: no space after a separator.
    document = session_policy("acme", policy_settings())
    assert document == json.dumps(json.loads(document), separators=(",", ":"))


def test_a_configuration_is_judged_by_its_policy_for_the_longest_tenant_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the longest tenant id the grammar allows, and the longest second table that lets its
    # policy fit (a name is at most 255 characters: the first table takes 250)
    longest = "a" * 64
    assert validate_tenant_id(longest) == longest
    with pytest.raises(InvalidTenantId):
        validate_tenant_id(longest + "a")

    def settings(second: int) -> Settings:
        return policy_settings(tables=(TableSpec("s" * 250), TableSpec("t" * second, "pk")))

    def fits(second: int) -> bool:
        try:
            return len(session_policy(longest, settings(second))) <= MAX_SESSION_POLICY_CHARS
        except ConfigurationError:
            return False

    second = max(n for n in range(3, 255) if fits(n))
    size = len(session_policy(longest, settings(second)))
    assert size > MAX_SESSION_POLICY_CHARS - 2  # a character of a table name counts twice
    # WHEN a character more is configured THEN every tenant is refused, the shortest too, the
    # longest one's size told
    for tenant in (longest, "ab"):
        with pytest.raises(ConfigurationError) as refused:
            session_policy(tenant, settings(second + 1))
        assert (refused.value.reason, refused.value.detail) == (
            Reason.SESSION_POLICY_TOO_LARGE,
            f"{size + 2} chars for a tenant id of 64, over {MAX_SESSION_POLICY_CHARS}: "
            "configure fewer tables or buckets",
        )
    # AND a policy of exactly the limit is accepted, one character over it refused
    monkeypatch.setattr(_policy, "MAX_SESSION_POLICY_CHARS", size)
    assert len(session_policy(longest, settings(second))) == size
    monkeypatch.setattr(_policy, "MAX_SESSION_POLICY_CHARS", size - 1)
    with pytest.raises(ConfigurationError):
        session_policy("ab", settings(second))


def test_too_many_tables_fail_before_any_sts_call() -> None:
    # GIVEN forty configured tables with long names
    tables = tuple(TableSpec(f"tenantscope-table-with-a-long-name-{i:02d}", "pk") for i in range(40))
    settings = policy_settings(tables=tables)
    sts = FakeSts()
    vendor = CredentialVendor(sts, sleep=lambda _: None)
    # WHEN credentials are requested THEN the configuration is refused, and STS was never called
    with pytest.raises(ConfigurationError) as refused:
        vendor.credentials_for("acme", settings)
    assert refused.value.reason is Reason.SESSION_POLICY_TOO_LARGE
    assert sts.requests == []
    with pytest.raises(ConfigurationError):
        session_policy("acme", settings)


@pytest.mark.parametrize("isolation", sorted(STRATEGIES))
@pytest.mark.parametrize("tenant", ["ab", "a" * 64, "acme-corp", *RANDOM_IDS[::30]])
def test_session_name_source_identity_and_tag_fit_sts(isolation: str, tenant: str) -> None:
    params = assume_role_request(tenant, policy_settings(isolation=isolation)).to_boto3()
    assert params["RoleSessionName"] == tenant
    assert params["SourceIdentity"] == tenant
    assert SESSION_NAME.fullmatch(params["RoleSessionName"])
    assert SESSION_NAME.fullmatch(params["SourceIdentity"])
    assert params["RoleArn"] == ROLE_ARN
    assert params["Tags"] == [{"Key": "TenantId", "Value": tenant}]
    assert len(params["Tags"]) <= 50
    for tag in params["Tags"]:
        assert 1 <= len(tag["Key"]) <= 128
        assert TAG_CHARS.fullmatch(tag["Key"])
        assert len(tag["Value"]) <= 256
        assert TAG_CHARS.fullmatch(tag["Value"])
        assert not tag["Key"].lower().startswith("aws:")
    assert ("Policy" in params) is (isolation == "session-policy")
    if isolation == "session-policy":
        assert len(params["Policy"]) <= MAX_SESSION_POLICY_CHARS


@pytest.mark.parametrize(
    ("configured", "expected"),
    [(43_200, 3600), (3601, 3600), (3600, 3600), (1800, 1800), (900, 900), (60, 900)],
)
def test_duration_fits_role_chaining_and_the_sts_minimum(configured: int, expected: int) -> None:
    request = assume_role_request("acme", policy_settings(session_duration_seconds=configured))
    assert request.duration_seconds == expected
    assert request.to_boto3()["DurationSeconds"] == expected


NO_ROLE = "TENANTSCOPE_ROLE_ARN: set it to the ARN of the role assumed for each tenant"
NO_ARN_OR_REGION = "session-policy needs TENANTSCOPE_ROLE_ARN and AWS_REGION"
NO_TABLE_OR_BUCKET = "session-policy needs TENANTSCOPE_TABLES or TENANTSCOPE_BUCKETS"


@pytest.mark.parametrize(
    ("overrides", "isolation", "detail"),
    [
        ({"role_arn": None}, "session-policy", NO_ROLE),
        ({"role_arn": None}, "session-tags", NO_ROLE),
        (
            {"tables": (), "buckets": ()},
            "session-policy",
            "session-policy needs TENANTSCOPE_TABLES or TENANTSCOPE_BUCKETS",
        ),
        ({"region": None}, "session-policy", NO_ARN_OR_REGION),
        ({"role_arn": "not-an-arn"}, "session-policy", NO_ARN_OR_REGION),
    ],
)
def test_missing_configuration_is_a_configuration_error(
    overrides: dict[str, Any], isolation: str, detail: str
) -> None:
    # GIVEN settings missing one piece (None falls back to the empty environment, then the default)
    settings = policy_settings(isolation=isolation, **overrides)
    # THEN it is a permanent configuration error naming the settings, never answered as a passing outage
    with pytest.raises(ConfigurationError) as refused:
        assume_role_request("acme", settings)
    assert (refused.value.reason, refused.value.detail) == (Reason.MISSING_SETTING, detail)
    assert not isinstance(refused.value, TemporarilyUnavailable)


def test_settings_with_an_unknown_strategy_are_refused_not_read_as_session_tags() -> None:
    # GIVEN settings not made by Settings.load (which refuses the value), with no known strategy
    settings = replace(policy_settings(), isolation="none")
    # THEN no request is made: an unknown strategy never falls back to one that was not chosen
    with pytest.raises(ConfigurationError) as refused:
        assume_role_request("acme", settings)
    assert (refused.value.reason, refused.value.detail) == (
        Reason.INVALID_SETTING,
        "unknown isolation strategy",
    )


LONG_TABLE_REFUSED = f"TENANTSCOPE_TABLES: {'t' * 256!r} is not a table or index name"


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"TENANTSCOPE_TABLES": "app*"}, "TENANTSCOPE_TABLES: 'app*' is not a table or index name"),
        ({"TENANTSCOPE_TABLES": "app/gsi?=pk"}, "TENANTSCOPE_TABLES: 'gsi?' is not a table or index name"),
        ({"TENANTSCOPE_TABLES": "ab"}, "TENANTSCOPE_TABLES: 'ab' is not a table or index name"),
        ({"TENANTSCOPE_BUCKETS": "files-*"}, "TENANTSCOPE_BUCKETS: 'files-*' is not a bucket name"),
        ({"TENANTSCOPE_BUCKETS": "Files"}, "TENANTSCOPE_BUCKETS: 'Files' is not a bucket name"),
        ({"TENANTSCOPE_BUCKETS": "files-"}, "TENANTSCOPE_BUCKETS: 'files-' is not a bucket name"),
        ({"TENANTSCOPE_BUCKETS": "b" * 64}, f"TENANTSCOPE_BUCKETS: {'b' * 64!r} is not a bucket name"),
        ({"TENANTSCOPE_BUCKETS": ".files"}, "TENANTSCOPE_BUCKETS: '.files' is not a bucket name"),
        (
            {"TENANTSCOPE_TABLES": "t" * 256},
            f"TENANTSCOPE_TABLES: {'t' * 256!r} is not a table or index name",
        ),
    ],
)
def test_a_table_or_bucket_name_that_could_widen_a_policy_is_refused(
    overrides: dict[str, str], detail: str
) -> None:
    # GIVEN a name S3 or DynamoDB would not accept: in a policy's resource ARN, '*' and '?' match others
    with pytest.raises(ConfigurationError) as refused:
        Settings.load(environ={"TENANTSCOPE_TABLES": "app", "TENANTSCOPE_BUCKETS": "files", **overrides})
    assert (refused.value.reason, refused.value.detail) == (Reason.INVALID_SETTING, detail)
    # AND settings made otherwise than by load() are held to the same names
    with pytest.raises(ConfigurationError):
        replace(policy_settings(), buckets=("*",))
    with pytest.raises(ConfigurationError):
        replace(policy_settings(), tables=(TableSpec("*"),))


def test_names_up_to_the_limits_s3_and_dynamodb_set_are_accepted() -> None:
    every_table_character = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
    every_bucket_character = "a.bcdefghijklmnopqrstuvwxyz0123456789-z"
    settings = Settings.load(
        environ={
            "TENANTSCOPE_TABLES": f"{'t' * 255},{every_table_character},app/{every_table_character}=pk",
            "TENANTSCOPE_BUCKETS": f"{'b' * 63},a-b,{every_bucket_character}",
        }
    )
    assert [spec.name for spec in settings.tables] == ["t" * 255, every_table_character, "app"]
    assert settings.buckets == ("b" * 63, "a-b", every_bucket_character)


def test_tables_given_other_than_as_table_specs_are_refused() -> None:
    with pytest.raises(ConfigurationError) as refused:
        replace(policy_settings(), tables=("app",))
    assert (refused.value.reason, refused.value.detail) == (
        Reason.INVALID_SETTING,
        "tables must be a tuple of TableSpec",
    )


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        (
            {"TENANTSCOPE_CLOCK_SKEW_SECONDS": "901"},
            "TENANTSCOPE_CLOCK_SKEW_SECONDS must be between 0 and 900",
        ),
        (
            {"TENANTSCOPE_CLOCK_SKEW_SECONDS": "-1"},
            "TENANTSCOPE_CLOCK_SKEW_SECONDS must be between 0 and 900",
        ),
        (
            {"TENANTSCOPE_SQS_ENVELOPE_TTL_SECONDS": "0"},
            "TENANTSCOPE_SQS_ENVELOPE_TTL_SECONDS must be at least 1",
        ),
        (
            {"TENANTSCOPE_SFN_ENVELOPE_TTL_SECONDS": "0"},
            "TENANTSCOPE_SFN_ENVELOPE_TTL_SECONDS must be at least 1",
        ),
    ],
)
def test_an_envelope_window_the_replay_guard_does_not_cover_is_refused(
    overrides: dict[str, str], detail: str
) -> None:
    # GIVEN a clock allowance longer than the replay guard keeps a record past its envelope's expiry,
    # or a lifetime no envelope could be accepted in
    assert MAX_CLOCK_SKEW_SECONDS < RETAIN_AFTER_EXPIRY_SECONDS
    # WHEN settings are loaded or made THEN they are refused, naming the setting
    with pytest.raises(ConfigurationError) as refused:
        Settings.load(environ=overrides)
    assert (refused.value.reason, refused.value.detail) == (Reason.INVALID_SETTING, detail)
    with pytest.raises(ConfigurationError):
        replace(policy_settings(), clock_skew_seconds=MAX_CLOCK_SKEW_SECONDS + 1)


def test_the_clock_allowance_may_be_anything_from_zero_to_the_bound() -> None:
    for skew in (0, MAX_CLOCK_SKEW_SECONDS):
        assert Settings.load(environ={"TENANTSCOPE_CLOCK_SKEW_SECONDS": str(skew)}).clock_skew_seconds == skew
    assert Settings.load(environ={"TENANTSCOPE_SQS_ENVELOPE_TTL_SECONDS": "1"}).sqs_envelope_ttl_seconds == 1


def test_settings_accept_the_names_s3_and_dynamodb_accept() -> None:
    settings = Settings.load(
        environ={
            "TENANTSCOPE_TABLES": "App_Table.v2-x,app/GSI_1=gsi1pk",
            "TENANTSCOPE_BUCKETS": "my.files-1,abc",
        }
    )
    assert [spec.name for spec in settings.tables] == ["App_Table.v2-x", "app"]
    assert settings.buckets == ("my.files-1", "abc")


def test_session_tags_need_no_tables_or_region() -> None:
    request = assume_role_request("acme", Settings.load(environ={}, role_arn=ROLE_ARN))
    assert request.policy is None
    assert request.tags == (("TenantId", "acme"),)


INVALID_IDS: list[object] = [
    "",
    "a",
    "A",
    "Acme",
    "acme#x",
    "acme*",
    "ac?me",
    "*",
    "acme:1",
    "acme/1",
    "acme.corp",
    "-acme",
    "acme-",
    "acme\n",
    " acme",
    "acme ",
    "ácme",
    "a" * 65,
    "acme\x00",
    "TENANT#acme",
    None,
    123,
    b"acme",
]


@pytest.mark.parametrize("tenant", INVALID_IDS)
@pytest.mark.parametrize("isolation", sorted(STRATEGIES))
def test_invalid_tenant_id_is_refused_before_any_policy_is_built(
    monkeypatch: pytest.MonkeyPatch, tenant: Any, isolation: str
) -> None:
    built: list[str] = []

    def recording_session_policy(tenant_id: str, settings: Settings) -> str:
        built.append(tenant_id)
        return "{}"

    monkeypatch.setattr(_policy, "session_policy", recording_session_policy)
    with pytest.raises(InvalidTenantId):
        assume_role_request(tenant, policy_settings(isolation=isolation))
    # even with nothing else configured, the id is checked first
    with pytest.raises(InvalidTenantId):
        assume_role_request(tenant, Settings.load(environ={}, isolation=isolation))
    assert built == []


@pytest.mark.parametrize("tenant", INVALID_IDS)
def test_session_policy_refuses_an_invalid_tenant_id_itself(tenant: Any) -> None:
    with pytest.raises(InvalidTenantId):
        session_policy(tenant, policy_settings())


# --- tenant files: the same isolation on a pooled bucket ---------------------------------------

BUCKET_MANAGEMENT_ACTIONS = (
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:GetBucketPolicy",
    "s3:PutBucketAcl",
    "s3:PutObjectAcl",
    "s3:GetObjectAcl",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketOwnershipControls",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:PutEncryptionConfiguration",
    "s3:PutBucketCORS",
    "s3:GetObjectVersion",
    "s3:DeleteObjectVersion",
    "s3:PutObjectTagging",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:BypassGovernanceRetention",
    "s3:ListBucketVersions",
    "s3:ListBucketMultipartUploads",
    "s3:ListAllMyBuckets",
    "s3:RestoreObject",
    "s3:ReplicateObject",
)


def own_objects(a: str) -> list[str]:
    prefix = tenant_object_prefix(a)
    return [f"{prefix}x", f"{prefix}receipts/order-1.json", f"{prefix}items/1/attachment", f"{prefix}"]


def foreign_objects(a: str, b: str) -> list[str]:
    """Object keys that tenant ``a`` must never reach: ``b``'s, and keys beside ``a``'s prefix."""
    return [
        f"tenants/{b}/x",
        f"tenants/{b}/tenants/{a}/x",
        f"tenants/{a}",  # the folder name without its slash: the prefix is "tenants/<id>/"
        f"tenants/{a}x/y",
        f"tenants/{a}-corp/y",
        f"tenants/{a.upper()}/x",
        f"Tenants/{a}/x",
        f"tenant/{a}/x",
        f"{a}/x",
        f"x/tenants/{a}/y",
        "tenants/",
        "tenants//x",
        "",
    ]


def test_session_policy_grants_object_actions_on_the_tenants_prefix_only() -> None:
    # GIVEN a function configured with one table and one bucket
    items, objects, listing = json.loads(session_policy("acme", policy_settings()))["Statement"]
    # THEN the object statements name the literal prefix, and listing needs it
    assert items["Sid"] == "TenantItems"
    assert objects == {
        "Sid": "TenantObjects",
        "Effect": "Allow",
        "Action": list(OBJECT_ACTIONS),
        "Resource": [f"{BUCKET_ARN}/tenants/acme/*"],
    }
    assert listing == {
        "Sid": "TenantListing",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": [BUCKET_ARN],
        "Condition": {
            "StringLike": {"s3:prefix": ["tenants/acme/", "tenants/acme/*"]},
            "Null": {"s3:prefix": "false"},
        },
    }
    assert not any(action.endswith("*") for action in OBJECT_ACTIONS)


def test_a_bucket_alone_is_enough_for_the_session_policy() -> None:
    (objects, listing) = json.loads(session_policy("acme", policy_settings(tables=())))["Statement"]
    assert (objects["Sid"], listing["Sid"]) == ("TenantObjects", "TenantListing")


@pytest.mark.parametrize("action", OBJECT_ACTIONS)
def test_tenant_reaches_its_own_objects(make_session: Callable[[str], TenantSession], action: str) -> None:
    session = make_session("acme")
    for key in own_objects("acme"):
        assert session.allows_object(action, key), key


@pytest.mark.parametrize("tenant", PREFIX_FAMILY)
def test_tenant_never_reaches_the_objects_of_prefix_sharing_tenants(
    make_session: Callable[[str], TenantSession], tenant: str
) -> None:
    session = make_session(tenant)
    for other in (b for b in PREFIX_FAMILY if b != tenant):
        for action in OBJECT_ACTIONS:
            for key in foreign_objects(tenant, other):
                assert not session.allows_object(action, key), (action, key)
        assert not session.allows_listing(tenant_object_prefix(other))
    assert session.allows_object("s3:GetObject", f"tenants/{tenant}/x")


def test_random_tenants_reach_only_their_own_objects(make_session: Callable[[str], TenantSession]) -> None:
    checked = 0
    for index, a in enumerate(RANDOM_IDS[::3]):
        session = make_session(a)
        for b in RANDOM_IDS[max(0, index * 3 - 2) : index * 3 + 3]:
            for key in foreign_objects(a, b) if b != a else []:
                assert not session.allows_object("s3:GetObject", key), (a, key)
                checked += 1
            assert session.allows_listing(tenant_object_prefix(b)) is (a == b)
    assert checked > 1000


@hypothesis_settings(max_examples=200, database=None, derandomize=True, deadline=None)
@given(
    a=st.from_regex(TENANT_ID_PATTERN, fullmatch=True),
    b=st.from_regex(TENANT_ID_PATTERN, fullmatch=True),
    rest=st.text(max_size=12),
)
def test_any_two_tenants_objects_are_separated(a: str, b: str, rest: str) -> None:
    for make_session in STRATEGIES.values():
        session = make_session(a)
        assert session.allows_object("s3:PutObject", f"tenants/{b}/{rest}") is (a == b)
        assert session.allows_listing(f"tenants/{b}/{rest}") is (a == b)


@pytest.mark.parametrize(
    "prefix",
    [None, "", "tenants/", "tenants", "tenants/acme", "tenants/acme-corp/", "tenants/ac", "*", "tenants/*"],
)
def test_listing_without_the_tenants_prefix_is_denied(
    make_session: Callable[[str], TenantSession], prefix: str | None
) -> None:
    # None is a ListObjectsV2 with no prefix at all: it would list every tenant's keys.
    session = make_session("acme")
    assert not session.allows_listing(prefix)
    assert session.allows_listing("tenants/acme/")
    assert session.allows_listing("tenants/acme/receipts/")


@pytest.mark.parametrize("action", BUCKET_MANAGEMENT_ACTIONS)
def test_bucket_acl_policy_and_version_actions_are_denied(
    make_session: Callable[[str], TenantSession], action: str
) -> None:
    session = make_session("acme")
    for resource in (BUCKET_ARN, f"{BUCKET_ARN}/tenants/acme/x", "*"):
        assert not is_allowed(session.policy, action, resource, {"s3:prefix": "tenants/acme/"}, session.tags)


def test_other_buckets_are_denied(make_session: Callable[[str], TenantSession]) -> None:
    session = make_session("acme")
    for bucket in ("arn:aws:s3:::other", f"{BUCKET_ARN}-logs", "arn:aws:s3:::tenantscope-file"):
        for action in OBJECT_ACTIONS:
            assert not session.allows_object(action, "tenants/acme/x", bucket), (action, bucket)
        assert not session.allows_listing("tenants/acme/", bucket)


def test_both_strategies_decide_alike_on_objects() -> None:
    tenants = [*PREFIX_FAMILY, *RANDOM_IDS[:10]]
    for a in tenants:
        by_policy, by_tags = session_policy_session(a), session_tags_session(a)
        for b in tenants[:12]:
            for key in [*foreign_objects(a, b), *own_objects(a)]:
                assert by_policy.allows_object("s3:GetObject", key) == by_tags.allows_object(
                    "s3:GetObject", key
                ), (a, key)
            prefix = tenant_object_prefix(b)
            assert by_policy.allows_listing(prefix) == by_tags.allows_listing(prefix)


def test_session_tags_without_the_tag_reach_no_objects() -> None:
    policy = abac_policy([TABLE_ARN], [BUCKET_ARN])
    for tags in ({}, {"OtherTag": "acme"}):
        assert not is_allowed(policy, "s3:GetObject", f"{BUCKET_ARN}/tenants/acme/x", {}, tags)
        assert not is_allowed(policy, "s3:ListBucket", BUCKET_ARN, {"s3:prefix": "tenants/acme/"}, tags)
    # an EMPTY tag value would own "tenants//", which no key the guard accepts can reach
    assert is_allowed(policy, "s3:GetObject", f"{BUCKET_ARN}/tenants//x", {}, {"TenantId": ""})


def test_session_policy_with_a_bucket_fits_the_sts_limit_for_the_longest_tenant_id() -> None:
    longest = "a" + "-" * 62 + "z"
    settings = policy_settings(
        tables=(TableSpec(TABLE, "pk"), TableSpec("tenantscope-audit", "pk")),
        buckets=(BUCKET, "tenantscope-exports-123456789012-eu-west-1"),
    )
    assert len(session_policy(longest, settings)) <= MAX_SESSION_POLICY_CHARS


# --- who may assume the tenant role ------------------------------------------------------------------


CALLERS = (f"arn:aws:iam::{ACCOUNT}:role/api", f"arn:aws:iam::{ACCOUNT}:role/worker")
TENANT_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/tenantscope-tenant"


@pytest.mark.parametrize(("tag_key", "expected_tag_key"), [((), "TenantId"), (("Tenant",), "Tenant")])
def test_the_trust_policy_admits_the_callers_with_the_tenant_tag_alone(
    tag_key: tuple[str, ...], expected_tag_key: str
) -> None:
    # GIVEN the roles of the functions that use tenantscope, and the tenant tag key (default TenantId)
    policy = trust_policy(CALLERS, *tag_key)
    # THEN only they may assume the role, with the three actions every request needs, and only
    # with no session tag but the tenant's
    assert policy == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ThisStacksFunctionsOnly",
                "Effect": "Allow",
                "Principal": {"AWS": list(CALLERS)},
                "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
                "Condition": {
                    "ForAllValues:StringEquals": {"aws:TagKeys": [expected_tag_key]},
                    "Null": {f"aws:RequestTag/{expected_tag_key}": "false", "sts:SourceIdentity": "false"},
                },
            }
        ],
    }


def assume_role_context(request: dict[str, Any]) -> dict[str, Any]:
    """The condition keys IAM sees in an AssumeRole request (its tags and its source identity)."""
    context: dict[str, Any] = {"aws:TagKeys": [tag["Key"] for tag in request.get("Tags", [])]}
    for tag in request.get("Tags", []):
        context[f"aws:RequestTag/{tag['Key']}"] = tag["Value"]
    if "SourceIdentity" in request:
        context["sts:SourceIdentity"] = request["SourceIdentity"]
    return context


@pytest.mark.parametrize("isolation", ["session-tags", "session-policy"])
def test_the_trust_policy_admits_what_tenantscope_sends_and_no_session_for_no_tenant(isolation: str) -> None:
    # GIVEN the trust policy, without its principals (the evaluator models only "*")
    (statement,) = trust_policy(CALLERS)["Statement"]
    trust = {"Version": "2012-10-17", "Statement": [{**statement, "Principal": "*", "Resource": "*"}]}
    settings = policy_settings(isolation=isolation)
    sent = assume_role_request("acme", settings).to_boto3()
    # THEN each action of tenantscope's own request is admitted
    for action in ASSUME_ACTIONS:
        assert is_allowed(trust, action, TENANT_ROLE_ARN, assume_role_context(sent))
    # AND a request without the tag, without the source identity, or with another tag is not
    refused = [
        {k: v for k, v in sent.items() if k != "Tags"},
        {k: v for k, v in sent.items() if k != "SourceIdentity"},
        {k: v for k, v in sent.items() if k not in ("Tags", "SourceIdentity")},
        {**sent, "Tags": [*sent["Tags"], {"Key": "Admin", "Value": "true"}]},
    ]
    for request in refused:
        assert not is_allowed(trust, "sts:AssumeRole", TENANT_ROLE_ARN, assume_role_context(request)), request


def test_a_callers_statement_allows_assuming_the_tenant_role_and_nothing_else() -> None:
    statement = assume_statement(TENANT_ROLE_ARN)
    assert statement == {
        "Sid": "AssumeTenantRole",
        "Effect": "Allow",
        "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
        "Resource": TENANT_ROLE_ARN,
    }
    policy = {"Version": "2012-10-17", "Statement": [statement]}
    for action in ("sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"):
        assert is_allowed(policy, action, TENANT_ROLE_ARN)
    assert not is_allowed(policy, "sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/admin")
    assert not is_allowed(policy, "iam:PassRole", TENANT_ROLE_ARN)
