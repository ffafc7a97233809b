"""docs/iam.md cannot drift: each of its JSON blocks is what tenantscope's policy code produces and
what the templates deploy (the sample ``template.yaml`` and README's own-service example).

Each block is marked ``<!-- iam:<name> -->`` before its fence. The same request is built for both
isolation strategies and the trust policies are checked against what it carries, which is what
moto never checks (it ignores session tags, source identities and trust conditions).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tenantscope._config import Settings
from tenantscope._policy import (
    ASSUME_ACTIONS,
    assume_role_request,
    assume_statement,
    session_policy,
    trust_policy,
)
from tests import own_service
from tests.iam_eval import abac_policy, allowed_by_all
from tests.template.conftest import (
    COMBINATIONS,
    REVIEWED_MANAGED_POLICIES,
    ROOT,
    Deployment,
    deployment_for,
    deployment_of_template,
)

DOC = ROOT / "docs" / "iam.md"
ACCOUNT = "123456789012"
TABLE = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/notes"
BUCKET = "arn:aws:s3:::notes-files"
TENANT_ROLE = f"arn:aws:iam::{ACCOUNT}:role/notes-tenant"
CALLERS = [f"arn:aws:iam::{ACCOUNT}:role/notes-api", f"arn:aws:iam::{ACCOUNT}:role/notes-audit"]
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BLOCK = re.compile(r"<!-- iam:([a-z-]+) -->\n```json\n(.*?)```", re.DOTALL)


def doc_blocks() -> dict[str, Any]:
    blocks: dict[str, Any] = {}
    for name, text in BLOCK.findall(DOC.read_text(encoding="utf-8")):
        assert name not in blocks, f"two blocks named {name}"
        blocks[name] = json.loads(text)
    return blocks


def normalised(policy: Any) -> Any:
    """Equal as IAM data: a single Action, Resource or condition value is a list of one; lists sorted."""
    if isinstance(policy, dict):
        return {
            key: sorted(map(normalised, value), key=json.dumps)
            if isinstance(value, list)
            else [normalised(value)]
            if key in ("Action", "Resource") or (isinstance(value, str) and key.count(":") == 1)
            else normalised(value)
            for key, value in policy.items()
        }
    return policy


def notes_settings(isolation: str) -> Settings:
    return Settings.load(
        role_arn=TENANT_ROLE,
        region="us-east-1",
        tables="notes=pk",
        buckets="notes-files",
        isolation=isolation,
    )


def test_every_block_is_named_and_checked() -> None:
    assert set(doc_blocks()) == {
        "trust",
        "session-tags",
        "session-policy-role",
        "session-policy-acme",
        "producer-role",
        "consumer-role",
    }
    assert DOC.read_text(encoding="utf-8").count("```json") == len(doc_blocks())


# --- what the request needs --------------------------------------------------------------------


def sts_actions_needed(request: dict[str, Any]) -> set[str]:
    """The STS actions IAM checks for an AssumeRole request with these parameters."""
    needed = {"sts:AssumeRole"}
    if request.get("Tags"):
        needed.add("sts:TagSession")
    if request.get("SourceIdentity"):
        needed.add("sts:SetSourceIdentity")
    return needed


@pytest.mark.parametrize("isolation", ["session-tags", "session-policy"])
def test_both_strategies_send_the_tag_and_source_identity_the_trust_policy_allows(isolation: str) -> None:
    request = assume_role_request("acme", notes_settings(isolation)).to_boto3()
    assert request["SourceIdentity"] == "acme"
    assert request["Tags"] == [{"Key": "TenantId", "Value": "acme"}]
    assert sts_actions_needed(request) == set(ASSUME_ACTIONS)
    trust = doc_blocks()["trust"]["Statement"][0]
    assert sts_actions_needed(request) <= set(trust["Action"])
    allowed_keys = trust["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"]
    assert {tag["Key"] for tag in request["Tags"]} <= set(allowed_keys)


def test_a_changed_tag_key_is_the_one_the_trust_policy_allows() -> None:
    settings = Settings.load(role_arn=TENANT_ROLE, region="us-east-1", tenant_tag_key="Tenant")
    request = assume_role_request("acme", settings).to_boto3()
    condition = trust_policy(CALLERS, tag_key="Tenant")["Statement"][0]["Condition"]
    assert [tag["Key"] for tag in request["Tags"]] == condition["ForAllValues:StringEquals"]["aws:TagKeys"]


# --- the blocks are what the policy code produces ------------------------------------------------


def test_the_trust_policy_block_is_tenantscopes() -> None:
    assert doc_blocks()["trust"] == trust_policy(CALLERS)


def test_the_session_tags_block_is_the_abac_policy() -> None:
    assert normalised(doc_blocks()["session-tags"]) == normalised(abac_policy([TABLE], [BUCKET]))


def test_the_session_policy_block_is_what_a_session_of_acme_carries() -> None:
    sent = json.loads(session_policy("acme", notes_settings("session-policy")))
    assert normalised(doc_blocks()["session-policy-acme"]) == normalised(sent)


def test_the_session_policy_narrows_the_role_block_to_one_tenant() -> None:
    blocks = doc_blocks()
    policies = [blocks["session-policy-role"], blocks["session-policy-acme"]]
    assert allowed_by_all(
        policies, "dynamodb:GetItem", TABLE, {"dynamodb:LeadingKeys": ["TENANT#acme#N"]}, {}
    )
    assert not allowed_by_all(
        policies, "dynamodb:GetItem", TABLE, {"dynamodb:LeadingKeys": ["TENANT#globex#N"]}, {}
    )
    assert not allowed_by_all(policies, "s3:GetObject", f"{BUCKET}/tenants/globex/x", None, {})
    assert allowed_by_all(policies, "s3:GetObject", f"{BUCKET}/tenants/acme/x", None, {})


@pytest.mark.parametrize("block", ["producer-role", "consumer-role"])
def test_the_function_role_blocks_assume_the_tenant_role_as_tenantscope_asks(block: str) -> None:
    (assume, *_) = doc_blocks()[block]["Statement"]
    assert assume == assume_statement(TENANT_ROLE)


# --- the blocks are what the sample template deploys ---------------------------------------------


def sample_as_notes(deployment: Deployment, document: Any) -> Any:
    """A policy of the sample stack, rendered, with its resources' ARNs replaced by the doc's."""
    text = json.dumps(deployment.render(document))
    for logical, arn in (
        ("AppTable", TABLE),
        ("FilesBucket", BUCKET),
        ("TenantRole", TENANT_ROLE),
        ("SigningKey", KEY),
    ):
        if logical in deployment.resources:
            text = text.replace(deployment.arn(logical), arn)
    return json.loads(text)


def role_statement(deployment: Deployment, function: str, sid: str) -> dict[str, Any]:
    role = deployment.function_roles()[function]
    found = [
        statement
        for _, document in deployment.policies_of_role(role)
        for statement in document["Statement"]
        if statement.get("Sid") == sid
    ]
    assert len(found) == 1, f"{function}: {len(found)} statements {sid}"
    statement: dict[str, Any] = found[0]
    return statement


@pytest.mark.parametrize(
    "combination", COMBINATIONS, ids=[f"{i}{'+userpool' if p else ''}+{k}" for i, p, k in COMBINATIONS]
)
def test_the_sample_templates_trust_policy_is_tenantscopes(combination: tuple[str, bool, str]) -> None:
    deployment = deployment_for(*combination)
    document = deployment.render(deployment.props("TenantRole")["AssumeRolePolicyDocument"])
    callers = [deployment.arn(role) for role in deployment.function_roles().values()]
    assert normalised(document) == normalised(trust_policy(callers))
    for function in deployment.function_roles():
        assert deployment.render(
            role_statement(deployment, function, "AssumeTenantRole")
        ) == assume_statement(deployment.arn("TenantRole"))


def test_the_session_policy_role_block_is_the_sample_templates() -> None:
    deployment = deployment_for("session-policy", False)
    document = deployment.props("TenantSessionPolicyBoundary")["PolicyDocument"]
    assert normalised(sample_as_notes(deployment, document)) == normalised(
        doc_blocks()["session-policy-role"]
    )


@pytest.mark.parametrize(
    ("block", "function", "sid"),
    [
        ("producer-role", "ApiFunction", "SignEnvelopes"),
        ("consumer-role", "ReserveInventoryFunction", "VerifyEnvelopes"),
    ],
)
def test_the_signing_statements_are_the_sample_templates(block: str, function: str, sid: str) -> None:
    deployment = deployment_for("session-tags", False, "kms")
    (documented,) = [s for s in doc_blocks()[block]["Statement"] if s["Sid"] == sid]
    deployed = sample_as_notes(deployment, role_statement(deployment, function, sid))
    assert normalised(documented) == normalised(deployed)


# --- README's own-service example deploys the same -----------------------------------------------


@pytest.fixture(scope="module")
def own_service_deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    service = own_service.lay_out(tmp_path_factory.mktemp("own-service") / "service")
    return deployment_of_template(
        service / "template.yaml", {"JwtIssuer": "https://idp.example.com", "JwtAudience": "notes"}
    )


def test_the_own_service_tenant_role_is_tenantscopes(own_service_deployment: Deployment) -> None:
    deployment = own_service_deployment
    role = deployment.props("TenantRole")
    callers = [{"Fn::GetAtt": [r, "Arn"]} for r in deployment.function_roles().values()]
    assert normalised(role["AssumeRolePolicyDocument"]) == normalised(trust_policy(callers))
    ((_, document),) = deployment.policies_of_role("TenantRole")
    table = deployment.arn("NotesTable")
    assert normalised(deployment.render(document)) == normalised(abac_policy([table]))
    for function, env in ((f, deployment.environment(f)) for f in deployment.function_roles()):
        assert env["TENANTSCOPE_ROLE_ARN"] == deployment.arn("TenantRole")
        assert env["TENANTSCOPE_TABLES"] == f"{deployment.name('NotesTable')}=pk"
        assert deployment.render(
            role_statement(deployment, function, "AssumeTenantRole")
        ) == assume_statement(deployment.arn("TenantRole"))


def test_in_the_own_service_only_the_api_signs_and_only_the_consumer_verifies(
    own_service_deployment: Deployment,
) -> None:
    deployment = own_service_deployment
    actions = {
        function: {
            action
            for _, document in deployment.policies_of_role(role)
            for statement in document["Statement"]
            for action in (
                [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            )
            if action.startswith("kms:")
        }
        for function, role in deployment.function_roles().items()
    }
    assert actions == {"NotesFunction": {"kms:GenerateMac"}, "AuditFunction": {"kms:VerifyMac"}}


def test_no_own_service_function_role_reaches_the_table(own_service_deployment: Deployment) -> None:
    deployment = own_service_deployment
    table = deployment.arn("NotesTable")
    for function, role in deployment.function_roles().items():
        documents = [deployment.render(d) for _, d in deployment.policies_of_role(role)]
        for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:Scan"):
            assert not any(
                allowed_by_all([document], action, table, {"dynamodb:LeadingKeys": ["TENANT#acme"]}, {})
                for document in documents
            ), f"{function} may {action}"
        # An AWS managed policy is not in the stack to read: only the reviewed ones may be attached
        unreviewed = set(deployment.external_managed_policies(role)) - REVIEWED_MANAGED_POLICIES
        assert not unreviewed, f"{function} has managed policies not reviewed for data access: {unreviewed}"


def test_a_path_in_the_docs_exists() -> None:
    for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", DOC.read_text(encoding="utf-8")):
        assert (DOC.parent / link).exists(), link
    assert Path(own_service.EXAMPLE / "template.yaml").is_file()
