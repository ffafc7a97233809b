"""The embedded local AWS reads template.yaml and relies on two moto internals: guard them."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.dynamodb.models import dynamodb_backends

from devtools.cfn import ACCOUNT, REGION, Stack
from devtools.issuer import DEV_AUDIENCE, DEV_ISSUER
from devtools.local_aws import LOCAL_PARAMETERS, LocalAws, load_template, local_aws
from tenantscope._keyring import key_ring_from_spec

ROOT = Path(__file__).resolve().parents[2]


def test_moto_lambda_hook_keeps_the_signature_local_aws_replaces() -> None:
    # local_aws replaces this internal method to run the real handlers for Step Functions tasks.
    parameters = list(inspect.signature(LambdaSimpleBackend.invoke).parameters)
    assert parameters == ["self", "function_name", "qualifier", "body", "headers", "response_headers"]
    pinned = re.search(r"^moto==(\S+)$", (ROOT / "requirements-dev.txt").read_text(), re.MULTILINE)
    assert pinned, "moto must stay pinned: local_aws depends on its internals"


def test_a_transaction_is_all_or_nothing_without_a_copy_of_its_table() -> None:
    with local_aws() as aws:
        name = aws.physical["AppTable"]["Ref"]
        dynamodb = boto3.client("dynamodb")
        dynamodb.put_item(TableName=name, Item={"pk": {"S": "A"}, "sk": {"S": "1"}, "n": {"N": "5"}})
        table = dynamodb_backends[ACCOUNT][REGION].tables[name]

        def transact(n: int, *, condition: str) -> None:
            dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": name,
                            "Key": {"pk": {"S": "A"}, "sk": {"S": "1"}},
                            "UpdateExpression": "SET n = n - :n",
                            "ExpressionAttributeValues": {":n": {"N": str(n)}},
                        }
                    },
                    {"Put": {"TableName": name, "Item": {"pk": {"S": "B"}, "sk": {"S": str(n)}}}},
                    {
                        "ConditionCheck": {
                            "TableName": name,
                            "Key": {"pk": {"S": "C"}, "sk": {"S": "1"}},
                            "ConditionExpression": condition,
                        }
                    },
                ]
            )

        def items() -> list[dict[str, Any]]:
            return sorted(
                dynamodb.scan(TableName=name)["Items"], key=lambda item: (item["pk"]["S"], item["sk"]["S"])
            )

        # WHEN a transaction's last item fails its condition after the others were applied
        with pytest.raises(ClientError, match="TransactionCanceled"):
            transact(2, condition="attribute_exists(pk)")
        # THEN nothing it wrote is left, and the table is the same object (moto copied none)
        assert items() == [{"pk": {"S": "A"}, "sk": {"S": "1"}, "n": {"N": "5"}}]
        assert dynamodb_backends[ACCOUNT][REGION].tables[name] is table
        # and a transaction that passes writes every item
        transact(2, condition="attribute_not_exists(pk)")
        assert items() == [
            {"pk": {"S": "A"}, "sk": {"S": "1"}, "n": {"N": "3"}},
            {"pk": {"S": "B"}, "sk": {"S": "2"}},
        ]


@pytest.mark.parametrize("envelope_keys", ["kms", "secretsmanager"])
def test_every_template_resource_is_created_or_knowingly_skipped(envelope_keys: str) -> None:
    resources = load_template()["Resources"]
    with local_aws({**LOCAL_PARAMETERS, "EnvelopeKeys": envelope_keys}) as aws:
        created = {name for name in aws.physical if name not in aws.skipped}
        assert created | set(aws.skipped) >= set(resources)
        # What runs locally: data, files, queues, keys, the tenant role, functions and the state machine.
        for name, spec in resources.items():
            if spec["Type"] in (
                "AWS::DynamoDB::Table",
                "AWS::S3::Bucket",
                "AWS::SQS::Queue",
                "AWS::Serverless::Function",
                "AWS::Serverless::StateMachine",
                "AWS::SecretsManager::Secret",
                "AWS::KMS::Key",
            ) and aws.conditions.get(spec.get("Condition", ""), True):
                assert name in created, name
        used, unused = (
            ("SigningKey", "SigningKeys") if envelope_keys == "kms" else ("SigningKeys", "SigningKey")
        )
        assert set(aws.skipped) <= {
            "TenantScopeLayer",
            "HttpApi",
            "OrderStateMachineLogs",
            "OrderQueuePolicy",  # moto enforces no resource policy: tested as data in tests/template
            "FilesBucketPolicy",
            "UserPool",
            "UserPoolClient",
            "TenantSessionPolicyBoundary",
            "OrderWorkerBoundary",  # moto enforces no permissions boundary: tested as data in tests/template
            unused,
        }
        # AND the functions find their keys where the template put them
        keys = aws.environment()["TENANTSCOPE_SIGNING_KEYS"]
        assert keys == f"{envelope_keys}:{aws.physical[used]['Arn']}"
        ring = key_ring_from_spec(keys, region="us-east-1")
        assert ring.verify(ring.active_key_id(), b"m", ring.sign(ring.active_key_id(), b"m"))


def test_routes_and_event_sources_come_from_the_template() -> None:
    aws = LocalAws(LOCAL_PARAMETERS)
    routes = {
        (event["Properties"]["Method"], event["Properties"]["Path"])
        for spec in aws.template["Resources"].values()
        for event in spec.get("Properties", {}).get("Events", {}).values()
        if event["Type"] == "HttpApi"
    }
    assert ("POST", "/orders") in routes and ("GET", "/items/{id}") in routes
    with local_aws() as local:
        served = {route for f in local.functions.values() for route in f.routes}
        assert served == routes
        assert local.functions["OrderWorkerFunction"].queue_arn == local.physical["OrderQueue"]["Arn"]


def test_the_local_stack_trusts_the_development_issuer_given_explicitly() -> None:
    # The template has no usable issuer default; its Rules refuse a stack without one, locally too.
    with pytest.raises(ValueError, match="JwtIssuer is required"):
        LocalAws({})
    with pytest.raises(ValueError, match="JwtAudience is required"):
        LocalAws({"JwtIssuer": DEV_ISSUER})
    assert not LocalAws({"CreateUserPool": "true"}).parameters["JwtIssuer"]
    with local_aws() as aws:
        assert aws.parameters["JwtIssuer"] == DEV_ISSUER
        environment = aws.functions["ApiFunction"].environment
        assert environment["TENANTSCOPE_JWT_ISSUER"] == DEV_ISSUER
        assert environment["TENANTSCOPE_JWT_AUDIENCE"] == DEV_AUDIENCE


def test_an_intrinsic_the_reader_does_not_model_is_an_error_not_a_value() -> None:
    stack = Stack(LOCAL_PARAMETERS)
    with pytest.raises(NotImplementedError, match="Fn::Select"):
        stack.resolve({"Fn::Select": [0, {"Fn::GetAZs": ""}]})
    assert stack.resolve({"Fn::Split": [",", {"Fn::Join": ["-", ["a", "b,c"]]}]}) == ["a-b", "c"]
    assert stack.resolve({"Fn::If": ["UseKmsEnvelopeKeys", "kms", "secretsmanager"]}) == "kms"


def test_the_files_bucket_has_the_templates_settings() -> None:
    settings = load_template()["Resources"]["FilesBucket"]["Properties"]
    with local_aws() as aws:
        bucket = aws.physical["FilesBucket"]["Ref"]
        environment = aws.environment()
        assert environment["FILES_BUCKET_NAME"] == environment["TENANTSCOPE_BUCKETS"] == bucket
        s3 = boto3.client("s3")
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        blocked = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert blocked == settings["PublicAccessBlockConfiguration"]
        ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]
        assert ownership == settings["OwnershipControls"]
        (encryption,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        assert encryption["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
        (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        (expected,) = settings["LifecycleConfiguration"]["Rules"]
        assert rule["NoncurrentVersionExpiration"] == expected["NoncurrentVersionExpiration"]
        assert rule["AbortIncompleteMultipartUpload"] == expected["AbortIncompleteMultipartUpload"]
        assert rule["Expiration"] == {"ExpiredObjectDeleteMarker": True}


def test_a_bucket_setting_the_reader_does_not_model_is_an_error_not_dropped() -> None:
    cors = {"CorsRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["https://app.example.com"]}]}
    bucket = {"Type": "AWS::S3::Bucket", "Properties": {"CorsConfiguration": cors}}
    with local_aws(), pytest.raises(NotImplementedError, match="CorsConfiguration"):
        LocalAws(LOCAL_PARAMETERS, {"Resources": {"Files": bucket}}).create()
