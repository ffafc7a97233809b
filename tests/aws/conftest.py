"""Fixtures for the suite that runs against a real deployment of template.yaml.

It runs only when both are given, and is skipped otherwise, with a reason that says what is missing:

- ``TENANTSCOPE_STACK_NAME``: the name of a deployed stack (``sam deploy``), e.g. ``tenantscope-dev``;
- real AWS credentials for the stack's account, in the usual places (``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``
  and friends, SSO, an instance or container role), and the stack's region (``AWS_REGION``, or the profile's).

The caller reads the stack with ``cloudformation:DescribeStacks`` (and, unless ``TENANTSCOPE_ISOLATION`` is
set, ``cloudformation:ListStackResources`` and ``lambda:GetFunctionConfiguration`` to read the deployed
isolation strategy), then assumes the stack's tenant role. The tenant role's trust policy admits ONLY
this stack's function roles, so the identity that assumes it must be one of them, or a role you add to
that trust policy for testing: set ``TENANTSCOPE_TEST_ROLE_ARN`` to such a role and the suite first
assumes it with the caller's credentials. Nothing is created but a few items under fresh tenant ids,
which are deleted again.

This conftest overrides the root ``tenantscope_env`` fixture: that one replaces the AWS credentials
in the environment with fakes for the unit tests, and this suite needs the caller's own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import boto3
import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tenantscope.testing import reset_process_state

STACK_ENV = "TENANTSCOPE_STACK_NAME"
ISOLATION_ENV = "TENANTSCOPE_ISOLATION"
TEST_ROLE_ENV = "TENANTSCOPE_TEST_ROLE_ARN"

HOW_TO_RUN = (
    f"to run it, set {STACK_ENV}=<a deployed tenantscope stack> and provide real AWS credentials and "
    f"AWS_REGION for that stack's account; the tenant role trusts only the stack's function roles, so run "
    f"as one of them or add a test role to its trust policy and set {TEST_ROLE_ENV}=<that role's ARN>"
)


@pytest.fixture(autouse=True)
def tenantscope_env() -> Iterator[None]:
    """Overrides the root fixture: keep the caller's real AWS environment (no fake credentials)."""
    reset_process_state()
    yield
    reset_process_state()


@dataclass(frozen=True)
class Target:
    """The deployed stack and a boto3 session of the caller."""

    stack_name: str
    region: str
    session: Any  # boto3.Session with resolved credentials
    caller_arn: str

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name=self.region)


def _skip(reason: str) -> NoReturn:
    pytest.skip(f"real-AWS suite skipped: {reason}; {HOW_TO_RUN}")


@pytest.fixture(scope="session")
def aws_target() -> Target:
    """The stack named by TENANTSCOPE_STACK_NAME with the caller's credentials, or skip saying why."""
    stack_name = os.environ.get(STACK_ENV, "").strip()
    if not stack_name:
        _skip(f"{STACK_ENV} is not set")
    endpoints = sorted(name for name in os.environ if name.startswith("AWS_ENDPOINT_URL"))
    if endpoints:
        _skip(f"{', '.join(endpoints)} is set, so AWS calls would not reach real AWS")
    try:
        session = boto3.Session()
        credentials = session.get_credentials()
    except BotoCoreError as error:
        _skip(f"the AWS credentials could not be loaded ({type(error).__name__})")
    if credentials is None:
        _skip("no AWS credentials were found")
    # botocore reads AWS_DEFAULT_REGION and the profile; Lambda, CodeBuild and the docs use AWS_REGION.
    region = session.region_name or os.environ.get("AWS_REGION", "").strip()
    if not region:
        _skip("no AWS region is configured (set AWS_REGION to the stack's region)")
    try:
        identity = session.client("sts", region_name=region).get_caller_identity()
    except (BotoCoreError, ClientError) as error:
        code = error.response["Error"]["Code"] if isinstance(error, ClientError) else type(error).__name__
        _skip(f"STS did not accept the AWS credentials ({code})")
    return Target(stack_name, region, session, identity["Arn"])
