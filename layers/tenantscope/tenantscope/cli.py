"""``tenantscope``: send tenant-sealed messages and start sealed executions from a shell.

Works against real AWS or any endpoint given by ``AWS_ENDPOINT_URL``. The signing keys come
from ``TENANTSCOPE_SIGNING_KEYS`` (or ``--signing-keys``). Prints the message id or the
execution ARN; on failure prints one line to stderr and exits with 1 (2 for a usage error).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tenantscope",
        description="Send tenant-sealed messages and start sealed executions from a shell.",
        epilog="Prints the message id or the execution ARN. On failure, prints one line to stderr and "
        "exits with 1 (2 for a usage error).",
    )
    parser.add_argument(
        "--signing-keys",
        help="where the key ring is: secretsmanager:<id> or kms:<key> (default: $TENANTSCOPE_SIGNING_KEYS)",
    )
    # Named in the usage error of a missing command as in the usage line, not by its dest.
    commands = parser.add_subparsers(dest="command", required=True, metavar="{send,start-execution}")

    send = commands.add_parser("send", help="seal and send one SQS message")
    send.add_argument("--queue-url", required=True, help="the queue's URL; the message is sealed for it")
    send.add_argument("--tenant", required=True, help="the tenant id the message is sealed for")
    body = send.add_mutually_exclusive_group(required=True)
    body.add_argument("--body", help="the message body (JSON text)")
    body.add_argument("--body-file", type=Path, help="a file holding the message body (UTF-8)")

    start = commands.add_parser("start-execution", help="seal an input and start one execution")
    start.add_argument(
        "--state-machine-arn", required=True, help="the state machine's ARN; the input is sealed for it"
    )
    start.add_argument("--tenant", required=True, help="the tenant id the input is sealed for")
    start.add_argument(
        "--input-file", type=Path, required=True, help="a JSON file (UTF-8): the execution payload"
    )
    start.add_argument("--name", help="execution name (default: <tenant>-<uuid>)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # A command line is visible in the process list and shell history: it may say where the keys
    # are, never carry them.
    # Stripped as the setting is when it is read: " inline:..." is an inline ring too.
    if args.signing_keys and args.signing_keys.strip().startswith("inline:"):
        parser.error("--signing-keys cannot carry keys; set TENANTSCOPE_SIGNING_KEYS=inline:... instead")
    try:
        from ._config import Settings
        from ._producer import send_message, start_execution

        settings = Settings.load(signing_keys=args.signing_keys)
        if args.command == "send":
            text = args.body if args.body is not None else args.body_file.read_text(encoding="utf-8")
            json.loads(text)  # bodies are JSON documents: refuse a typo before sealing it
            print(send_message(args.queue_url, text, tenant_id=args.tenant, settings=settings)["MessageId"])
        else:
            payload = json.loads(args.input_file.read_text(encoding="utf-8"))
            response = start_execution(
                args.state_machine_arn, payload, tenant_id=args.tenant, name=args.name, settings=settings
            )
            print(response["executionArn"])
    except Exception as error:  # one line, no traceback: this is a command-line tool
        lines = str(error).splitlines()
        detail = f": {lines[0]}" if lines else ""  # an error without a message is named by its type
        print(f"tenantscope: error: {type(error).__name__}{detail}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
