"""Security gates on template.yaml, as CloudFormation would create it.

The template is transformed with samtranslator and resolved for every IsolationStrategy and
CreateUserPool value (see conftest.py), so the assertions are on the CloudFormation that would be
deployed, including what SAM generates: execution roles, managed policies, event source mappings.
Policies are compared and evaluated as data with :mod:`tests.iam_eval`, since moto cannot enforce them.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from devtools.local_aws import references
from tenantscope import TemporarilyUnavailable
from tenantscope._config import Settings
from tenantscope._policy import (
    ITEM_ACTIONS,
    OBJECT_ACTIONS,
    assume_role_request,
    session_policy,
    tenant_object_prefix,
)
from tests.iam_eval import (
    TABLE_WIDE_ACTIONS,
    abac_policy,
    allowed_by_all,
    as_list,
    decide,
    glob_match,
    is_allowed,
)
from tests.template.conftest import (
    ACCOUNT,
    COMBINATIONS,
    EXTERNAL_AUDIENCE,
    EXTERNAL_ISSUER,
    REGION,
    REVIEWED_MANAGED_POLICIES,
    ROOT,
    Deployment,
    deployment_for,
    parameter_values,
    resolve,
    rule_violations,
    sam_template,
    transform_template,
)

APP_TABLE = "AppTable"
REPLAY_TABLE = "ReplayTable"
FILES_BUCKET = "FilesBucket"
TENANT_ROLE = "TenantRole"
WORKER = "OrderWorkerFunction"
STATE_MACHINE = "OrderStateMachine"
RUNTIME = "python3.13"
TENANT_TAG = "TenantId"

DYNAMODB_WRITE_ACTIONS = (
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:TransactWriteItems",
    "dynamodb:ExecuteStatement",
    "dynamodb:BatchExecuteStatement",
    "dynamodb:ExecuteTransaction",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
)
EXPECTED_ROUTES = {
    ("PUT", "/items/{id}"),
    ("GET", "/items/{id}"),
    ("GET", "/items"),
    ("DELETE", "/items/{id}"),
    ("POST", "/orders"),
    ("GET", "/orders/{id}"),
    ("POST", "/items/{id}/attachment"),
    ("GET", "/items/{id}/attachment"),
    ("GET", "/orders/{id}/receipt"),
}
REQUIRED_OUTPUTS = {
    # output name: the type of the resource it must name
    "ApiUrl": "AWS::ApiGatewayV2::Api",
    "OrderQueueUrl": "AWS::SQS::Queue",
    "OrderStateMachineArn": "AWS::StepFunctions::StateMachine",
    "AppTableName": "AWS::DynamoDB::Table",
    "ReplayTableName": "AWS::DynamoDB::Table",  # read by make env-from-stack
    "FilesBucketName": "AWS::S3::Bucket",  # read by make env-from-stack
    "TenantScopeLayerArn": "AWS::Lambda::LayerVersion",
    "TenantRoleArn": "AWS::IAM::Role",  # read by tests/aws
}


# --- helpers ----------------------------------------------------------------------------------


def _allow_statements(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for statement in as_list(document.get("Statement", [])):
        if statement.get("Effect") == "Allow":
            yield statement


def _touches(service: str) -> Callable[[str], bool]:
    """Could an Action pattern match some action of ``service``? (``*``, ``dynamodb:*``,
    ``dynamo*:Get*``, ``s3:Get*``...)"""

    def matches(pattern: str) -> bool:
        prefix, colon, _ = pattern.partition(":")
        if not colon:
            return glob_match(pattern, f"{service}:Any", ignore_case=True)
        return glob_match(prefix, service, ignore_case=True)

    return matches


def _matches_any_action(pattern: str, actions: tuple[str, ...]) -> bool:
    return any(glob_match(pattern, action, ignore_case=True) for action in actions)


def _reaches(deployment: Deployment, resource: Any, target: str) -> bool:
    """Does a policy Resource value name ``target``: by Ref/GetAtt/Sub of it, or as a pattern
    (``*``, ``arn:aws:dynamodb:*:*:table/*``, ``arn:aws:s3:::*``...) matching its ARN, a table's
    indexes or streams, or a bucket's objects?"""
    if target in references(resource):
        return True
    rendered = deployment.render(resource)
    arn = deployment.arn(target)
    if deployment.type_of(target) == "AWS::S3::Bucket":
        parts = ("tenants/acme/receipts/1.json", "other/key")
    else:
        parts = ("index/gsi1", "stream/2026")
    return isinstance(rendered, str) and any(
        glob_match(rendered, candidate) for candidate in (arn, *(f"{arn}/{part}" for part in parts))
    )


def _grants(deployment: Deployment, role: str, action_matches: Any, target: str) -> list[str]:
    """Where ``role`` is allowed an action matching ``action_matches`` on ``target``."""
    found = []
    for source, document in deployment.policies_of_role(role):
        for statement in _allow_statements(document):
            actions = "NotAction" in statement or any(action_matches(a) for a in as_list(statement["Action"]))
            on_target = "NotResource" in statement or any(
                _reaches(deployment, r, target) for r in as_list(statement["Resource"])
            )
            if actions and on_target:
                found.append(f"{source} statement {statement.get('Sid', '?')}")
    return found


def _normalise(policy: Any) -> Any:
    """A policy with single values as lists and lists sorted: equal as IAM data, whatever the order."""
    if isinstance(policy, dict):
        return {key: _normalise(value) for key, value in policy.items()}
    if isinstance(policy, list):
        items = [_normalise(item) for item in policy]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    return policy


def _normalise_statement_values(document: dict[str, Any]) -> dict[str, Any]:
    statements = []
    for statement in as_list(document["Statement"]):
        statement = dict(statement)
        for key in ("Action", "NotAction", "Resource", "NotResource"):
            if key in statement:
                statement[key] = as_list(statement[key])
        statement["Condition"] = {
            operator: {key: as_list(values) for key, values in block.items()}
            for operator, block in statement.get("Condition", {}).items()
        }
        statements.append(statement)
    normalised: dict[str, Any] = _normalise({**document, "Statement": statements})
    return normalised


def _tenant_policies(deployment: Deployment) -> list[tuple[str, dict[str, Any]]]:
    return deployment.policies_of_role(TENANT_ROLE)


def _settings(deployment: Deployment, function: str = "ApiFunction") -> Settings:
    """The tenantscope settings a deployed function would load from its environment."""
    return Settings.load(environ=deployment.environment(function))


# --- functions and layer ------------------------------------------------------------------------


def test_every_function_is_traced_arm64_on_the_runtime_with_the_layer_and_json_logs(
    deployment: Deployment,
) -> None:
    functions = deployment.of_type("AWS::Lambda::Function")
    layers = deployment.of_type("AWS::Lambda::LayerVersion")
    assert len(layers) == 1, f"expected the tenantscope layer, found {sorted(layers)}"
    (layer,) = layers
    assert len(functions) >= 6, sorted(functions)
    for name, props in functions.items():
        assert props.get("TracingConfig") == {"Mode": "Active"}, name
        assert deployment.render(props.get("Architectures")) == ["arm64"], name  # the default
        assert props.get("Runtime") == RUNTIME, name
        assert {"Ref": layer} in props.get("Layers", []), f"{name} lacks the tenantscope layer"
        assert props.get("LoggingConfig", {}).get("LogFormat") == "JSON", name


def test_the_layer_is_built_for_the_runtime_and_architecture(deployment: Deployment) -> None:
    ((_, layer),) = deployment.of_type("AWS::Lambda::LayerVersion").items()
    assert layer["CompatibleRuntimes"] == [RUNTIME]
    assert deployment.render(layer["CompatibleArchitectures"]) == ["arm64"]  # the default
    (source,) = [
        r for r in sam_template()["Resources"].values() if r["Type"] == "AWS::Serverless::LayerVersion"
    ]
    # The functions' architecture; `make build ARCH=...` builds the layer's wheels for it.
    assert source["Metadata"].get("BuildArchitecture") == {"Ref": "Architecture"}


def test_every_handler_exists_in_the_function_code() -> None:
    template = sam_template()
    code_uri = template.get("Globals", {}).get("Function", {}).get("CodeUri")
    functions = {
        n: r["Properties"]
        for n, r in template["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
    }
    assert functions
    for name, props in functions.items():
        module, _, attribute = props["Handler"].rpartition(".")
        path = ROOT / props.get("CodeUri", code_uri) / (module.replace(".", "/") + ".py")
        assert path.is_file(), f"{name}: {path} missing"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined = {
            node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        } | {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        assert attribute in defined, f"{name}: {props['Handler']} is not defined at the top of {path.name}"


# --- queue ----------------------------------------------------------------------------------------


def _worker_mapping(deployment: Deployment) -> dict[str, Any]:
    mappings = [
        props
        for props in deployment.of_type("AWS::Lambda::EventSourceMapping").values()
        if props.get("FunctionName") == {"Ref": WORKER}
    ]
    assert len(mappings) == 1, f"expected one event source mapping for {WORKER}, found {len(mappings)}"
    return mappings[0]


def _queue_of(mapping: dict[str, Any]) -> str:
    logical, attribute = mapping["EventSourceArn"]["Fn::GetAtt"]
    assert attribute == "Arn"
    return str(logical)


def test_the_worker_takes_batches_of_10_and_reports_batch_item_failures(deployment: Deployment) -> None:
    mapping = _worker_mapping(deployment)
    assert deployment.type_of(_queue_of(mapping)) == "AWS::SQS::Queue"
    assert mapping.get("FunctionResponseTypes") == ["ReportBatchItemFailures"]
    assert mapping.get("BatchSize") == 10


def test_the_order_queue_redrives_to_an_encrypted_dead_letter_queue(deployment: Deployment) -> None:
    queue = _queue_of(_worker_mapping(deployment))
    props = deployment.props(queue)
    redrive = props.get("RedrivePolicy")
    assert redrive, f"{queue} has no RedrivePolicy"
    dlq, attribute = redrive["deadLetterTargetArn"]["Fn::GetAtt"]
    assert attribute == "Arn" and dlq != queue and deployment.type_of(dlq) == "AWS::SQS::Queue"
    assert isinstance(redrive.get("maxReceiveCount"), int) and 1 <= redrive["maxReceiveCount"] <= 10
    default_retention = 345600
    dlq_props = deployment.props(dlq)
    assert dlq_props.get("MessageRetentionPeriod", default_retention) >= props.get(
        "MessageRetentionPeriod", default_retention
    ), "the DLQ must keep messages at least as long as the queue"
    for name, queue_props in ((queue, props), (dlq, dlq_props)):
        assert queue_props.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in queue_props, name


def test_the_visibility_timeout_is_at_least_six_worker_timeouts(deployment: Deployment) -> None:
    queue = _queue_of(_worker_mapping(deployment))
    visibility = deployment.props(queue).get("VisibilityTimeout", 30)
    timeout = deployment.props(WORKER).get("Timeout", 3)
    assert int(visibility) >= 6 * int(timeout), (
        f"VisibilityTimeout {visibility} < 6 x {WORKER} Timeout {timeout}"
    )


# --- least privilege of the execution roles ------------------------------------------------------


@pytest.mark.parametrize(("service", "target"), [("dynamodb", APP_TABLE), ("s3", FILES_BUCKET)])
def test_no_role_but_the_tenant_role_reaches_the_tenants_data(
    deployment: Deployment, service: str, target: str
) -> None:
    roles = set(deployment.of_type("AWS::IAM::Role")) - {TENANT_ROLE}
    function_roles = set(deployment.function_roles().values())
    assert function_roles and function_roles <= roles
    for role in sorted(roles):
        grants = _grants(deployment, role, _touches(service), target)
        assert not grants, f"{role} can call {service} on {target}: {grants}"
        unreviewed = set(deployment.external_managed_policies(role)) - REVIEWED_MANAGED_POLICIES
        assert not unreviewed, f"{role} has managed policies not reviewed for data access: {unreviewed}"


def test_no_function_role_is_granted_any_s3_action(deployment: Deployment) -> None:
    # Files only through the tenant role: not even s3 actions on other resources (a "*" would do).
    for function, role in deployment.function_roles().items():
        granted = [
            f"{source}: {action}"
            for source, document in deployment.policies_of_role(role)
            for statement in _allow_statements(document)
            for action in as_list(statement.get("Action", "*"))
            if _touches("s3")(action)
        ]
        assert not granted, f"{function}'s role is granted {granted}"


def test_only_the_worker_writes_the_replay_table(deployment: Deployment) -> None:
    env = deployment.environment(WORKER)
    assert env["TENANTSCOPE_REPLAY_TABLE"] == deployment.name(REPLAY_TABLE)

    def writes(pattern: str) -> bool:
        return _matches_any_action(pattern, DYNAMODB_WRITE_ACTIONS)

    writers = {
        role
        for role in deployment.of_type("AWS::IAM::Role")
        if role != TENANT_ROLE and _grants(deployment, role, writes, REPLAY_TABLE)
    }
    assert writers == {deployment.function_roles()[WORKER]}


def test_functions_may_assume_only_the_tenant_role(deployment: Deployment) -> None:
    tenant_role_arn = deployment.arn(TENANT_ROLE)
    for function, role in deployment.function_roles().items():
        assert deployment.environment(function)["TENANTSCOPE_ROLE_ARN"] == tenant_role_arn, function
        assumable = {
            deployment.render(resource)
            for _, document in deployment.policies_of_role(role)
            for statement in _allow_statements(document)
            if any(glob_match(a, "sts:AssumeRole", ignore_case=True) for a in as_list(statement["Action"]))
            for resource in as_list(statement["Resource"])
        }
        assert assumable == {tenant_role_arn}, f"{role} may assume {assumable}"


def _role_allows(deployment: Deployment, function: str, action: str, resource: str) -> bool:
    role = deployment.function_roles()[function]
    documents = [deployment.render(document) for _, document in deployment.policies_of_role(role)]
    return any(is_allowed(document, action, resource) for document in documents)


# Who seals envelopes in the sample application; every function checks them except the API.
SEALS = {"ApiFunction", WORKER}
KMS_COMBINATIONS = [combination for combination in COMBINATIONS if combination[2] == "kms"]


def _signing_needs(deployment: Deployment, function: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(the key actions ``function`` needs, those it must not have) under the template's EnvelopeKeys."""
    if deployment.envelope_keys == "secretsmanager":  # a ring read whole: every reader can seal
        return [("secretsmanager:GetSecretValue", deployment.arn("SigningKeys"))], []
    wanted = {"kms:GenerateMac": function in SEALS, "kms:VerifyMac": function != "ApiFunction"}
    needed = [(action, deployment.arn("SigningKey")) for action, want in wanted.items() if want]
    return needed, [action for action, want in wanted.items() if not want]


def test_function_roles_grant_what_tenantscope_calls_with_them(deployment: Deployment) -> None:
    """Least privilege must still work: each function's own role can do what the layer does with it."""
    tenant_role = deployment.arn(TENANT_ROLE)
    queue = _queue_of(_worker_mapping(deployment))
    assert deployment.environment("ApiFunction")["ORDER_QUEUE_URL"] == deployment.ref(queue)
    needs = [("ApiFunction", "sqs:SendMessage", deployment.arn(queue))]
    needs.append((WORKER, "states:StartExecution", deployment.arn(STATE_MACHINE)))
    keys = (
        f"kms:{deployment.arn('SigningKey')}"
        if deployment.envelope_keys == "kms"
        else f"secretsmanager:{deployment.arn('SigningKeys')}"
    )
    for function in deployment.function_roles():
        assert deployment.environment(function)["TENANTSCOPE_SIGNING_KEYS"] == keys
        needs += [
            (function, action, resource) for action, resource in _signing_needs(deployment, function)[0]
        ]
        needs += [
            (function, a, tenant_role) for a in ("sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity")
        ]
    missing = [need for need in needs if not _role_allows(deployment, *need)]
    assert not missing, f"denied: {missing}"


@pytest.mark.parametrize(
    "combination", KMS_COMBINATIONS, ids=lambda c: f"{c[0]}{'+userpool' if c[1] else ''}"
)
def test_with_kms_keys_producers_may_only_sign_and_consumers_only_verify(
    combination: tuple[str, bool, str],
) -> None:
    deployment = deployment_for(*combination)
    key = deployment.arn("SigningKey")
    assert deployment.props("SigningKey")["KeySpec"] == "HMAC_256"
    assert deployment.props("SigningKey")["KeyUsage"] == "GENERATE_VERIFY_MAC"
    assert "SigningKeys" not in deployment.resources  # no secret every function could read
    for function in deployment.function_roles():
        refused = _signing_needs(deployment, function)[1]
        granted = [action for action in refused if _role_allows(deployment, function, action, key)]
        assert granted == [], (
            f"{function} may {granted}: it {'seals' if function in SEALS else 'only checks'}"
        )
        assert not _role_allows(deployment, function, "kms:*", key)
    # tasks cannot seal: a compromised task function cannot start work for another tenant
    assert not _role_allows(deployment, "ReserveInventoryFunction", "kms:GenerateMac", key)


def _queue_policy(deployment: Deployment) -> dict[str, Any]:
    (policy,) = deployment.of_type("AWS::SQS::QueuePolicy").values()
    rendered: dict[str, Any] = deployment.render(policy)
    return rendered


@pytest.mark.parametrize("queue", ["OrderQueue", "OrderDeadLetterQueue"])
def test_the_queues_refuse_every_request_without_tls(deployment: Deployment, queue: str) -> None:
    policy = _queue_policy(deployment)
    assert deployment.ref(queue) in policy["Queues"]
    producer = deployment.arn(deployment.function_roles()["ApiFunction"])
    for action in ("sqs:SendMessage", "sqs:ReceiveMessage", "sqs:PurgeQueue"):
        context = {"aws:PrincipalArn": producer, "aws:SecureTransport": "false"}
        assert decide(policy["PolicyDocument"], action, deployment.arn(queue), context) == "ExplicitDeny"


def test_only_this_stacks_producer_sends_to_the_order_queue(deployment: Deployment) -> None:
    document = _queue_policy(deployment)["PolicyDocument"]
    queue = deployment.arn(_queue_of(_worker_mapping(deployment)))
    roles = deployment.function_roles()

    def send(principal: str) -> str:
        return decide(
            document, "sqs:SendMessage", queue, {"aws:PrincipalArn": principal, "aws:SecureTransport": "true"}
        )

    assert send(deployment.arn(roles["ApiFunction"])) == "ImplicitDeny"  # its own policy allows it
    for function, role in roles.items():
        if function != "ApiFunction":
            assert send(deployment.arn(role)) == "ExplicitDeny", function
    assert send(f"arn:aws:iam::{ACCOUNT}:role/Admin") == "ExplicitDeny"
    # the worker still receives and deletes what arrives
    receive = {"aws:PrincipalArn": deployment.arn(roles[WORKER]), "aws:SecureTransport": "true"}
    assert decide(document, "sqs:ReceiveMessage", queue, receive) == "ImplicitDeny"


CONSUMING = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility")


def test_only_the_worker_takes_messages_off_the_order_queue(deployment: Deployment) -> None:
    # Another role of the account with SQS rights (another stack's worker has them on every
    # queue) must not read orders, nor delete them unprocessed
    document = _queue_policy(deployment)["PolicyDocument"]
    queue = deployment.arn(_queue_of(_worker_mapping(deployment)))
    roles = deployment.function_roles()

    def decision(action: str, principal: str, resource: str = queue) -> str:
        context = {"aws:PrincipalArn": principal, "aws:SecureTransport": "true"}
        return decide(document, action, resource, context)

    others = [deployment.arn(role) for function, role in roles.items() if function != WORKER]
    for action in CONSUMING:
        assert decision(action, deployment.arn(roles[WORKER])) == "ImplicitDeny"  # its own role allows it
    for action in (*CONSUMING, "sqs:PurgeQueue"):
        for principal in [*others, f"arn:aws:iam::{ACCOUNT}:role/other-stack-worker"]:
            assert decision(action, principal) == "ExplicitDeny", (action, principal)
    # an operator may still read the dead-letter queue, to redrive it
    dead_letters, operator = deployment.arn("OrderDeadLetterQueue"), f"arn:aws:iam::{ACCOUNT}:role/Admin"
    assert decision("sqs:ReceiveMessage", operator, dead_letters) == "ImplicitDeny"


def test_the_worker_role_consumes_no_queue_but_the_order_queue(deployment: Deployment) -> None:
    # GIVEN the worker's role, to which SAM's SQS event source adds a managed policy that receives
    # and deletes on every queue ("Resource": "*")
    role = deployment.function_roles()[WORKER]
    assert (
        "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"
        in deployment.external_managed_policies(role)
    )
    # THEN its permissions boundary keeps it to the order queue, and leaves the rest to its policies
    boundary = deployment.props(role)["PermissionsBoundary"]
    assert set(boundary) == {"Ref"} and deployment.type_of(boundary["Ref"]) == "AWS::IAM::ManagedPolicy"
    document = deployment.render(deployment.props(boundary["Ref"])["PolicyDocument"])
    assert not deployment.props(boundary["Ref"]).get("Roles"), "a boundary, not a grant"
    queue = deployment.arn(_queue_of(_worker_mapping(deployment)))
    others = (deployment.arn("OrderDeadLetterQueue"), f"arn:aws:sqs:{REGION}:{ACCOUNT}:other-stack-orders")
    for action in (*CONSUMING, "sqs:GetQueueAttributes"):
        assert decide(document, action, queue) == "Allow"
        for other in others:
            assert decide(document, action, other) == "ExplicitDeny", (action, other)
    tenant_role = deployment.arn(TENANT_ROLE)
    assert decide(document, "sts:AssumeRole", tenant_role) == "Allow"


def test_trusted_producers_are_added_to_the_senders() -> None:
    operator = f"arn:aws:iam::{ACCOUNT}:role/orders-operator"
    transformed = transform_template(
        {**parameter_values("session-tags", False), "TrustedProducerArns": operator}
    )
    parameters = {**parameter_values("session-tags", False), "TrustedProducerArns": operator}
    deployment = Deployment("session-tags", False, "kms", resolve(transformed, parameters))
    document = _queue_policy(deployment)["PolicyDocument"]
    queue = deployment.arn("OrderQueue")
    api = deployment.arn(deployment.function_roles()["ApiFunction"])
    for principal, decision in (
        (operator, "ImplicitDeny"),
        (api, "ImplicitDeny"),
        (f"{operator}-2", "ExplicitDeny"),
    ):
        context = {"aws:PrincipalArn": principal, "aws:SecureTransport": "true"}
        assert decide(document, "sqs:SendMessage", queue, context) == decision, principal


class _RecordingDynamoDb:
    """A DynamoDB client double that records the API operations called on it."""

    class exceptions:  # the shape of a boto3 client
        class ConditionalCheckFailedException(Exception):
            pass

    def __init__(self) -> None:
        self.actions: list[str] = []

    def __getattr__(self, operation: str) -> Any:
        def call(**_: Any) -> dict[str, Any]:
            self.actions.append("dynamodb:" + operation.title().replace("_", ""))
            return {}

        return call


def test_the_worker_role_grants_what_the_replay_guard_calls() -> None:
    from tenantscope._replay import DynamoDbReplayGuard

    deployment = deployment_for("session-tags", False)
    client = _RecordingDynamoDb()
    guard = DynamoDbReplayGuard(deployment.name(REPLAY_TABLE), client=client)
    envelope: Any = SimpleNamespace(envelope_id="e-1", tenant_id="acme", expires_at=2_000_000_000)
    guard.admit(envelope, "m-1")
    guard.completed(envelope, "m-1")
    guard.complete(envelope, "m-1")
    assert set(client.actions) == {"dynamodb:UpdateItem", "dynamodb:GetItem"}
    denied = {
        a for a in client.actions if not _role_allows(deployment, WORKER, a, deployment.arn(REPLAY_TABLE))
    }
    assert not denied, f"{WORKER}'s role is denied {sorted(denied)} on {REPLAY_TABLE}"


# --- the tenant role ----------------------------------------------------------------------------

_ACCOUNT_ROOT = re.compile(r"^(arn:[^:]+:iam::)?\d{12}(:root)?$")


def test_the_tenant_role_trusts_exactly_this_stacks_function_roles(deployment: Deployment) -> None:
    document = deployment.props(TENANT_ROLE)["AssumeRolePolicyDocument"]
    function_roles = set(deployment.function_roles().values())
    trusted: set[str] = set()
    actions: set[str] = set()
    for statement in as_list(document["Statement"]):
        assert "NotPrincipal" not in statement
        if statement.get("Effect") != "Allow":
            continue
        principal = statement["Principal"]
        assert principal != "*", "the trust policy is open to everyone"
        assert set(principal) == {"AWS"}, f"unexpected principal types: {sorted(principal)}"
        for entry in as_list(principal["AWS"]):
            rendered = deployment.render(entry)
            assert rendered != "*", "the trust policy is open to every AWS principal"
            assert not _ACCOUNT_ROOT.match(rendered), f"the trust policy is open to an account: {rendered}"
            assert isinstance(entry, dict) and set(entry) == {"Fn::GetAtt"}, (
                f"not a role of this stack: {entry}"
            )
            logical, attribute = entry["Fn::GetAtt"]
            assert attribute == "Arn" and logical in function_roles, f"not a function role: {logical}"
            trusted.add(logical)
        actions.update(as_list(statement["Action"]))
    assert trusted == function_roles
    assert {"sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"} <= actions


def test_isolation_test_roles_are_trusted_as_the_functions_are_and_never_in_prod() -> None:
    # GIVEN a development stack deployed with a role for tests/aws
    tester = f"arn:aws:iam::{ACCOUNT}:role/isolation-tester"
    parameters = {**parameter_values("session-tags", False), "IsolationTestRoleArns": tester}
    deployment = Deployment("session-tags", False, "kms", resolve(transform_template(parameters), parameters))
    statements = as_list(deployment.props(TENANT_ROLE)["AssumeRolePolicyDocument"]["Statement"])
    functions, (testers,) = statements[:1], statements[1:]
    # THEN the tenant role trusts it, with the functions' actions and tag rule, and nothing more
    assert functions == as_list(
        deployment_for("session-tags", False).props(TENANT_ROLE)["AssumeRolePolicyDocument"]["Statement"]
    )
    assert deployment.render(testers["Principal"]) == {"AWS": [tester]}
    assert {k: v for k, v in testers.items() if k not in ("Sid", "Principal")} == {
        k: v for k, v in functions[0].items() if k not in ("Sid", "Principal")
    }
    # and a prod stack refuses one before creating anything
    template = sam_template()
    assert rule_violations(template, {**parameters, "Stage": "prod"}) == [
        "NoIsolationTestRolesInProd: A prod stack's tenant role trusts its functions only "
        "(IsolationTestRoleArns must be empty)."
    ]
    assert not rule_violations(template, {**parameter_values("session-tags", False), "Stage": "prod"})


def test_the_tenant_role_never_gets_scan_partiql_wildcards_or_bucket_wide_access(
    deployment: Deployment,
) -> None:
    assert not deployment.props(TENANT_ROLE).get("ManagedPolicyArns"), "no managed policy on the tenant role"
    policies = _tenant_policies(deployment)
    expected = {"session-tags": "TenantAbacPolicy", "session-policy": "TenantSessionPolicyBoundary"}
    assert [source for source, _ in policies] == [expected[deployment.isolation]]
    table_arn = deployment.arn(APP_TABLE)
    bucket_arn = deployment.arn(FILES_BUCKET)
    kinds = set()
    for source, document in policies:
        for statement in _allow_statements(document):
            assert "NotAction" not in statement and "NotResource" not in statement, source
            actions = as_list(statement["Action"])
            resources = set(deployment.render(as_list(statement["Resource"])))
            condition = statement.get("Condition", {})
            for action in actions:
                assert not _matches_any_action(action, TABLE_WIDE_ACTIONS), f"{source} allows {action}"
            if set(actions) <= set(ITEM_ACTIONS):
                assert resources <= {table_arn, f"{table_arn}/index/*"}, f"{source} reaches {resources}"
                null = condition.get("Null", {}).get("dynamodb:LeadingKeys")
                assert str(null).lower() == "false", f"{source} lacks Null dynamodb:LeadingKeys false"
                kinds.add("items")
            elif set(actions) <= set(OBJECT_ACTIONS):
                # objects, never the bucket, and only below tenants/ (a session narrows it to one tenant)
                assert all(r.startswith(f"{bucket_arn}/tenants/") for r in resources), (
                    f"{source}: {resources}"
                )
                kinds.add("objects")
            elif actions == ["s3:ListBucket"]:
                assert resources == {bucket_arn}, f"{source} lists {resources}"
                assert str(condition.get("Null", {}).get("s3:prefix")).lower() == "false", source
                prefixes = as_list(condition.get("StringLike", {}).get("s3:prefix", []))
                assert prefixes and all(p.startswith("tenants/") for p in prefixes), f"{source}: {prefixes}"
                kinds.add("listing")
            else:
                pytest.fail(f"{source} allows {actions}: neither item, object nor listing actions")
    assert kinds == {"items", "objects", "listing"}


@pytest.mark.parametrize("user_pool", [False, True], ids=["no-userpool", "userpool"])
def test_the_session_tags_policy_is_the_abac_policy(user_pool: bool) -> None:
    deployment = deployment_for("session-tags", user_pool)
    ((_, document),) = _tenant_policies(deployment)
    expected = abac_policy([deployment.arn(APP_TABLE)], [deployment.arn(FILES_BUCKET)])
    assert _normalise_statement_values(deployment.render(document)) == _normalise_statement_values(expected)


def _session(deployment: Deployment, tenant: str | None) -> tuple[list[Any], dict[str, str]]:
    """(the policies, the session tags) of a session of the tenant role assumed with the exact
    request tenantscope builds from a deployed function's environment."""
    (_, role_policy) = _tenant_policies(deployment)[0]
    settings = _settings(deployment)
    assert settings.isolation == deployment.isolation
    request = assume_role_request(tenant, settings) if tenant else None
    policies = [deployment.render(role_policy)]
    if request is not None and request.policy is not None:
        policies.append(json.loads(request.policy))
    return policies, dict(request.tags) if request is not None else {}


def _effective(deployment: Deployment, tenant: str | None) -> Any:
    """``allowed(action, leading_keys, resource=table)`` for a session of ``tenant``."""
    policies, tags = _session(deployment, tenant)
    table_arn = deployment.arn(APP_TABLE)

    def allowed(action: str, keys: list[str] | None, resource: str = table_arn) -> bool:
        context = {"dynamodb:LeadingKeys": keys} if keys is not None else None
        return allowed_by_all(policies, action, resource, context, tags)

    return allowed


def _effective_on_files(deployment: Deployment, tenant: str | None) -> Any:
    """``allowed(action, key_or_none, prefix=None)`` for a session of ``tenant`` on the files bucket:
    an object action on the object ``key``, a bucket action (key None) with the request's s3:prefix."""
    policies, tags = _session(deployment, tenant)
    bucket_arn = deployment.arn(FILES_BUCKET)

    def allowed(action: str, key: str | None, prefix: str | None = None) -> bool:
        resource = bucket_arn if key is None else f"{bucket_arn}/{key}"
        context = {"s3:prefix": prefix} if prefix is not None else None
        return allowed_by_all(policies, action, resource, context, tags)

    return allowed


@pytest.mark.parametrize(("tenant", "other"), [("acme", "acme-corp"), ("acme-corp", "acme")])
def test_a_tenant_session_reaches_its_own_keys_only(deployment: Deployment, tenant: str, other: str) -> None:
    allowed = _effective(deployment, tenant)
    own = [f"TENANT#{tenant}", f"TENANT#{tenant}#ITEM"]
    theirs = [f"TENANT#{other}", f"TENANT#{other}#ITEM"]
    index = f"{deployment.arn(APP_TABLE)}/index/gsi1"
    for action in ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:DeleteItem"):
        for key in own:
            assert allowed(action, [key]), f"{tenant} denied {action} on its own {key}"
            assert allowed(action, [key], index), f"{tenant} denied {action} on its own {key} in an index"
        for key in theirs:
            assert not allowed(action, [key]), f"{tenant} allowed {action} on {key}"
    assert not allowed("dynamodb:BatchWriteItem", [own[1], theirs[1]]), "a mixed batch must be denied"
    assert not allowed("dynamodb:Scan", None), "Scan must be denied"
    assert not allowed("dynamodb:Query", []), "a request without leading keys must be denied"
    assert not allowed("dynamodb:ExecuteStatement", None), "PartiQL must be denied"
    assert not allowed("dynamodb:GetItem", [own[1]], f"{deployment.arn(APP_TABLE)}-other"), "other tables"


@pytest.mark.parametrize(("tenant", "other"), [("acme", "acme-corp"), ("acme-corp", "acme")])
def test_a_tenant_session_reaches_its_own_files_only(deployment: Deployment, tenant: str, other: str) -> None:
    allowed = _effective_on_files(deployment, tenant)
    own = tenant_object_prefix(tenant)
    for action in OBJECT_ACTIONS:
        for key in (f"{own}items/widget/attachment", f"{own}receipts/1.json"):
            assert allowed(action, key), f"{tenant} denied {action} on its own {key}"
        for key in (f"tenants/{other}/x", f"tenants/{tenant}x", f"tenants/{tenant}", "tenants/x", "x"):
            assert not allowed(action, key), f"{tenant} allowed {action} on {key}"
    # A listing needs the tenant's own prefix: not none, not all tenants', not a prefix of another's.
    for prefix in (own, f"{own}receipts/"):
        assert allowed("s3:ListBucket", None, prefix), f"{tenant} denied listing {prefix}"
    for refused in (None, "", "tenants/", f"tenants/{tenant}", f"tenants/{other}/", "receipts/"):
        assert not allowed("s3:ListBucket", None, refused), f"{tenant} allowed listing {refused!r}"
    # No ACLs, versions or tags on objects; nothing on the bucket itself.
    for action in (
        "s3:PutObjectAcl",
        "s3:GetObjectAcl",
        "s3:GetObjectVersion",
        "s3:DeleteObjectVersion",
        "s3:PutObjectTagging",
        "s3:PutObjectRetention",
    ):
        assert not allowed(action, f"{own}x"), f"{tenant} allowed {action}"
    for action in (
        "s3:PutBucketPolicy",
        "s3:DeleteBucket",
        "s3:PutBucketAcl",
        "s3:PutBucketVersioning",
        "s3:PutLifecycleConfiguration",
        "s3:ListBucketVersions",
        "s3:ListBucketMultipartUploads",
    ):
        assert not allowed(action, None, own), f"{tenant} allowed {action}"


def test_a_session_without_tenant_tags_reaches_nothing() -> None:
    deployment = deployment_for("session-tags", False)
    allowed = _effective(deployment, None)
    assert not allowed("dynamodb:GetItem", ["TENANT#acme#ITEM"])
    assert not allowed("dynamodb:GetItem", ["TENANT##ITEM"])
    on_files = _effective_on_files(deployment, None)
    assert not on_files("s3:GetObject", "tenants/acme/x")
    assert not on_files("s3:GetObject", "tenants//x")
    assert not on_files("s3:ListBucket", None, "tenants/acme/")


def test_the_session_policy_fits_the_sts_limits() -> None:
    deployment = deployment_for("session-policy", False)
    settings = _settings(deployment)
    tenant = "a" * 64
    document = session_policy(tenant, settings)
    assert len(document) <= 2048
    assert is_allowed(
        document,
        "dynamodb:GetItem",
        deployment.arn(APP_TABLE),
        {"dynamodb:LeadingKeys": ["TENANT#" + tenant]},
    )
    assert is_allowed(document, "s3:PutObject", f"{deployment.arn(FILES_BUCKET)}/tenants/{tenant}/x")
    # The longest names the stack can have: a table name of 255 characters, a bucket name of 63.
    longest = replace(settings, tables=(replace(settings.tables[0], name="t" * 255),), buckets=("b" * 63,))
    assert len(session_policy(tenant, longest)) <= 2048


# --- the files bucket -----------------------------------------------------------------------------


def test_the_files_bucket_is_private_encrypted_versioned_and_retained(deployment: Deployment) -> None:
    bucket = deployment.props(FILES_BUCKET)
    assert deployment.resources[FILES_BUCKET].get("DeletionPolicy") == "Retain"
    assert deployment.resources[FILES_BUCKET].get("UpdateReplacePolicy") == "Retain"
    blocks = bucket["PublicAccessBlockConfiguration"]
    assert blocks == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}, "ACLs on"
    ((encryption),) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    # S3-managed keys: a KMS key would need grants on the tenant role, which has none.
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    (rule,) = bucket["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled" and "Prefix" not in rule and "TagFilters" not in rule  # every key
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] <= 30
    assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] <= 7
    assert "ExpirationInDays" not in rule and "ExpirationDate" not in rule, "current versions are kept"


def test_the_files_bucket_refuses_every_request_without_tls(deployment: Deployment) -> None:
    (policy,) = deployment.of_type("AWS::S3::BucketPolicy").values()
    rendered = deployment.render(policy)
    assert rendered["Bucket"] == deployment.name(FILES_BUCKET)
    document = rendered["PolicyDocument"]
    bucket = deployment.arn(FILES_BUCKET)
    requests = [
        ("s3:GetObject", f"{bucket}/tenants/acme/x"),
        ("s3:PutObject", f"{bucket}/tenants/acme/x"),
        ("s3:ListBucket", bucket),
        ("s3:PutBucketPolicy", bucket),
    ]
    for action, resource in requests:
        assert decide(document, action, resource, {"aws:SecureTransport": "false"}) == "ExplicitDeny"
        # Over TLS the bucket policy grants nothing: identity policies (the tenant role's) decide.
        assert decide(document, action, resource, {"aws:SecureTransport": "true"}) == "ImplicitDeny"


def test_every_function_is_given_the_files_bucket_as_its_only_bucket(deployment: Deployment) -> None:
    name = deployment.name(FILES_BUCKET)
    for function in deployment.function_roles():
        environment = deployment.environment(function)
        assert environment["FILES_BUCKET_NAME"] == environment["TENANTSCOPE_BUCKETS"] == name, function
        assert Settings.load(environ=environment).buckets == (name,), function


# --- data, state machine, Cognito, API ------------------------------------------------------------


def test_the_tables_are_recoverable_and_encrypted(deployment: Deployment) -> None:
    app = deployment.props(APP_TABLE)
    pitr = app.get("PointInTimeRecoverySpecification", {})
    assert pitr.get("PointInTimeRecoveryEnabled") is True, f"{APP_TABLE} has no point-in-time recovery"
    assert deployment.resources[APP_TABLE].get("DeletionPolicy") == "Retain"
    assert {k["AttributeName"]: k["KeyType"] for k in app["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}
    assert deployment.environment("ApiFunction")["TENANTSCOPE_TABLES"] == f"{deployment.name(APP_TABLE)}=pk"
    for name, props in deployment.of_type("AWS::DynamoDB::Table").items():
        assert props.get("SSESpecification", {}).get("SSEEnabled") is True, f"{name} is not encrypted"


def test_the_state_machine_is_traced_and_logged_without_execution_data(deployment: Deployment) -> None:
    machine = deployment.props(STATE_MACHINE)
    assert machine.get("TracingConfiguration") == {"Enabled": True}, "the state machine is not traced"
    logging = machine.get("LoggingConfiguration", {})
    assert logging.get("Level") in ("ALL", "ERROR", "FATAL"), "the state machine does not log"
    assert logging["IncludeExecutionData"] is False, "sealed order data must stay out of the logs"
    (destination,) = logging["Destinations"]
    group, attribute = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"]
    assert attribute == "Arn" and deployment.type_of(group) == "AWS::Logs::LogGroup"


def test_the_tenant_attribute_is_never_writable_by_users_or_clients(deployment: Deployment) -> None:
    pools = deployment.of_type("AWS::Cognito::UserPool")
    clients = deployment.of_type("AWS::Cognito::UserPoolClient")
    env = deployment.environment("ApiFunction")
    if not deployment.user_pool:
        assert not pools and not clients
        assert env["TENANTSCOPE_JWT_ISSUER"] == deployment.parameters["JwtIssuer"] == EXTERNAL_ISSUER
        assert env["TENANTSCOPE_JWT_AUDIENCE"] == deployment.parameters["JwtAudience"] == EXTERNAL_AUDIENCE
        assert env["TENANTSCOPE_JWKS_URL"] == f"{EXTERNAL_ISSUER}/.well-known/jwks.json"
        return
    ((pool_name, pool),) = pools.items()
    ((_, client),) = clients.items()
    # Without WriteAttributes a client may write every writable attribute.
    assert "WriteAttributes" in client, "WriteAttributes must be listed explicitly"
    assert "custom:tenant_id" not in client["WriteAttributes"]
    (tenant_attribute,) = [a for a in pool["Schema"] if a["Name"] == "tenant_id"]
    assert tenant_attribute.get("Mutable") is False
    assert env["TENANTSCOPE_TENANT_CLAIM"] == "custom:tenant_id"
    assert (
        env["TENANTSCOPE_JWT_ISSUER"]
        == f"https://cognito-idp.{deployment.ref('AWS::Region')}.amazonaws.com/{deployment.ref(pool_name)}"
    )


def test_without_the_user_pool_the_issuer_and_audience_must_be_given() -> None:
    template = sam_template()
    # No usable default: a deploy without overrides must not trust an issuer its deployer does not control.
    for name in ("JwtIssuer", "JwtAudience"):
        assert template["Parameters"][name].get("Default", "") == "", f"{name} has a default"
    without_pool = {"Fn::Equals": [{"Ref": "CreateUserPool"}, "false"]}
    rules = [r for r in template.get("Rules", {}).values() if r.get("RuleCondition") == without_pool]
    assert rules, "no Rules entry applies when CreateUserPool is false"
    asserted = {
        name
        for rule in rules
        for assertion in rule["Assertions"]
        if assertion.get("AssertDescription")
        for name in references(assertion["Assert"])
    }
    assert asserted >= {"JwtIssuer", "JwtAudience"}
    # CloudFormation refuses the defaults without the user pool, and accepts explicit values.
    assert len(rule_violations(template, {})) == 2
    assert len(rule_violations(template, {"JwtIssuer": EXTERNAL_ISSUER})) == 1
    assert not rule_violations(template, parameter_values("session-tags", False))
    # With the user pool the issuer and audience are the pool's, and the parameters are not needed.
    assert not rule_violations(template, {"CreateUserPool": "true"})


def test_every_route_requires_the_jwt_authorizer_of_the_functions_issuer(deployment: Deployment) -> None:
    ((_, api),) = deployment.of_type("AWS::ApiGatewayV2::Api").items()
    body = api["Body"]
    routes = {(method.upper(), path) for path, methods in body["paths"].items() for method in methods}
    assert routes == EXPECTED_ROUTES
    schemes = body["components"]["securitySchemes"]
    for path, methods in body["paths"].items():
        for method, operation in methods.items():
            (requirement,) = operation.get("security", [{}])
            assert set(requirement) == {"JwtAuthorizer"}, (
                f"{method.upper()} {path} is not behind the JWT authorizer"
            )
    jwt = deployment.render(schemes["JwtAuthorizer"]["x-amazon-apigateway-authorizer"]["jwtConfiguration"])
    env = deployment.environment("ApiFunction")
    assert jwt["issuer"] == env["TENANTSCOPE_JWT_ISSUER"]
    assert jwt["audience"] == [env["TENANTSCOPE_JWT_AUDIENCE"]]


def test_the_outputs_name_what_users_need(deployment: Deployment) -> None:
    outputs = deployment.outputs
    missing = set(REQUIRED_OUTPUTS) - set(outputs)
    assert not missing, f"missing outputs: {sorted(missing)}"
    for name, kind in REQUIRED_OUTPUTS.items():
        referenced = {r for r in references(outputs[name]["Value"]) if r in deployment.resources}
        assert [deployment.type_of(r) for r in referenced] == [kind], f"{name} does not name a {kind}"
    assert outputs["AppTableName"]["Value"] == {"Ref": APP_TABLE}
    assert outputs["FilesBucketName"]["Value"] == {"Ref": FILES_BUCKET}
    assert outputs["TenantRoleArn"]["Value"] == {"Fn::GetAtt": [TENANT_ROLE, "Arn"]}
    assert "execute-api" in deployment.render(outputs["ApiUrl"]["Value"])


# --- the state machine definition ---------------------------------------------------------------


def _asl_path() -> Path:
    machine = sam_template()["Resources"][STATE_MACHINE]["Properties"]
    return ROOT / str(machine["DefinitionUri"])


ASL: dict[str, Any] = json.loads(_asl_path().read_text(encoding="utf-8"))


def _states(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in definition["States"].items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from _states(branch)
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from _states(state[key])


STATES = dict(_states(ASL))
TASKS = [name for name, state in STATES.items() if state["Type"] == "Task"]
COMPENSATION = "ReleaseInventory"


def _fail_state(name: str) -> bool:
    return bool(STATES[name]["Type"] == "Fail")


def test_the_definition_has_the_tasks_and_a_compensation_path() -> None:
    assert set(TASKS) >= {"ReserveInventory", "ChargePayment", "CompleteOrder", COMPENSATION}
    release = STATES[COMPENSATION]
    assert release["Parameters"]["FunctionName"] == "${ReleaseInventoryFunctionArn}"
    assert _fail_state(release["Next"]), "compensation ends the execution as failed"
    for task in ("ChargePayment", "CompleteOrder"):
        catch_all = [c for c in STATES[task].get("Catch", []) if "States.ALL" in c["ErrorEquals"]]
        assert [c["Next"] for c in catch_all] == [COMPENSATION], f"{task} does not compensate on failure"


def test_every_state_is_reachable_and_every_target_exists() -> None:
    seen, todo = set(), [ASL["StartAt"]]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        assert name in ASL["States"], f"transition to missing state {name}"
        seen.add(name)
        state = ASL["States"][name]
        todo += [state["Next"]] if "Next" in state else []
        todo += [c["Next"] for c in state.get("Catch", [])]
        todo += [c["Next"] for c in state.get("Choices", [])] + (
            [state["Default"]] if "Default" in state else []
        )
    assert seen == set(ASL["States"]), f"unreachable: {sorted(set(ASL['States']) - seen)}"


@pytest.mark.parametrize("task", TASKS)
def test_every_task_passes_the_envelope_and_the_execution_context(task: str) -> None:
    state = STATES[task]
    assert state["Resource"] == "arn:aws:states:::lambda:invoke"
    payload = state["Parameters"]["Payload"]
    assert payload["tenantscope.$"] == "$.tenantscope"
    assert payload["execution"] == {"name.$": "$$.Execution.Name", "stateMachine.$": "$$.StateMachine.Id"}


@pytest.mark.parametrize("task", TASKS)
def test_every_task_retries(task: str) -> None:
    retriers = STATES[task].get("Retry", [])
    assert any(r.get("MaxAttempts", 3) >= 1 for r in retriers), f"{task} has no Retry"


@pytest.mark.parametrize("task", TASKS)
def test_every_task_retries_the_outage_that_sfn_task_raises(task: str) -> None:
    # @sfn_task raises a passing outage (STS, the key ring) under exactly this name
    name = TemporarilyUnavailable.__name__
    retried = [r for r in STATES[task].get("Retry", []) if {name, "States.ALL"} & set(r["ErrorEquals"])]
    assert retried and retried[0].get("MaxAttempts", 3) >= 1, f"{task} does not retry {name}"


# The names a Retry or Catch rule matches TenantAuthError by: its own, and the two wildcards
# (States.TaskFailed matches every task error but States.Timeout).
TENANT_AUTH_ERROR_NAMES = {"TenantAuthError", "States.ALL", "States.TaskFailed"}


def _first_rule_for_tenant_auth_error(rules: list[dict[str, Any]]) -> dict[str, Any] | None:
    # Rules are tried in order: the first that matches wins.
    return next((rule for rule in rules if TENANT_AUTH_ERROR_NAMES & set(rule["ErrorEquals"])), None)


def _refusal_goes_to(task: str) -> str:
    catcher = _first_rule_for_tenant_auth_error(STATES[task].get("Catch", []))
    assert catcher is not None, f"{task} does not catch TenantAuthError"
    return str(catcher["Next"])


def _retries_tenant_auth_error(state: dict[str, Any]) -> bool:
    retrier = _first_rule_for_tenant_auth_error(state.get("Retry", []))
    return retrier is not None and retrier.get("MaxAttempts", 3) != 0


@pytest.mark.parametrize("task", TASKS)
def test_every_task_catches_tenant_auth_error_into_a_fail_state_or_the_compensation(task: str) -> None:
    # A refusal never runs another task of the workflow; it may run the compensation, which
    # verifies the same sealed input and ends in a Fail state when that is refused too.
    target = _refusal_goes_to(task)
    assert _fail_state(target) or (target == COMPENSATION != task), (
        f"{task}: TenantAuthError goes to {target}, neither a Fail state nor the compensation"
    )
    assert _fail_state(_refusal_goes_to(COMPENSATION))


@pytest.mark.parametrize("task", TASKS)
def test_tenant_auth_error_is_never_retried(task: str) -> None:
    assert not _retries_tenant_auth_error(STATES[task]), f"{task} retries TenantAuthError"


@pytest.mark.parametrize(
    ("retry", "retried"),
    [
        ([], False),
        ([{"ErrorEquals": ["TemporarilyUnavailable"]}], False),
        ([{"ErrorEquals": ["TenantAuthError"]}], True),
        ([{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2}], True),
        ([{"ErrorEquals": ["States.TaskFailed"]}], True),
        ([{"ErrorEquals": ["TenantAuthError"], "MaxAttempts": 0}, {"ErrorEquals": ["States.ALL"]}], False),
    ],
)
def test_the_retry_check_sees_every_rule_that_would_retry_a_refusal(
    retry: list[dict[str, Any]], retried: bool
) -> None:
    assert _retries_tenant_auth_error({"Retry": retry}) is retried


def test_definition_substitutions_and_placeholders_match(deployment: Deployment) -> None:
    substitutions = deployment.props(STATE_MACHINE)["DefinitionSubstitutions"]
    placeholders = set(re.findall(r"\$\{([^}]+)\}", _asl_path().read_text(encoding="utf-8")))
    assert placeholders == set(substitutions)
    invocable = {
        ref
        for _, document in deployment.policies_of_role(
            deployment.props(STATE_MACHINE)["RoleArn"]["Fn::GetAtt"][0]
        )
        for statement in _allow_statements(document)
        if "lambda:InvokeFunction" in as_list(statement["Action"])
        for ref in references(statement["Resource"])
    }
    for key, value in substitutions.items():
        function, attribute = value["Fn::GetAtt"]
        assert attribute == "Arn" and deployment.type_of(function) == "AWS::Lambda::Function", key
        assert function in invocable, f"the state machine role cannot invoke {function}"
