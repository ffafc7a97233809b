"""The SAM template as CloudFormation would see it, for the template gates.

``template.yaml`` is loaded with the CloudFormation short-form tags (``!Ref``, ``!Sub``, ``!GetAtt``...),
packaged the way ``sam package`` does it (local code and definition paths become S3 locations),
transformed by samtranslator, and then resolved for one combination of parameter values: the
Conditions are evaluated, resources and outputs whose condition is false are dropped, and every
``Fn::If`` is replaced by its chosen branch (``AWS::NoValue`` removes the property). What is left is
what CloudFormation would create for those parameters.

A :class:`Deployment` also renders intrinsics (Ref, GetAtt, Sub, Join) to the strings they would have
in a stack named ``tenantscope-test`` in account 123456789012, us-east-1, so that policies can be
compared and evaluated as data with :mod:`tests.iam_eval`.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform

from devtools.local_aws import load_template
from tests.iam_eval import as_list

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"

# AWS managed policies reviewed to hold no DynamoDB or S3 action (CloudWatch Logs, X-Ray, SQS receive
# and delete). Any other managed policy on a function's role fails the gates until it is reviewed.
REVIEWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
}

ACCOUNT = "123456789012"
REGION = "us-east-1"
STACK = "tenantscope-test"
PSEUDO_PARAMETERS = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::StackName": STACK,
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/0f0e0d0c-0b0a",
    "AWS::URLSuffix": "amazonaws.com",
}

ISOLATION_STRATEGIES = ("session-tags", "session-policy")
# Every IsolationStrategy x CreateUserPool with the default EnvelopeKeys (kms), and the key ring in
# Secrets Manager under each strategy.
COMBINATIONS = [
    *((isolation, pool, "kms") for isolation in ISOLATION_STRATEGIES for pool in (False, True)),
    *((isolation, False, "secretsmanager") for isolation in ISOLATION_STRATEGIES),
]


# --- loading ----------------------------------------------------------------------------------


@functools.cache
def _raw_template() -> str:
    return json.dumps(load_template(TEMPLATE))


def sam_template() -> dict[str, Any]:
    """template.yaml as written (a fresh copy each call)."""
    result: dict[str, Any] = json.loads(_raw_template())
    return result


def package(template: dict[str, Any], base: Path = ROOT) -> dict[str, Any]:
    """What ``sam package`` hands to the transform: local CodeUri, ContentUri and DefinitionUri
    paths replaced by S3 locations. Each local path must exist (relative to ``base``, the
    template's directory)."""
    packaged = copy.deepcopy(template)

    def upload(props: dict[str, Any], key: str) -> None:
        path = props.get(key)
        if isinstance(path, str) and not path.startswith("s3://"):
            assert (base / path).exists(), f"{key} {path!r} does not exist in {base}"
            props[key] = f"s3://tenantscope-test-artifacts/{path.strip('/')}"

    upload(packaged.get("Globals", {}).get("Function", {}), "CodeUri")
    uris = {
        "AWS::Serverless::Function": "CodeUri",
        "AWS::Serverless::LayerVersion": "ContentUri",
        "AWS::Serverless::StateMachine": "DefinitionUri",
    }
    for resource in packaged["Resources"].values():
        if resource.get("Type") in uris:
            upload(resource.setdefault("Properties", {}), uris[resource["Type"]])
    return packaged


class FakeManagedPolicyLoader(ManagedPolicyLoader):
    """No IAM calls: samtranslator's bundled map already names the AWS managed policies.
    ``calls`` counts fallbacks, which happen only for a policy name the bundled map lacks."""

    def __init__(self) -> None:
        self.calls = 0

    def load(self) -> dict[str, str]:
        self.calls += 1
        return {}


# Without the user pool the stack trusts an external issuer, which must be given (template Rules).
EXTERNAL_ISSUER = "https://idp.example.com/tenantscope"
EXTERNAL_AUDIENCE = "tenantscope-api"


def parameter_values(isolation: str, user_pool: bool, envelope_keys: str = "kms") -> dict[str, str]:
    values = {
        "IsolationStrategy": isolation,
        "CreateUserPool": "true" if user_pool else "false",
        "EnvelopeKeys": envelope_keys,
    }
    if not user_pool:
        values.update(JwtIssuer=EXTERNAL_ISSUER, JwtAudience=EXTERNAL_AUDIENCE)
    return values


def transform_template(parameters: dict[str, str], template: Path | None = None) -> dict[str, Any]:
    """The packaged template.yaml (or another SAM ``template``) transformed by samtranslator (no AWS
    call: the region comes from the environment, which is set here for the duration of the call)."""
    source, base = (sam_template(), ROOT) if template is None else (load_template(template), template.parent)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setenv("AWS_REGION", REGION)
        patch.delenv("AWS_PROFILE", raising=False)
        transformed: dict[str, Any] = transform(
            package(source, base), dict(parameters), FakeManagedPolicyLoader()
        )
    return transformed


# --- resolving conditions ---------------------------------------------------------------------

_ABSENT = object()  # the value of Ref AWS::NoValue: the property is removed


class _Conditions:
    def __init__(self, conditions: dict[str, Any], parameters: dict[str, str]) -> None:
        self._definitions = conditions
        self._parameters = parameters
        self._values: dict[str, bool] = {}

    def __getitem__(self, name: str) -> bool:
        if name not in self._values:
            self._values[name] = self._truth(self._definitions[name])
        return self._values[name]

    def _scalar(self, value: Any) -> str:
        if isinstance(value, dict) and set(value) == {"Ref"}:
            name = value["Ref"]
            return PSEUDO_PARAMETERS[name] if name in PSEUDO_PARAMETERS else self._parameters[name]
        if isinstance(value, str | int | bool):
            return str(value).lower() if isinstance(value, bool) else str(value)
        raise NotImplementedError(f"condition operand not modelled: {value!r}")

    def holds(self, expression: Any) -> bool:
        """The truth of a condition expression (as in Conditions, or a Rules condition or assertion)."""
        return self._truth(expression)

    def _truth(self, expression: Any) -> bool:
        (function, args), *rest = expression.items()
        assert not rest, f"one function per condition: {expression!r}"
        if function == "Fn::Equals":
            left, right = (self._scalar(arg) for arg in args)
            return left == right
        if function == "Fn::Not":
            return not self._truth(args[0])
        if function == "Fn::And":
            return all(self._truth(arg) for arg in args)
        if function == "Fn::Or":
            return any(self._truth(arg) for arg in args)
        if function == "Condition":
            return self[args]
        raise NotImplementedError(f"condition function not modelled: {function}")


def _resolve_ifs(value: Any, conditions: _Conditions) -> Any:
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            name, if_true, if_false = value["Fn::If"]
            return _resolve_ifs(if_true if conditions[name] else if_false, conditions)
        if value == {"Ref": "AWS::NoValue"}:
            return _ABSENT
        resolved = {key: _resolve_ifs(item, conditions) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _ABSENT}
    if isinstance(value, list):
        return [item for item in (_resolve_ifs(v, conditions) for v in value) if item is not _ABSENT]
    return value


def parameter_values_with_defaults(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, str]:
    """Every parameter's value: the given ones, else the declared default ("" when none)."""
    declared = template.get("Parameters", {})
    values = {name: str(spec.get("Default", "")) for name, spec in declared.items()}
    unknown = set(parameters) - set(values)
    assert not unknown, f"not parameters of the template: {sorted(unknown)}"
    values.update(parameters)
    return values


def rule_violations(template: dict[str, Any], parameters: dict[str, str]) -> list[str]:
    """The AssertDescription of every template Rules assertion that fails for these parameters:
    what CloudFormation would refuse the stack for before creating anything."""
    evaluate = _Conditions({}, parameter_values_with_defaults(template, parameters)).holds
    violations = []
    for name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"]):
            continue
        for assertion in rule["Assertions"]:
            if not evaluate(assertion["Assert"]):
                violations.append(f"{name}: {assertion.get('AssertDescription', assertion['Assert'])}")
    return violations


def resolve(transformed: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    """The transformed template for these parameter values: conditions applied, Fn::If resolved.
    The parameters must satisfy the template's Rules, as CloudFormation requires."""
    values = parameter_values_with_defaults(transformed, parameters)
    violations = rule_violations(transformed, parameters)
    assert not violations, f"CloudFormation would refuse these parameters: {violations}"
    conditions = _Conditions(transformed.get("Conditions", {}), values)
    result = {key: value for key, value in transformed.items() if key not in ("Resources", "Outputs")}
    result["ParameterValues"] = values
    for section in ("Resources", "Outputs"):
        kept = {
            name: body
            for name, body in transformed.get(section, {}).items()
            if "Condition" not in body or conditions[body["Condition"]]
        }
        result[section] = _resolve_ifs(kept, conditions)
    return result


# --- rendering intrinsics ---------------------------------------------------------------------

_NAME_PROPERTY = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Lambda::LayerVersion": "LayerName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::S3::Bucket": "BucketName",
}
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True)
class Deployment:
    """The resolved template for one combination of parameters, with helpers to read it."""

    isolation: str
    user_pool: bool
    envelope_keys: str
    template: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.isolation}{'+userpool' if self.user_pool else ''}+{self.envelope_keys}"

    @property
    def resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = self.template["Resources"]
        return resources

    @property
    def outputs(self) -> dict[str, Any]:
        outputs: dict[str, Any] = self.template.get("Outputs", {})
        return outputs

    @property
    def parameters(self) -> dict[str, str]:
        parameters: dict[str, str] = self.template["ParameterValues"]
        return parameters

    def type_of(self, logical_id: str) -> str:
        kind: str = self.resources[logical_id]["Type"]
        return kind

    def props(self, logical_id: str) -> dict[str, Any]:
        props: dict[str, Any] = self.resources[logical_id].get("Properties", {})
        return props

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        """``{logical id: Properties}`` of every resource of this type."""
        return {
            name: body.get("Properties", {}) for name, body in self.resources.items() if body["Type"] == kind
        }

    # Lambda functions and their roles ---------------------------------------------------------

    def function_roles(self) -> dict[str, str]:
        """``{function logical id: role logical id}``; every function's role must be of this stack."""
        roles: dict[str, str] = {}
        for name, props in self.of_type("AWS::Lambda::Function").items():
            role = props.get("Role")
            assert isinstance(role, dict) and "Fn::GetAtt" in role, (
                f"{name}: Role is not a role of this stack"
            )
            logical, attribute = role["Fn::GetAtt"]
            assert attribute == "Arn" and self.type_of(logical) == "AWS::IAM::Role", f"{name}: Role {role}"
            roles[name] = logical
        return roles

    def environment(self, function: str) -> dict[str, str]:
        """A function's environment variables, rendered, plus AWS_REGION as Lambda sets it."""
        variables = self.props(function).get("Environment", {}).get("Variables", {})
        rendered: dict[str, str] = self.render(variables)
        return {**rendered, "AWS_REGION": REGION}

    # IAM -----------------------------------------------------------------------------------------

    def _attaches_to(self, props: dict[str, Any], role: str) -> bool:
        reference = {"Ref": role}
        return props.get("RoleName") == reference or reference in as_list(props.get("Roles", []))

    def policies_of_role(self, role: str) -> list[tuple[str, dict[str, Any]]]:
        """Every policy document of this stack that applies to ``role``, labelled by where it is:
        the role's inline policies, RolePolicy/Policy/ManagedPolicy resources attached to it, and
        this stack's managed policies named in its ManagedPolicyArns."""
        props = self.props(role)
        found = [
            (f"{role}.Policies[{p.get('PolicyName')}]", p["PolicyDocument"])
            for p in props.get("Policies", [])
        ]
        for kind in ("AWS::IAM::RolePolicy", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for name, policy in self.of_type(kind).items():
                if self._attaches_to(policy, role):
                    found.append((name, policy["PolicyDocument"]))
        for arn in props.get("ManagedPolicyArns", []):
            if isinstance(arn, dict) and set(arn) == {"Ref"} and arn["Ref"] in self.resources:
                found.append((arn["Ref"], self.props(arn["Ref"])["PolicyDocument"]))
        return found

    def external_managed_policies(self, role: str) -> list[str]:
        """The ARNs of managed policies not defined in this stack, attached to ``role``, rendered."""
        arns = self.props(role).get("ManagedPolicyArns", [])
        return [
            self.render(arn)
            for arn in arns
            if not (isinstance(arn, dict) and set(arn) == {"Ref"} and arn["Ref"] in self.resources)
        ]

    # rendering -----------------------------------------------------------------------------------

    def name(self, logical_id: str) -> str:
        """The physical name: the name property when set, else a CloudFormation-style generated one."""
        prop = _NAME_PROPERTY.get(self.type_of(logical_id))
        if prop and prop in self.props(logical_id):
            name: str = self.render(self.props(logical_id)[prop])
            return name
        generated = f"{STACK}-{logical_id}-1A2B3C4D5E6F"
        # S3 bucket names are lower case: CloudFormation lowers what it generates for one.
        return generated.lower() if self.type_of(logical_id) == "AWS::S3::Bucket" else generated

    def arn(self, logical_id: str) -> str:
        kind, name = self.type_of(logical_id), self.name(logical_id)
        arns = {
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{name}",
            "AWS::IAM::ManagedPolicy": f"arn:aws:iam::{ACCOUNT}:policy/{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
            "AWS::Lambda::LayerVersion": f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{name}:1",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
            "AWS::StepFunctions::StateMachine": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}",
            "AWS::SecretsManager::Secret": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf",
            "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{name}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
        }
        service = kind.split("::")[1].lower()
        return arns.get(kind, f"arn:aws:{service}:{REGION}:{ACCOUNT}:{logical_id}")

    def ref(self, name: str) -> str:
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name in self.parameters:
            return self.parameters[name]
        kind = self.type_of(name)  # KeyError: a reference to nothing
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{self.name(name)}"
        if kind in (
            "AWS::StepFunctions::StateMachine",
            "AWS::SecretsManager::Secret",
            "AWS::Lambda::LayerVersion",
            "AWS::IAM::ManagedPolicy",
        ):
            return self.arn(name)
        if kind == "AWS::Cognito::UserPool":
            return f"{REGION}_TeStPoOl1"
        return self.name(name)

    def get_att(self, logical_id: str, attribute: str) -> str:
        if attribute == "Arn":
            return self.arn(logical_id)
        if attribute == "QueueUrl":
            return self.ref(logical_id)
        return f"<{logical_id}.{attribute}>"

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal}
            if name in variables:
                return str(self.render(variables[name]))
            if "." in name and name.split(".", 1)[0] in self.resources:
                return self.get_att(*name.split(".", 1))
            return self.ref(name)

        return _SUB_VARIABLE.sub(replace, text)

    def render(self, value: Any) -> Any:
        """``value`` with every intrinsic replaced by the string it would have in the test stack."""
        if isinstance(value, dict):
            if len(value) == 1:
                ((function, argument),) = value.items()
                if function == "Ref":
                    return self.ref(argument)
                if function == "Fn::GetAtt":
                    logical, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                    return self.get_att(logical, attribute)
                if function == "Fn::Sub":
                    return self._sub(argument)
                if function == "Fn::Join":
                    separator, parts = argument
                    return separator.join(str(self.render(part)) for part in parts)
                if function == "Fn::Split":
                    separator, text = argument
                    return str(self.render(text)).split(separator)
                if function.startswith("Fn::"):
                    raise NotImplementedError(f"rendering {function} is not modelled")
            return {key: self.render(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.render(item) for item in value]
        return value


@functools.cache
def _transformed(isolation: str, user_pool: bool, envelope_keys: str) -> str:
    return json.dumps(transform_template(parameter_values(isolation, user_pool, envelope_keys)))


def deployment_of_template(template: Path, parameters: dict[str, str]) -> Deployment:
    """Another SAM template (a user's, laid out with its code), as deployed with ``parameters``."""
    resolved = resolve(transform_template(parameters, template), parameters)
    isolation = resolved["ParameterValues"].get("IsolationStrategy", "session-tags")
    return Deployment(isolation, False, "kms", resolved)


def deployment_for(isolation: str, user_pool: bool, envelope_keys: str = "kms") -> Deployment:
    """The resolved template for one combination (transformed once per session, copied per call)."""
    transformed = json.loads(_transformed(isolation, user_pool, envelope_keys))
    parameters = parameter_values(isolation, user_pool, envelope_keys)
    return Deployment(isolation, user_pool, envelope_keys, resolve(transformed, parameters))


@pytest.fixture(params=COMBINATIONS, ids=[f"{i}{'+userpool' if p else ''}+{k}" for i, p, k in COMBINATIONS])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    """The template as deployed, for every IsolationStrategy and CreateUserPool value, and each
    place of the envelope keys."""
    return deployment_for(*request.param)
