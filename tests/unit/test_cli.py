"""The ``tenantscope`` command's surface, with no AWS: its help, its usage errors, and how it
names a failure. What it sends and starts is tested on moto in tests/integration/test_cli_on_moto.py."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tenantscope import _producer
from tenantscope.cli import main
from tenantscope.testing import RING_DOCUMENT, ring_spec

ROOT = Path(__file__).resolve().parents[2]
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:orders"


def exit_code_and_output(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[object, str, str]:
    """The exit code, stdout and stderr of a command line argparse ends (help, a usage error)."""
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def documented_help() -> dict[str, str]:
    """Each ``$ tenantscope ... --help`` block of docs/envelope.md, by its command line."""
    text = (ROOT / "docs" / "envelope.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```text\n\$ (tenantscope[^\n]*--help)\n(.*?)```", text, flags=re.DOTALL)
    return dict(blocks)


@pytest.mark.parametrize("command", [[], ["send"], ["start-execution"]], ids=["tenantscope", "send", "start"])
def test_the_documented_help_is_the_commands_own(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps to the terminal's width
    code, printed, _ = exit_code_and_output(capsys, *command, "--help")
    assert code == 0
    documented = documented_help()[" ".join(["tenantscope", *command, "--help"])]
    documented_usage, _, documented_rest = documented.partition("\n\n")
    printed_usage, _, printed_rest = printed.partition("\n\n")
    # python3.13 wraps a usage line differently from 3.11 and 3.12: its words are the same, and the
    # rest is the same to the character
    assert documented_usage.split() == printed_usage.split()
    assert documented_rest == printed_rest
    if sys.version_info < (3, 13):
        assert documented_usage == printed_usage


USAGE_ERRORS = {
    "no command": ([], "the following arguments are required: {send,start-execution}"),
    "send without a queue": (
        ["send", "--tenant", "acme", "--body", "{}"],
        "the following arguments are required: --queue-url",
    ),
    "send without a tenant": (
        ["send", "--queue-url", QUEUE_URL, "--body", "{}"],
        "the following arguments are required: --tenant",
    ),
    "send without a body": (
        ["send", "--queue-url", QUEUE_URL, "--tenant", "acme"],
        "one of the arguments --body --body-file is required",
    ),
    "send with two bodies": (
        ["send", "--queue-url", QUEUE_URL, "--tenant", "acme", "--body", "{}", "--body-file", "b.json"],
        "argument --body-file: not allowed with argument --body",
    ),
    "start without a state machine": (
        ["start-execution", "--tenant", "acme", "--input-file", "in.json"],
        "the following arguments are required: --state-machine-arn",
    ),
    "start without a tenant": (
        ["start-execution", "--state-machine-arn", MACHINE_ARN, "--input-file", "in.json"],
        "the following arguments are required: --tenant",
    ),
    "start without an input": (
        ["start-execution", "--state-machine-arn", MACHINE_ARN, "--tenant", "acme"],
        "the following arguments are required: --input-file",
    ),
}


@pytest.mark.parametrize("case", USAGE_ERRORS)
def test_a_missing_or_conflicting_argument_is_a_usage_error_naming_it(
    capsys: pytest.CaptureFixture[str], case: str
) -> None:
    argv, message = USAGE_ERRORS[case]
    code, _, err = exit_code_and_output(capsys, *argv)
    assert code == 2
    assert err.startswith("usage: tenantscope ")
    assert err.endswith(f"tenantscope{' ' + argv[0] if argv else ''}: error: {message}\n")


@pytest.mark.parametrize("space", ["", " ", "\t"])
def test_signing_keys_option_refuses_inline_keys(capsys: pytest.CaptureFixture[str], space: str) -> None:
    # GIVEN keys on the command line, where the process list and shell history would keep them
    argv = ["--signing-keys", space + ring_spec(RING_DOCUMENT), "send", "--queue-url", QUEUE_URL]
    code, _, err = exit_code_and_output(capsys, *argv, "--tenant", "acme", "--body", "{}")
    # THEN the command refuses before reading or sending anything, and says what to do instead
    assert code == 2
    assert err.endswith(
        "tenantscope: error: --signing-keys cannot carry keys; "
        "set TENANTSCOPE_SIGNING_KEYS=inline:... instead\n"
    )
    assert RING_DOCUMENT["keys"]["k1"] not in err


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (TimeoutError(), "tenantscope: error: TimeoutError\n"),
        (RuntimeError("first line\nsecond line"), "tenantscope: error: RuntimeError: first line\n"),
    ],
    ids=["no message", "several lines"],
)
def test_a_failure_is_one_line_naming_its_type_and_first_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    line: str,
) -> None:
    # GIVEN sending fails (a stand-in for the SQS call, which this test does not make)
    def fail(*_: object, **__: object) -> dict[str, str]:
        raise error

    monkeypatch.setenv("TENANTSCOPE_SIGNING_KEYS", ring_spec(RING_DOCUMENT))
    monkeypatch.setattr(_producer, "send_message", fail)
    # WHEN the command sends
    code = main(["send", "--queue-url", QUEUE_URL, "--tenant", "acme", "--body", "{}"])
    # THEN it exits 1 with the error's type and, if it has one, its message's first line
    captured = capsys.readouterr()
    assert (code, captured.out, captured.err) == (1, "", line)
