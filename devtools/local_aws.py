"""The embedded local AWS: the resources template.yaml declares, created in moto, in-process.

moto's CloudFormation ignores the SAM transform, so this module reads template.yaml itself
and creates what the application needs to run: tables, queues (with their redrive policy), the
files bucket (with its settings), the envelope signing key (a KMS HMAC key, or the secret
generated as the template asks), the tenant role and its policies, the state machine (its
definition file with the template's substitutions), and a registry of the functions with their
handlers, environment, HTTP routes and SQS event sources.

What moto cannot do is done here, the way Lambda would:
- Step Functions tasks reach the real Python handlers through moto's Lambda backend
  (``LambdaSimpleBackend.invoke``, an internal hook, pinned with moto's version and guarded
  by a test).
- moto's own SQS-to-Lambda mapping sends empty message attributes, so :meth:`poll_queue`
  receives messages and builds real-shaped SQS events, reports batch item failures, and
  deletes only the records that succeeded.
- moto backs up every table a DynamoDB transaction names, a deep copy of the whole table per
  item of the transaction, to roll it back: a pooled table of a few thousand items makes each
  transaction take a second. :func:`item_level_transactions` backs up only the items the
  transaction names (an internal hook too, guarded by tests/e2e/test_local_aws.py).

Resources that have no local meaning (the layer, the HTTP API, log groups, the optional
Cognito pool, resource policies, which moto does not enforce) are listed in :attr:`LocalAws.skipped`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import string
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from devtools.cfn import ACCOUNT, REGION, ROOT, STACK, TEMPLATE, Stack, load_template, references
from devtools.issuer import DEV_AUDIENCE, DEV_ISSUER
from devtools.local_lambda import LocalFunction, LocalLambda

__all__ = [
    "LOCAL_PARAMETERS",
    "REGION",
    "ROOT",
    "TEMPLATE",
    "LocalAws",
    "load_template",
    "local_aws",
    "references",
    "use_local_credentials",
]

# What local_aws() deploys with when given no parameters. The template's JwtIssuer and JwtAudience
# have no default (a stack must not trust an issuer its deployer does not control) and its Rules
# require them without the user pool, which has no local meaning; locally the trusted issuer is the
# development one (devtools.issuer), whose tokens the demo and the tests mint.
LOCAL_PARAMETERS: Mapping[str, str] = {"JwtIssuer": DEV_ISSUER, "JwtAudience": DEV_AUDIENCE}


class LocalAws(LocalLambda, Stack):
    """Creates the template's resources in the current moto account and runs its functions."""

    def __init__(self, parameters: Mapping[str, str] | None = None, template: dict[str, Any] | None = None):
        Stack.__init__(self, parameters, template)
        LocalLambda.__init__(self)
        self.skipped: list[str] = []

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
            "AWS::S3::Bucket": self._bucket,
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

    def _bucket(self, name: str, properties: dict[str, Any]) -> None:
        """The bucket with each setting the template gives it, through the S3 API call that makes
        it (whose shape differs from CloudFormation's here and there); a setting this does not
        know is an error, not a bucket created without it."""
        props = self.resolve(properties)
        bucket = f"{STACK}-{name}".lower()  # bucket names are lower case, as CloudFormation makes them
        s3 = self._client("s3")
        s3.create_bucket(Bucket=bucket)
        settings: dict[str, Any] = {
            "PublicAccessBlockConfiguration": lambda value: s3.put_public_access_block(
                Bucket=bucket, PublicAccessBlockConfiguration=value
            ),
            "OwnershipControls": lambda value: s3.put_bucket_ownership_controls(
                Bucket=bucket, OwnershipControls=value
            ),
            "BucketEncryption": lambda value: s3.put_bucket_encryption(
                Bucket=bucket,
                ServerSideEncryptionConfiguration={
                    "Rules": [
                        {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
                        for rule in value["ServerSideEncryptionConfiguration"]
                    ]
                },
            ),
            "VersioningConfiguration": lambda value: s3.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration=value
            ),
            "LifecycleConfiguration": lambda value: s3.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration={"Rules": [_lifecycle_rule(r) for r in value["Rules"]]}
            ),
        }
        unknown = sorted(set(props) - set(settings))
        if unknown:
            raise NotImplementedError(f"{name}: {', '.join(unknown)} not modelled by devtools.local_aws")
        for setting, value in props.items():
            settings[setting](value)
        self.physical[name] = {"Ref": bucket, "Arn": f"arn:aws:s3:::{bucket}"}

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


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A lifecycle rule of the template (covering every key) as PutBucketLifecycleConfiguration takes it."""
    translated: dict[str, Any] = {"ID": rule["Id"], "Status": rule["Status"], "Filter": {}}
    for key, value in rule.items():
        if key == "ExpiredObjectDeleteMarker":
            translated["Expiration"] = {"ExpiredObjectDeleteMarker": value}
        elif key in ("NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload"):
            translated[key] = value
        elif key not in ("Id", "Status"):
            raise NotImplementedError(f"lifecycle rule {key} not modelled by devtools.local_aws")
    return translated


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
def item_level_transactions() -> Iterator[None]:
    """moto's TransactWriteItems, rolled back from copies of the items it names, not of its tables."""
    import moto.dynamodb.models as dynamodb_models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    def deepcopy(value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    # ``copy`` as moto.dynamodb.models sees it: tables are not copied (the one deep copy of a table
    # there is a transaction's backup), anything else is.
    no_table_copies = SimpleNamespace(copy=copy.copy, deepcopy=deepcopy)
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = []
        for entry in transact_items:
            operation = next(iter(entry.values())) if len(entry) == 1 else None
            if not isinstance(operation, dict) or operation.get("TableName") not in self.tables:
                continue  # moto refuses it before it writes anything
            table_name = operation["TableName"]
            table = self.tables[table_name]
            names = [name for name in (table.hash_key_attr, table.range_key_attr) if name]
            key = operation.get("Key") or {name: operation.get("Item", {}).get(name) for name in names}
            try:
                current = self.get_item(table_name, key)
            except Exception:  # noqa: S112 - a key moto refuses: it writes nothing for it
                continue
            saved.append(
                (table_name, key, copy.deepcopy(current.to_json()["Attributes"]) if current else None)
            )
        try:
            original(self, transact_items)
        except BaseException:
            # moto's rollback put back the very table it did not copy: put back the items it wrote.
            for table_name, key, attributes in saved:
                if attributes is None:
                    self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, attributes)
            raise

    dynamodb_models.copy = no_table_copies  # type: ignore[assignment]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    try:
        yield
    finally:
        DynamoDBBackend.transact_write_items = original  # type: ignore[method-assign]
        dynamodb_models.copy = copy


@contextmanager
def local_aws(
    parameters: Mapping[str, str] | None = None,
    environment: Mapping[str, str] | None = None,
    *,
    execute_state_machines: bool = True,
) -> Iterator[LocalAws]:
    """moto with Step Functions executing, the template's resources, and Lambda dispatch.

    ``parameters`` are the stack's parameter values (default :data:`LOCAL_PARAMETERS`: the
    development issuer); ``environment`` overrides function environment variables (e.g. a local
    JWKS URL). With ``execute_state_machines=False`` moto records executions but runs none: the
    caller runs them (``make soak`` does, on its simulated clock, with devtools.asl).
    """
    from moto import mock_aws
    from moto.awslambda_simple.models import LambdaSimpleBackend

    saved_env = dict(os.environ)  # all put back at the end, the local credentials too
    use_local_credentials()
    functions_dir = str(ROOT / "functions")
    if functions_dir not in sys.path:
        sys.path.insert(0, functions_dir)

    config = {
        "stepfunctions": {"execute_state_machine": execute_state_machines},
        "lambda": {"use_docker": False},
    }
    holder: dict[str, LocalAws] = {}
    original_invoke = LambdaSimpleBackend.invoke

    def invoke(
        self: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any
    ) -> bytes:
        payload, failed = holder["aws"].dispatch_lambda(function_name, body)
        if failed:
            response_headers["x-amz-function-error"] = "Unhandled"
        return payload

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    try:
        with mock_aws(config=config), item_level_transactions():  # type: ignore[arg-type]
            aws = LocalAws(LOCAL_PARAMETERS if parameters is None else parameters).create()
            holder["aws"] = aws
            os.environ.update(aws.environment())
            os.environ.update(environment or {})
            try:
                yield aws
            finally:
                if execute_state_machines:
                    aws.wait_for_executions()
    finally:
        LambdaSimpleBackend.invoke = original_invoke  # type: ignore[method-assign]
        os.environ.clear()
        os.environ.update(saved_env)
