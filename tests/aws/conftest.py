"""Fixtures for the suite that runs against a real deployment of template.yaml.

It is skipped, saying how to run it, unless ``TENANTSCOPE_STACK_NAME`` is set; once it is, the suite runs
against that stack or fails saying what is missing (credentials, a region, an endpoint that is not AWS):

- ``TENANTSCOPE_STACK_NAME``: the name of a deployed stack (``sam deploy``), e.g. ``tenantscope-dev``;
- real AWS credentials for the stack's account, in the usual places (``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``
  and friends, SSO, an instance or container role), and the stack's region (``AWS_REGION``, or the profile's).

The caller reads the stack with ``cloudformation:DescribeStacks`` (and, unless ``TENANTSCOPE_ISOLATION`` is
set, ``cloudformation:ListStackResources`` and ``lambda:GetFunctionConfiguration`` to read the deployed
isolation strategy), then assumes the stack's tenant role. The tenant role's trust policy admits only
this stack's function roles and the roles its ``IsolationTestRoleArns`` parameter names (a development
stack's only: a prod stack refuses any). So:

1. Create the test role first (IAM refuses a trust policy naming a role that does not exist, and a
   role deleted and created again is no longer the one trusted: deploy again). Its own policy needs
   ``sts:AssumeRole``, ``sts:TagSession`` and ``sts:SetSourceIdentity`` on the tenant role; its trust
   policy must admit your credentials. Your session must carry no source identity of its own (it
   would persist into the tenant sessions, which set the tenant as theirs).
2. Deploy with it, giving samconfig.toml's parameters again (``--parameter-overrides`` on the
   command line replaces samconfig's whole list: a new stack would get the template's defaults,
   ``CreateUserPool=false`` among them, which the Rules refuse without an issuer)::

       make build
       .venv/bin/sam deploy --config-env default --parameter-overrides Stage=dev \
           IsolationStrategy=session-tags CreateUserPool=true IsolationTestRoleArns=<the test role's ARN>

3. Run::

       TENANTSCOPE_STACK_NAME=tenantscope-dev TENANTSCOPE_TEST_ROLE_ARN=<the test role's ARN> \
       AWS_REGION=<the stack's region> .venv/bin/pytest -p no:randomly tests/aws

   Leave ``TENANTSCOPE_TEST_ROLE_ARN`` unset when your credentials already are a session of the test
   role. IAM is eventually consistent: right after a deploy the setup waits up to
   ``TENANTSCOPE_IAM_PROPAGATION_SECONDS`` (120) for the trust and role policies to take effect.

Nothing is created but a few items and objects under fresh
tenant ids, which are deleted again (an object's noncurrent version and delete marker stay until the
bucket's lifecycle rule expires them, 7 days).

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
    f"to run it, deploy a development stack with IsolationTestRoleArns=<a test role's ARN> (with "
    f"samconfig's parameters too: see tests/aws/conftest.py), set "
    f"{STACK_ENV}=<that stack> and {TEST_ROLE_ENV}=<that role's ARN>, and provide real AWS credentials "
    f"that may assume the role, and AWS_REGION, for that stack's account"
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


def _cannot_run(reason: str) -> NoReturn:
    """Asked to run (a stack is named) but unable to: a failure, never a skip that reads as a pass."""
    pytest.fail(f"real-AWS suite cannot run: {reason}; {HOW_TO_RUN}", pytrace=False)


@pytest.fixture(scope="session")
def aws_target() -> Target:
    """The stack named by TENANTSCOPE_STACK_NAME with the caller's credentials. Without a stack
    name the suite is skipped; with one, whatever keeps it from running fails it, saying why."""
    stack_name = os.environ.get(STACK_ENV, "").strip()
    if not stack_name:
        pytest.skip(f"real-AWS suite skipped: {STACK_ENV} is not set; {HOW_TO_RUN}")
    endpoints = sorted(name for name in os.environ if name.startswith("AWS_ENDPOINT_URL"))
    if endpoints:
        _cannot_run(f"{', '.join(endpoints)} is set, so AWS calls would not reach real AWS")
    try:
        session = boto3.Session()
        credentials = session.get_credentials()
    except BotoCoreError as error:
        _cannot_run(f"the AWS credentials could not be loaded ({type(error).__name__})")
    if credentials is None:
        _cannot_run("no AWS credentials were found")
    # botocore reads AWS_DEFAULT_REGION and the profile only; the instructions say AWS_REGION, which
    # therefore comes first.
    region = os.environ.get("AWS_REGION", "").strip() or session.region_name
    if not region:
        _cannot_run("no AWS region is configured (set AWS_REGION to the stack's region)")
    try:
        identity = session.client("sts", region_name=region).get_caller_identity()
    except (BotoCoreError, ClientError) as error:
        code = error.response["Error"]["Code"] if isinstance(error, ClientError) else type(error).__name__
        _cannot_run(f"STS did not accept the AWS credentials ({code})")
    return Target(stack_name, region, session, identity["Arn"])
