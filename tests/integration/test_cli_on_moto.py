"""The ``tenantscope`` command: in-process on moto, and the installed console script on a moto server."""

from __future__ import annotations

import json
import locale
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tenantscope._config import Settings
from tenantscope._resolve import resolve_sfn_event
from tenantscope.cli import main
from tenantscope.testing import (
    KEY,
    RING,
    RING_DOCUMENT,
    record_from_received,
    reset_process_state,
    ring_spec,
    task_event,
)
from tests.conftest import REGION
from tests.integration.conftest import verified_tenant


@pytest.fixture(autouse=True)
def cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signing keys in the environment; no cached boto3 client from an earlier test."""
    monkeypatch.setenv("TENANTSCOPE_SIGNING_KEYS", ring_spec(RING_DOCUMENT))
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    reset_process_state()


def receive_records(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    messages = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
    ).get("Messages", [])
    return [record_from_received(m, queue_arn=arn) for m in messages]


def verified_execution(sfn: Any, execution_arn: str) -> tuple[str, Any]:
    execution = sfn.describe_execution(executionArn=execution_arn)
    event = task_event(
        json.loads(execution["input"]),
        execution_name=execution["name"],
        state_machine_arn=execution["stateMachineArn"],
    )
    tenant, _, body = resolve_sfn_event(event, RING, Settings.load(environ={}), now=time.time())
    return tenant.tenant_id, json.loads(body)


# --- in process, on mock_aws ---------------------------------------------------------------


@pytest.fixture
def queue_url(sqs: Any) -> str:
    url: str = sqs.create_queue(QueueName="tenantscope-orders")["QueueUrl"]
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_send_prints_the_message_id(capsys: pytest.CaptureFixture[str], sqs: Any, queue_url: str) -> None:
    code, out, err = run(capsys, "send", "--queue-url", queue_url, "--tenant", "acme", "--body", '{"n":1}')

    assert (code, err) == (0, "")
    (record,) = receive_records(sqs, queue_url)
    assert out == record["messageId"] + "\n"
    assert record["body"] == '{"n":1}'
    assert verified_tenant(record) == "acme"


def test_send_reads_the_body_from_a_file(
    capsys: pytest.CaptureFixture[str], sqs: Any, queue_url: str, tmp_path: Path
) -> None:
    body_file = tmp_path / "body.json"
    body_file.write_text('{"order": "o-1", "note": "ünïcode"}\n', encoding="utf-8")

    code, out, err = run(
        capsys, "send", "--queue-url", queue_url, "--tenant", "globex", "--body-file", str(body_file)
    )

    assert (code, err) == (0, "")
    (record,) = receive_records(sqs, queue_url)
    assert out.strip() == record["messageId"]
    assert record["body"] == body_file.read_text(encoding="utf-8")  # sent byte for byte, as signed
    assert verified_tenant(record) == "globex"


def test_send_to_a_fifo_queue(capsys: pytest.CaptureFixture[str], sqs: Any) -> None:
    url = sqs.create_queue(QueueName="tenantscope-orders.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    code, _, err = run(capsys, "send", "--queue-url", url, "--tenant", "acme", "--body", "{}")
    assert (code, err) == (0, "")
    (record,) = receive_records(sqs, url)
    assert record["attributes"]["MessageGroupId"] == "acme"
    assert verified_tenant(record) == "acme"


def test_signing_keys_option_names_a_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, sqs: Any, queue_url: str
) -> None:

    secret = boto3.client("secretsmanager", region_name=sqs.meta.region_name).create_secret(
        Name="tenantscope-cli-ring", SecretString=json.dumps(RING_DOCUMENT)
    )
    monkeypatch.setenv("TENANTSCOPE_SIGNING_KEYS", "")  # restored after the test; main() overwrites it
    argv = ["--signing-keys", f"secretsmanager:{secret['ARN']}", "send", "--queue-url", queue_url]
    code, _, err = run(capsys, *argv, "--tenant", "acme", "--body", "{}")
    assert (code, err) == (0, "")
    (record,) = receive_records(sqs, queue_url)
    assert verified_tenant(record) == "acme"


def test_signing_keys_option_names_a_secret_for_an_execution_too(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    sfn: Any,
    machine_arn: str,
    tmp_path: Path,
) -> None:
    secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="tenantscope-cli-ring", SecretString=json.dumps(RING_DOCUMENT)
    )
    monkeypatch.setenv("TENANTSCOPE_SIGNING_KEYS", "")  # only the option names the ring
    input_file = tmp_path / "input.json"
    input_file.write_text('{"order_id": "o-2"}')
    argv = ["--signing-keys", f"secretsmanager:{secret['ARN']}", "start-execution"]
    argv += ["--state-machine-arn", machine_arn, "--tenant", "acme", "--input-file", str(input_file)]
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    assert verified_execution(sfn, out.strip()) == ("acme", {"order_id": "o-2"})


@pytest.fixture
def ascii_locale() -> Iterator[None]:
    """A locale whose encoding is ASCII, as a shell's may be something other than UTF-8."""
    if sys.flags.utf8_mode:
        pytest.skip("Python's UTF-8 mode is on (PYTHONUTF8=1): files are read as UTF-8 in any locale")
    previous = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        if locale.getencoding().lower().replace("-", "") == "utf8":
            pytest.skip("this system's C locale is UTF-8, so no locale here reads files otherwise")
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)


def test_files_are_read_as_utf8_whatever_the_locale(
    capsys: pytest.CaptureFixture[str],
    ascii_locale: None,
    sqs: Any,
    queue_url: str,
    sfn: Any,
    machine_arn: str,
    tmp_path: Path,
) -> None:
    # GIVEN a body file in UTF-8 with characters outside ASCII, in an ASCII locale
    body = {"customer": "Zoë", "city": "東京"}
    body_file = tmp_path / "body.json"
    body_file.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    # WHEN it is sent, and started as an execution's input
    sent = run(capsys, "send", "--queue-url", queue_url, "--tenant", "acme", "--body-file", str(body_file))
    argv = ["start-execution", "--state-machine-arn", machine_arn, "--tenant", "acme"]
    started = run(capsys, *argv, "--input-file", str(body_file))
    # THEN both carry it as written
    assert sent[0::2] == (0, "") and started[0::2] == (0, "")
    (record,) = receive_records(sqs, queue_url)
    assert json.loads(record["body"]) == body
    assert verified_execution(sfn, started[1].strip()) == ("acme", body)


@pytest.mark.parametrize("name", [None, "acme-order-1"])
def test_start_execution_prints_the_execution_arn(
    capsys: pytest.CaptureFixture[str], sfn: Any, machine_arn: str, tmp_path: Path, name: str | None
) -> None:
    input_file = tmp_path / "input.json"
    input_file.write_text(json.dumps({"order_id": "o-1", "quantity": 3}))
    argv = ["start-execution", "--state-machine-arn", machine_arn, "--tenant", "acme"]
    argv += ["--input-file", str(input_file)] + (["--name", name] if name else [])

    code, out, err = run(capsys, *argv)

    assert (code, err) == (0, "")
    (execution,) = sfn.list_executions(stateMachineArn=machine_arn)["executions"]
    assert out == execution["executionArn"] + "\n"
    assert execution["name"] == name if name else execution["name"].startswith("acme-")
    assert verified_execution(sfn, execution["executionArn"]) == ("acme", {"order_id": "o-1", "quantity": 3})


def failure_cases(tmp: Path, queue_url: str, machine_arn: str) -> dict[str, list[str]]:
    (tmp / "bad.json").write_text("{not json")
    (tmp / "ok.json").write_text("{}")
    send = ["send", "--queue-url", queue_url, "--tenant", "acme"]
    start = ["start-execution", "--state-machine-arn", machine_arn, "--tenant", "acme"]
    missing_queue = queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    missing_machine = machine_arn.replace("tenantscope-orders", "no-such-machine")
    return {
        "bad JSON body": [*send, "--body", "{not json"],
        "bad JSON body file": [*send, "--body-file", str(tmp / "bad.json")],
        "missing body file": [*send, "--body-file", str(tmp / "missing.json")],
        "invalid tenant": ["send", "--queue-url", queue_url, "--tenant", "acme#x", "--body", "{}"],
        "uppercase tenant": ["send", "--queue-url", queue_url, "--tenant", "ACME", "--body", "{}"],
        "missing signing keys": [*send, "--body", "{}"],
        "malformed signing keys": [*send, "--body", "{}"],
        "nonexistent queue": ["send", "--queue-url", missing_queue, "--tenant", "acme", "--body", "{}"],
        "not a queue URL": [
            "send",
            "--queue-url",
            "https://example.com/q",
            "--tenant",
            "acme",
            "--body",
            "{}",
        ],
        "missing input file": [*start, "--input-file", str(tmp / "missing.json")],
        "bad JSON input file": [*start, "--input-file", str(tmp / "bad.json")],
        "invalid tenant for an execution": [
            "start-execution",
            "--state-machine-arn",
            machine_arn,
            "--tenant",
            "acme#x",
            "--input-file",
            str(tmp / "ok.json"),
        ],
        "nonexistent state machine": [
            "start-execution",
            "--state-machine-arn",
            missing_machine,
            "--tenant",
            "acme",
            "--input-file",
            str(tmp / "ok.json"),
        ],
    }


# Each failure, and the type of the error its one line names.
FAILURES = {
    "bad JSON body": "JSONDecodeError",
    "bad JSON body file": "JSONDecodeError",
    "missing body file": "FileNotFoundError",
    "invalid tenant": "InvalidTenantId",
    "uppercase tenant": "InvalidTenantId",
    "missing signing keys": "ConfigurationError",
    "malformed signing keys": "ConfigurationError",
    "nonexistent queue": "QueueDoesNotExist",
    "not a queue URL": "ValueError",
    "missing input file": "FileNotFoundError",
    "bad JSON input file": "JSONDecodeError",
    "invalid tenant for an execution": "InvalidTenantId",
    "nonexistent state machine": "StateMachineDoesNotExist",
}


@pytest.mark.parametrize("case", FAILURES)
def test_failures_exit_non_zero_with_one_line_on_stderr(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sqs: Any,
    queue_url: str,
    sfn: Any,
    machine_arn: str,
    case: str,
) -> None:
    if case == "missing signing keys":
        monkeypatch.delenv("TENANTSCOPE_SIGNING_KEYS")
    if case == "malformed signing keys":
        short = {"active": "k1", "keys": {"k1": KEY[:16].hex()}}  # too short, and a secret-ish value
        monkeypatch.setenv("TENANTSCOPE_SIGNING_KEYS", ring_spec(short))

    code, out, err = run(capsys, *failure_cases(tmp_path, queue_url, machine_arn)[case])

    assert code == 1
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"tenantscope: error: {FAILURES[case]}: ")
    assert KEY.hex()[:16] not in err and RING_DOCUMENT["keys"]["k1"] not in err
    assert receive_records(sqs, queue_url) == []
    assert sfn.list_executions(stateMachineArn=machine_arn)["executions"] == []


# --- the installed console script, against a moto server over loopback ---------------------


def console_script() -> str:
    script = shutil.which("tenantscope", path=str(Path(sys.executable).parent))
    assert script is not None, "the tenantscope console script is not installed in this environment"
    return script


@pytest.fixture
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_console_script_sends_and_starts_through_aws_endpoint_url(moto_server: str, tmp_path: Path) -> None:
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto_server)
    sfn = boto3.client("stepfunctions", region_name=REGION, endpoint_url=moto_server)
    queue_url = sqs.create_queue(QueueName="tenantscope-cli-orders")["QueueUrl"]
    machine_arn = sfn.create_state_machine(
        name="tenantscope-cli-orders",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/tenantscope-sfn",
    )["stateMachineArn"]
    input_file = tmp_path / "input.json"
    input_file.write_text('{"order_id":"o-9"}')
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "TENANTSCOPE_SIGNING_KEYS": ring_spec(RING_DOCUMENT),
    }

    def tenantscope(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [console_script(), *argv], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    sent = tenantscope("send", "--queue-url", queue_url, "--tenant", "acme", "--body", '{"n":1}')
    started = tenantscope(
        "start-execution",
        "--state-machine-arn",
        machine_arn,
        "--tenant",
        "globex",
        "--input-file",
        str(input_file),
    )
    refused = tenantscope("send", "--queue-url", queue_url, "--tenant", "acme#x", "--body", "{}")

    assert (sent.returncode, sent.stderr) == (0, "")
    (record,) = receive_records(sqs, queue_url)
    assert sent.stdout == record["messageId"] + "\n"
    assert verified_tenant(record) == "acme"

    assert (started.returncode, started.stderr) == (0, "")
    execution_arn = started.stdout.strip()
    assert execution_arn.startswith(machine_arn.replace(":stateMachine:", ":execution:") + ":globex-")
    assert verified_execution(sfn, execution_arn) == ("globex", {"order_id": "o-9"})

    assert refused.returncode != 0 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "InvalidTenantId" in refused.stderr
