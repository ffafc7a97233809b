"""`make env-from-stack STACK=<name>`: env.deployed.json from a stack's outputs (DescribeStacks on moto,
with a stand-in stack whose outputs are the ones template.yaml declares)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devtools import stack_env
from devtools.events import identity
from devtools.issuer import dev_issuer
from devtools.sam import read_env_vars, resolved_environment
from tests.conftest import REGION

OUTPUTS = {
    "AppTableName": "tenantscope-dev-AppTable-1A2B3C",
    "ReplayTableName": "tenantscope-dev-ReplayTable-4D5E6F",
    "FilesBucketName": "tenantscope-dev-filesbucket-1a2b3c4d5e6f",
    "TenantRoleArn": "arn:aws:iam::123456789012:role/tenantscope-dev-tenant",
    "OrderQueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/tenantscope-dev-OrderQueue-7G8H",
    "OrderStateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:OrderStateMachine-9I0J",
    "ApiUrl": "https://abc123.execute-api.us-east-1.amazonaws.com/dev",
}


def stand_in_stack(cloudformation: Any, name: str, outputs: dict[str, str]) -> None:
    """A stack with one queue and the given outputs, as literal values."""
    template = {
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template))


@pytest.fixture
def cloudformation() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("cloudformation", region_name=REGION)


def test_the_env_file_has_the_identity_and_the_stacks_resources(
    cloudformation: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stand_in_stack(cloudformation, "tenantscope-dev", OUTPUTS)
    out = tmp_path / "env.deployed.json"
    assert stack_env.main(["tenantscope-dev", "--out", str(out)]) == 0
    assert capsys.readouterr().out == (
        f"wrote {out} for stack tenantscope-dev in {REGION}; run the samples with --region {REGION}\n"
    )
    variables = json.loads(out.read_text())["Parameters"]
    assert variables == {
        **identity(dev_issuer()),
        "APP_TABLE_NAME": OUTPUTS["AppTableName"],
        "TENANTSCOPE_TABLES": f"{OUTPUTS['AppTableName']}=pk",
        "TENANTSCOPE_REPLAY_TABLE": OUTPUTS["ReplayTableName"],
        "FILES_BUCKET_NAME": OUTPUTS["FilesBucketName"],
        "TENANTSCOPE_BUCKETS": OUTPUTS["FilesBucketName"],
        "TENANTSCOPE_ROLE_ARN": OUTPUTS["TenantRoleArn"],
        "ORDER_QUEUE_URL": OUTPUTS["OrderQueueUrl"],
        "ORDER_STATE_MACHINE_ARN": OUTPUTS["OrderStateMachineArn"],
        "AWS_ENDPOINT_URL": "",
    }
    # What sam local invoke then gives the functions: AWS's own endpoints, even from a shell that
    # points elsewhere, and the stack's resources.
    shell = {
        "AWS_ACCESS_KEY_ID": "mine",
        "AWS_SECRET_ACCESS_KEY": "mine",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5089",
    }
    api = resolved_environment("ApiFunction", read_env_vars(out), shell=shell)
    assert api["AWS_ENDPOINT_URL"] == ""
    assert api["ORDER_QUEUE_URL"] == OUTPUTS["OrderQueueUrl"]
    worker = resolved_environment("OrderWorkerFunction", read_env_vars(out), shell=shell)
    assert worker["ORDER_STATE_MACHINE_ARN"] == OUTPUTS["OrderStateMachineArn"]
    assert worker["TENANTSCOPE_REPLAY_TABLE"] == OUTPUTS["ReplayTableName"]


def test_a_stack_without_the_outputs_is_a_one_line_error(
    cloudformation: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    older = {k: v for k, v in OUTPUTS.items() if k != "ReplayTableName"}
    stand_in_stack(cloudformation, "tenantscope-old", older)
    out = tmp_path / "env.deployed.json"
    assert stack_env.main(["tenantscope-old", "--out", str(out)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "env-from-stack: tenantscope-old: the stack has no output ReplayTableName: "
        "deploy this template.yaml first"
    ]
    assert not out.exists()


def test_an_unknown_stack_is_a_one_line_error(
    cloudformation: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack_env.main(["no-such-stack", "--out", str(tmp_path / "env.deployed.json")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("env-from-stack: no-such-stack: An error occurred (ValidationError)")
