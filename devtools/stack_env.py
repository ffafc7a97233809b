"""`make env-from-stack STACK=<name>`: events/env.deployed.json from a deployed stack's outputs.

With it, the sample events run against the stack's resources in real AWS, with your credentials:

    sam local invoke ApiFunction -e events/api_put_item_acme.json \
        --env-vars events/env.deployed.json --region <the stack's region>

The file holds the development identity (the samples are signed by the development issuer and key
ring; see devtools/events.py) and the stack's resources, named by its outputs exactly as
template.yaml gives them to the functions. ``make local-aws`` writes env.local.json the same way
from the local stack's outputs.

    python -m devtools.stack_env STACK [--region REGION] [--out events/env.deployed.json]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devtools.events import DEPLOYED_ENV, EVENTS_DIR, identity, write_env_file
from devtools.issuer import dev_issuer

# The outputs the functions' resource variables come from (template.yaml, Outputs).
OUTPUTS = (
    "AppTableName",
    "ReplayTableName",
    "FilesBucketName",
    "TenantRoleArn",
    "OrderQueueUrl",
    "OrderStateMachineArn",
)


def stack_environment(outputs: Mapping[str, str]) -> dict[str, str]:
    """The functions' resource variables, as template.yaml sets them, from the stack's outputs."""
    missing = [name for name in OUTPUTS if name not in outputs]
    if missing:
        raise LookupError(f"the stack has no output {', '.join(missing)}: deploy this template.yaml first")
    return {
        "APP_TABLE_NAME": outputs["AppTableName"],
        "TENANTSCOPE_TABLES": f"{outputs['AppTableName']}=pk",
        "TENANTSCOPE_REPLAY_TABLE": outputs["ReplayTableName"],
        "FILES_BUCKET_NAME": outputs["FilesBucketName"],
        "TENANTSCOPE_BUCKETS": outputs["FilesBucketName"],
        "TENANTSCOPE_ROLE_ARN": outputs["TenantRoleArn"],
        "ORDER_QUEUE_URL": outputs["OrderQueueUrl"],
        "ORDER_STATE_MACHINE_ARN": outputs["OrderStateMachineArn"],
    }


def stack_outputs(stack: str, cloudformation: Any) -> dict[str, str]:
    """{OutputKey: OutputValue} of a deployed stack (CloudFormation DescribeStacks)."""
    (described,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    return {output["OutputKey"]: output["OutputValue"] for output in described.get("Outputs", [])}


def write_deployed_env(stack: str, cloudformation: Any, out: Path) -> dict[str, str]:
    """Write ``out`` for ``stack``; returns its variables. An empty AWS_ENDPOINT_URL keeps a local
    one from the shell (which SAM would pass on) from redirecting the functions."""
    variables = {
        **identity(dev_issuer()),
        **stack_environment(stack_outputs(stack, cloudformation)),
        "AWS_ENDPOINT_URL": "",
    }
    write_env_file(out, variables)
    return variables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write events/env.deployed.json from a deployed stack.")
    parser.add_argument("stack", help="the deployed stack's name")
    parser.add_argument("--region", help="the stack's region (default: your AWS configuration's)")
    parser.add_argument("--out", type=Path, default=EVENTS_DIR / DEPLOYED_ENV)
    args = parser.parse_args(argv)

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        cloudformation = boto3.client("cloudformation", region_name=args.region)
        write_deployed_env(args.stack, cloudformation, args.out)
    except (BotoCoreError, ClientError, LookupError) as error:
        print(f"env-from-stack: {args.stack}: {error}", file=sys.stderr)
        return 1
    region = cloudformation.meta.region_name
    print(f"wrote {args.out} for stack {args.stack} in {region}; run the samples with --region {region}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
