"""The README's "Invoke locally" block agrees with the samples, and `make sam-local-test` reads it and
the responses the way a person would. (`make sam-local-test` itself needs Docker and runs outside
`make test`.)"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from devtools import events as samples
from devtools.local_aws import REGION, ROOT
from devtools.sam_local_test import Step, last_json_line, readme_steps, with_skip_pull

REQUIRED = {
    "api_put_item_acme",
    "api_place_order_acme",
    "api_attachment_upload_acme",
    "api_attachment_download_acme",
    "sfn_complete_order",
    "api_forged_token",
    "sqs_mixed_tenants",
    "sqs_tampered_body",
    "sfn_reserve_inventory",
    "sfn_other_execution",
}


def invocations() -> list[tuple[list[str], Step]]:
    return [(shlex.split(step.command), step) for step in readme_steps() if step.expect is not None]


def test_the_block_builds_starts_the_local_aws_then_invokes_with_expectations() -> None:
    steps = readme_steps()
    assert [step.command.split()[:2] for step in steps[:2]] == [["make", "build"], ["make", "local-aws"]]
    assert [step.expect for step in steps[:2]] == [None, None]
    assert all(step.expect is not None for step in steps[2:])
    assert steps[0].command.split()[2].startswith("ARCH="), "built for the machine's architecture"


def test_each_invocation_is_a_sample_with_its_function_and_outcome() -> None:
    shown = set()
    for argv, step in invocations():
        assert argv[:4] == [".venv/bin/sam", "local", "invoke", argv[3]], step.command
        options = dict(zip(argv[4::2], argv[5::2], strict=True))
        assert options.keys() == {"-e", "--env-vars", "--region"}, step.command
        assert options["--env-vars"] == f"events/{samples.LOCAL_ENV}"
        assert options["--region"] == REGION  # where make local-aws creates the stack
        event = options["-e"]
        assert event.startswith("events/") and (ROOT / event).is_file(), event
        name = event.removeprefix("events/").removesuffix(".json")
        sample = samples.SAMPLES[name]
        assert argv[3] == sample.function, name
        assert step.expect == sample.outcome(), name
        shown.add(name)
    assert shown >= REQUIRED


def test_an_expectation_in_another_form_is_refused_not_skipped(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "### Invoke locally\n\n```bash\nmake build\nsam local invoke F -e e.json  # expect: status 200\n```\n"
    )
    with pytest.raises(ValueError, match="cannot check"):
        readme_steps(readme)


@pytest.mark.parametrize(
    ("response", "outcome"),
    [
        ({"statusCode": 202, "body": "{}"}, "statusCode 202"),
        ({"batchItemFailures": []}, "batchItemFailures 0"),
        ({"batchItemFailures": [{"itemIdentifier": "m-2"}]}, "batchItemFailures 1"),
        (
            {"errorType": "TenantAuthError", "errorMessage": "tenant envelope refused"},
            "error TenantAuthError",
        ),
        ({"tenantscope": {}, "results": {}}, "ok"),
        (None, "unexpected null"),
    ],
)
def test_a_response_is_read_as_its_outcome(response: object, outcome: str) -> None:
    assert samples.outcome(response) == outcome


def test_the_response_is_the_last_json_line_of_stdout() -> None:
    stdout = 'Mounting ...\n{"statusCode": 200}\nnot json'
    assert last_json_line(stdout) == {"statusCode": 200}
    assert last_json_line("no response at all") is None


def test_skip_pull_image_is_added_to_sam_local_commands_only_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    invoke = ".venv/bin/sam local invoke ApiFunction -e events/x.json"
    monkeypatch.delenv("SAM_SKIP_PULL", raising=False)
    assert with_skip_pull(invoke) == invoke
    monkeypatch.setenv("SAM_SKIP_PULL", "1")
    assert with_skip_pull(invoke) == invoke + " --skip-pull-image"
    assert with_skip_pull("make local-aws  # note") == "make local-aws  # note"
    assert with_skip_pull(invoke + "  # note") == invoke + " --skip-pull-image  # note"
