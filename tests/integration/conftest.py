"""Integration fixtures: an in-process moto account with the pooled table and bucket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sts.models import sts_backends

from tenantscope._credentials import Boto3Sts, CredentialVendor, set_default_vendor
from tenantscope.testing import LocalIssuer
from tests.conftest import BUCKET, REGION, TABLE

if TYPE_CHECKING:
    from tests.integration.tracing_support import Secrets


def assumed_roles() -> list[Any]:
    """Every AssumeRole call moto has served in this account."""
    return list(sts_backends[DEFAULT_ACCOUNT_ID]["global"].assumed_roles)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=TABLE,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield


@pytest.fixture
def sts_vendor(aws: None) -> CredentialVendor:
    """The real STS backend (on moto) as the process-wide vendor."""
    vendor = CredentialVendor(Boto3Sts(REGION))
    set_default_vendor(vendor)
    return vendor


@pytest.fixture
def sqs(aws: None) -> Any:
    return boto3.client("sqs", region_name=REGION)


@pytest.fixture
def sfn(aws: None) -> Any:
    return boto3.client("stepfunctions", region_name=REGION)


@pytest.fixture
def machine_arn(sfn: Any) -> str:
    """A trivial state machine to start executions on (tests here do not need it to run)."""
    arn: str = sfn.create_state_machine(
        name="tenantscope-orders",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/tenantscope-sfn",
    )["stateMachineArn"]
    return arn


@pytest.fixture
def secrets(issuer: LocalIssuer) -> Secrets:
    """The secrets of a test that must never reach a trace (tokens are added as they are minted)."""
    from tests.integration.tracing_support import Secrets  # which reads assumed_roles, above

    return Secrets()
