"""The embedded local AWS: the resources template.yaml declares, created in moto, in-process.

moto's CloudFormation ignores the SAM transform, so this module reads template.yaml itself
and creates what the application needs to run: tables, queues (with their redrive policy),
the envelope signing key (a KMS HMAC key, or the secret generated as the template asks), the
tenant role and its policies, the state machine (its definition file with the template's
substitutions), and a registry of the functions with their handlers, environment, HTTP routes
and SQS event sources.

What moto cannot do is done here, the way Lambda would:
- Step Functions tasks reach the real Python handlers through moto's Lambda backend
  (``LambdaSimpleBackend.invoke``, an internal hook, pinned with moto's version and guarded
  by a test).
- moto's own SQS-to-Lambda mapping sends empty message attributes, so :meth:`poll_queue`
  receives messages and builds real-shaped SQS events, reports batch item failures, and
  deletes only the records that succeeded.

Resources that have no local meaning (the layer, the HTTP API, log groups, the optional
Cognito pool) are listed in :attr:`LocalAws.skipped`.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import secrets
import string
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devtools.issuer import DEV_AUDIENCE, DEV_ISSUER
from tenantscope.testing import LambdaContext, http_api_event, record_from_received, sqs_event

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "tenantscope-local"
# What local_aws() deploys with when given no parameters. The template's JwtIssuer and JwtAudience
# have no default (a stack must not trust an issuer its deployer does not control) and its Rules
# require them without the user pool, which has no local meaning; locally the trusted issuer is the
# development one (devtools.issuer), whose tokens the demo and the tests mint.
LOCAL_PARAMETERS: Mapping[str, str] = {"JwtIssuer": DEV_ISSUER, "JwtAudience": DEV_AUDIENCE}


# ---------------------------------------------------------------- template parsing
class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags: ``!Ref X`` -> ``{"Ref": "X"}``, ``!Sub`` -> ``Fn::Sub``."""


def _intrinsic(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if suffix == "GetAtt" and isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node).split(".", 1)}  # !GetAtt A.B -> [A, B]
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


CfnLoader.add_multi_constructor("!", _intrinsic)
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """A CloudFormation YAML file as plain JSON data (YAML anchors become independent copies)."""
    with path.open(encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=CfnLoader)  # noqa: S506 - a SafeLoader subclass
    result: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return result


def references(value: Any) -> set[str]:
    """The names ``value`` refers to through Ref, GetAtt and Sub (logical ids or parameters)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for function, argument in value.items():
            if function == "Ref" and isinstance(argument, str):
                found.add(argument)
            elif function == "Fn::GetAtt":
                found.add((argument if isinstance(argument, list) else argument.split("."))[0])
            elif function == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument
                names = (m.group(1) for m in _SUB_VARIABLE.finditer(text) if not m.group(1).startswith("!"))
                found.update(name.split(".", 1)[0] for name in names if name not in variables)
                found |= references(variables)
            else:
                found |= references(argument)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return found


@dataclass
class LocalFunction:
    """A function of the template, as the local runtime calls it."""

    logical_id: str
    name: str
    handler: str
    environment: dict[str, str]
    timeout: int
    routes: list[tuple[str, str]] = field(default_factory=list)
    queue_arn: str | None = None
    batch_size: int = 10

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.name}"

    def context(self) -> LambdaContext:
        """The context object of one invocation of this function."""
        return LambdaContext(self.name, request_id=str(uuid.uuid4()), timeout=self.timeout)

    def load(self) -> Callable[[Any, Any], Any]:
        module, _, attribute = self.handler.rpartition(".")
        handler: Callable[[Any, Any], Any] = getattr(importlib.import_module(module), attribute)
        return handler


class LocalAws:
    """Creates the template's resources in the current moto account and runs its functions."""

    def __init__(self, parameters: Mapping[str, str] | None = None, template: dict[str, Any] | None = None):
        self.template = template or load_template()
        self.parameters = {
            name: str(spec.get("Default", "")) for name, spec in self.template.get("Parameters", {}).items()
        }
        self.parameters.update(parameters or {})
        self.conditions = {
            name: bool(self.resolve(expr)) for name, expr in self.template.get("Conditions", {}).items()
        }
        # The template's Rules, as CloudFormation checks them before creating anything.
        for rule_name, rule in self.template.get("Rules", {}).items():
            if "RuleCondition" not in rule or self.resolve(rule["RuleCondition"]):
                for assertion in rule["Assertions"]:
                    if not self.resolve(assertion["Assert"]):
                        raise ValueError(f"rule {rule_name}: {assertion.get('AssertDescription', 'failed')}")
        self.physical: dict[str, dict[str, str]] = {}  # logical id -> {"Ref": ..., "Arn": ..., ...}
        self.functions: dict[str, LocalFunction] = {}
        self.skipped: list[str] = []
        self._invoke_lock = threading.Lock()

    # ------------------------------------------------------------ intrinsic functions
    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value) if r is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                return self.physical[arg[0]][arg[1]]
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
                return re.sub(r"\$\{([^!}][^}]*)\}", lambda m: str(self._sub_var(m[1], variables)), text)
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self.resolve(when_true if self.conditions[name] else when_false)
            if key == "Fn::Equals":
                left, right = self.resolve(arg)
                return left == right
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(p) for p in self.resolve(parts))
            if key == "Condition":
                return self.conditions[arg]
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::StackName": STACK,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": _NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.physical[name]["Ref"]

    def _sub_var(self, name: str, variables: Mapping[str, Any]) -> Any:
        if name in variables:
            return variables[name]
        if "." in name:
            logical, attribute = name.split(".", 1)
            return self.physical[logical][attribute]
        return self._ref(name)

    # ------------------------------------------------------------ creating resources
    def create(self) -> LocalAws:
        """Create every resource the template declares that runs locally, in dependency order."""
        resources = self.template["Resources"]
        pending = {
            name: spec
            for name, spec in resources.items()
            if "Condition" not in spec or self.conditions[spec["Condition"]]
        }
        self.skipped += sorted(set(resources) - set(pending))
        while pending:
            ready = [n for n, s in pending.items() if not self._dependencies(n, s, resources) & set(pending)]
            if not ready:
                raise RuntimeError(f"circular references among {sorted(pending)}")
            for name in ready:
                self._create(name, pending.pop(name))
        return self

    def _dependencies(self, name: str, spec: dict[str, Any], resources: Mapping[str, Any]) -> set[str]:
        named = references(spec)
        if spec["Type"] == "AWS::Serverless::Function":
            named |= references(self.template.get("Globals", {}).get("Function", {}))
        # SAM makes a role per function (<Function>Role), created here with its function.
        return {
            r[: -len("Role")] if r.endswith("Role") and r[: -len("Role")] in resources else r for r in named
        } - {name}

    def _create(self, name: str, spec: dict[str, Any]) -> None:
        kind = spec["Type"]
        properties = spec.get("Properties", {})
        creator = {
            "AWS::DynamoDB::Table": self._table,
            "AWS::SQS::Queue": self._queue,
            "AWS::SecretsManager::Secret": self._secret,
            "AWS::KMS::Key": self._kms_key,
            "AWS::IAM::Role": self._role,
            "AWS::IAM::RolePolicy": self._role_policy,
            "AWS::Serverless::Function": self._function,
            "AWS::Serverless::StateMachine": self._state_machine,
        }.get(kind)
        if creator is None:
            self.skipped.append(name)
            self.physical[name] = {
                "Ref": f"{STACK}-{name}",
                "Arn": f"arn:aws:local:{REGION}:{ACCOUNT}:{name}",
            }
            return
        creator(name, properties)

    def _client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=REGION)

    def _table(self, name: str, properties: dict[str, Any]) -> None:
        table = f"{STACK}-{name}"
        props = self.resolve(properties)
        dynamodb = self._client("dynamodb")
        dynamodb.create_table(
            TableName=table,
            KeySchema=props["KeySchema"],
            AttributeDefinitions=props["AttributeDefinitions"],
            BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
        )
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification=ttl)
        arn = dynamodb.describe_table(TableName=table)["Table"]["TableArn"]
        self.physical[name] = {"Ref": table, "Arn": arn}

    def _queue(self, name: str, properties: dict[str, Any]) -> None:
        props = self.resolve(properties)
        attributes = {
            key: json.dumps(value) if isinstance(value, dict) else str(value)
            for key, value in props.items()
            if key in ("VisibilityTimeout", "MessageRetentionPeriod", "RedrivePolicy", "DelaySeconds")
        }
        sqs = self._client("sqs")
        url = sqs.create_queue(QueueName=f"{STACK}-{name}", Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.physical[name] = {"Ref": url, "Arn": arn, "QueueName": f"{STACK}-{name}"}

    def _secret(self, name: str, properties: dict[str, Any]) -> None:
        props = self.resolve(properties)
        generate = props.get("GenerateSecretString")
        if generate:  # what Secrets Manager does with GenerateSecretString, locally
            alphabet = string.ascii_letters + string.digits
            if not generate.get("ExcludePunctuation"):
                alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
            document = json.loads(generate.get("SecretStringTemplate", "{}"))
            document[generate["GenerateStringKey"]] = "".join(
                secrets.choice(alphabet) for _ in range(int(generate.get("PasswordLength", 32)))
            )
            value = json.dumps(document)
        else:
            value = props["SecretString"]
        arn = self._client("secretsmanager").create_secret(Name=f"{STACK}-{name}", SecretString=value)["ARN"]
        self.physical[name] = {"Ref": arn, "Arn": arn}

    def _kms_key(self, name: str, properties: dict[str, Any]) -> None:
        props = self.resolve(properties)
        key = self._client("kms").create_key(
            KeySpec=props.get("KeySpec", "SYMMETRIC_DEFAULT"),
            KeyUsage=props.get("KeyUsage", "ENCRYPT_DECRYPT"),
            Description=props.get("Description", ""),
        )["KeyMetadata"]
        self.physical[name] = {"Ref": key["KeyId"], "Arn": key["Arn"]}

    def _role(self, name: str, properties: dict[str, Any]) -> None:
        props = self.resolve(properties)
        role_name = props.get("RoleName", f"{STACK}-{name}")
        role = self._client("iam").create_role(
            RoleName=role_name,
            AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]),
            MaxSessionDuration=int(props.get("MaxSessionDuration", 3600)),
        )["Role"]
        self.physical[name] = {"Ref": role_name, "Arn": role["Arn"]}

    def _role_policy(self, name: str, properties: dict[str, Any]) -> None:
        props = self.resolve(properties)
        self._client("iam").put_role_policy(
            RoleName=props["RoleName"],
            PolicyName=props["PolicyName"],
            PolicyDocument=json.dumps(props["PolicyDocument"]),
        )
        self.physical[name] = {"Ref": props["PolicyName"]}

    def _function(self, name: str, properties: dict[str, Any]) -> None:
        globals_ = self.template.get("Globals", {}).get("Function", {})
        environment = {
            **self.resolve(globals_.get("Environment", {}).get("Variables", {})),
            **self.resolve(properties.get("Environment", {}).get("Variables", {})),
        }
        function = LocalFunction(
            logical_id=name,
            name=f"{STACK}-{name}",
            handler=properties["Handler"],
            environment={k: str(v) for k, v in environment.items()},
            timeout=int(properties.get("Timeout", globals_.get("Timeout", 3))),
        )
        # SAM's implicit role: locally a plain IAM role, so the tenant role's trust can name it.
        role = self._client("iam").create_role(
            RoleName=f"{STACK}-{name}Role",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]
        self.physical[f"{name}Role"] = {"Ref": role["RoleName"], "Arn": role["Arn"]}
        for event in properties.get("Events", {}).values():
            event_props = event.get("Properties", {})
            if event["Type"] == "HttpApi":
                function.routes.append((event_props["Method"].upper(), event_props["Path"]))
            elif event["Type"] == "SQS":
                function.queue_arn = self.resolve(event_props["Queue"])
                function.batch_size = int(event_props.get("BatchSize", 10))
        self.functions[name] = function
        self.physical[name] = {"Ref": function.name, "Arn": function.arn}

    def _state_machine(self, name: str, properties: dict[str, Any]) -> None:
        substitutions = self.resolve(properties.get("DefinitionSubstitutions", {}))
        definition = (ROOT / properties["DefinitionUri"]).read_text()
        definition = re.sub(r"\$\{(\w+)\}", lambda m: str(substitutions[m[1]]), definition)
        sfn = self._client("stepfunctions")
        arn = sfn.create_state_machine(
            name=f"{STACK}-{name}",
            definition=definition,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/{STACK}-{name}Role",
            type=properties.get("Type", "STANDARD"),
        )["stateMachineArn"]
        self.physical[name] = {"Ref": arn, "Arn": arn, "Name": f"{STACK}-{name}"}

    # ------------------------------------------------------------ running functions
    def environment(self) -> dict[str, str]:
        """Every function's environment, merged: they share one process here."""
        merged: dict[str, str] = {}
        for function in self.functions.values():
            merged.update(function.environment)
        return merged

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Call a function's handler as Lambda would (one invocation at a time)."""
        function = self.functions[logical_id]
        return function.load()(event, function.context())

    def route(self, method: str, path: str) -> tuple[LocalFunction, str, dict[str, str]]:
        """The function, route key and path parameters for an HTTP request."""
        for function in self.functions.values():
            for route_method, pattern in function.routes:
                regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$"
                match = re.match(regex, path)
                if route_method == method and match:
                    return function, f"{method} {pattern}", match.groupdict()
        raise LookupError(f"no route for {method} {path}")

    def http(self, method: str, path: str, token: str | None = None, body: Any = None) -> dict[str, Any]:
        """An HTTP API (payload v2) request to the function that serves the route."""
        function, route_key, parameters = self.route(method, path)
        event = http_api_event(
            token,
            method=method,
            path=path,
            route=route_key.split(" ", 1)[1],
            body=body,
            path_parameters=parameters,
        )
        response: dict[str, Any] = self.invoke(function.logical_id, event)
        return response

    def poll_queue(self, logical_id: str) -> tuple[int, list[str]]:
        """One poll of a function's SQS event source, as Lambda's event source mapping does it.

        Returns (records delivered, message ids reported as failures). Failed records are made
        visible again at once, so a retry (and, after maxReceiveCount, the DLQ) follows quickly.
        """
        function = self.functions[logical_id]
        assert function.queue_arn is not None
        sqs = self._client("sqs")
        url = sqs.get_queue_url(QueueName=function.queue_arn.rsplit(":", 1)[1])["QueueUrl"]
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=function.batch_size,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            AttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0, []
        event = sqs_event(record_from_received(m, queue_arn=function.queue_arn) for m in messages)
        response = self.invoke(logical_id, event) or {}
        failed = [f["itemIdentifier"] for f in response.get("batchItemFailures", [])]
        for message in messages:
            if message["MessageId"] in failed:
                sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages), failed

    def wait_for_executions(self, timeout: float = 120.0) -> dict[str, dict[str, Any]]:
        """Every execution of the template's state machines, once none is still running.

        moto runs executions on background threads; they must not outlive the local AWS.
        """
        sfn = self._client("stepfunctions")
        machines = [
            p["Arn"]
            for n, p in self.physical.items()
            if self.template["Resources"].get(n, {}).get("Type") == "AWS::Serverless::StateMachine"
        ]
        deadline = time.monotonic() + timeout
        while True:
            executions = [
                e for arn in machines for e in sfn.list_executions(stateMachineArn=arn)["executions"]
            ]
            if all(e["status"] != "RUNNING" for e in executions) or time.monotonic() > deadline:
                return {e["name"]: sfn.describe_execution(executionArn=e["executionArn"]) for e in executions}
            time.sleep(0.05)

    def dispatch_lambda(self, function_name: str, payload: bytes | str | None) -> tuple[bytes, bool]:
        """Step Functions' Lambda invoke: run the named function; (response body, failed)."""
        name = function_name.rsplit(":", 1)[-1] if function_name.startswith("arn:") else function_name
        function = next(f for f in self.functions.values() if name in (f.name, f.logical_id))
        event = json.loads(payload or "{}")
        with self._invoke_lock:  # one invocation at a time per process, as in a Lambda sandbox
            try:
                result = self.invoke(function.logical_id, event)
            except Exception as error:
                body = {"errorType": type(error).__name__, "errorMessage": str(error)}
                return json.dumps(body).encode(), True
        return json.dumps(result).encode(), False


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()


def use_local_credentials() -> None:
    """Fake function-role credentials and the local region: nothing can reach a real account."""
    os.environ.update(
        AWS_ACCESS_KEY_ID="local-function-role",
        AWS_SECRET_ACCESS_KEY="local",
        AWS_SESSION_TOKEN="local",
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
    )
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_LAMBDA_FUNCTION_NAME"):
        os.environ.pop(name, None)


@contextmanager
def local_aws(
    parameters: Mapping[str, str] | None = None, environment: Mapping[str, str] | None = None
) -> Iterator[LocalAws]:
    """moto with Step Functions executing, the template's resources, and Lambda dispatch.

    ``parameters`` are the stack's parameter values (default :data:`LOCAL_PARAMETERS`: the
    development issuer); ``environment`` overrides function environment variables (e.g. a local
    JWKS URL).
    """
    from moto import mock_aws
    from moto.awslambda_simple.models import LambdaSimpleBackend

    use_local_credentials()
    functions_dir = str(ROOT / "functions")
    if functions_dir not in sys.path:
        sys.path.insert(0, functions_dir)

    config = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    holder: dict[str, LocalAws] = {}
    original_invoke = LambdaSimpleBackend.invoke

    def invoke(
        self: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any
    ) -> bytes:
        payload, failed = holder["aws"].dispatch_lambda(function_name, body)
        if failed:
            response_headers["x-amz-function-error"] = "Unhandled"
        return payload

    saved_env = dict(os.environ)
    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    try:
        with mock_aws(config=config):  # type: ignore[arg-type]
            aws = LocalAws(LOCAL_PARAMETERS if parameters is None else parameters).create()
            holder["aws"] = aws
            os.environ.update(aws.environment())
            os.environ.update(environment or {})
            try:
                yield aws
            finally:
                aws.wait_for_executions()
    finally:
        LambdaSimpleBackend.invoke = original_invoke  # type: ignore[method-assign]
        os.environ.clear()
        os.environ.update(saved_env)
