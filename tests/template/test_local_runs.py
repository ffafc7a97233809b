"""What template.yaml declares for local runs leaves a deployed stack as it would be without it.

`sam local --env-vars` passes a function only the variables the template declares, so the
template declares the envelope lifetimes and AWS_ENDPOINT_URL; deployed, they must mean "unset".
The architecture is a parameter, arm64 unless a build says otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from samcli.commands.deploy.deploy_context import DeployContext

from devtools.sam import ARCHITECTURES, pin_built_architecture
from devtools.stack_env import stack_environment
from tenantscope._config import ENV, Settings
from tests.template.conftest import REGION, ROOT, Deployment, sam_template

LAYER_DIR = ROOT / "layers" / "tenantscope"


def functions(deployment: Deployment) -> list[str]:
    return sorted(deployment.of_type("AWS::Lambda::Function"))


def test_the_envelope_lifetimes_a_function_is_given_are_tenantscopes_defaults(deployment: Deployment) -> None:
    defaults = Settings.load(environ={})
    for function in functions(deployment):
        environment = deployment.environment(function)
        assert ENV.SQS_ENVELOPE_TTL in environment and ENV.SFN_ENVELOPE_TTL in environment, function
        configured = Settings.load(environ=environment)
        assert configured.sqs_envelope_ttl_seconds == defaults.sqs_envelope_ttl_seconds, function
        assert configured.sfn_envelope_ttl_seconds == defaults.sfn_envelope_ttl_seconds, function


def test_aws_endpoint_url_is_declared_empty(deployment: Deployment) -> None:
    for function in functions(deployment):
        assert deployment.environment(function)["AWS_ENDPOINT_URL"] == "", function


@pytest.mark.parametrize("service", ["sts", "dynamodb", "sqs", "stepfunctions", "secretsmanager"])
def test_botocore_takes_an_empty_aws_endpoint_url_as_unset(
    monkeypatch: pytest.MonkeyPatch, service: str
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "")
    default = boto3.session.Session().client(service, region_name=REGION).meta.endpoint_url
    assert default.startswith("https://") and default.endswith(".amazonaws.com"), default
    # The same variable, set, redirects the client: the test above looks at the right setting.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5089")
    assert (
        boto3.session.Session().client(service, region_name=REGION).meta.endpoint_url
        == "http://127.0.0.1:5089"
    )


def test_the_architecture_is_one_parameter_arm64_by_default() -> None:
    template = sam_template()
    parameter = template["Parameters"]["Architecture"]
    assert parameter["Default"] == "arm64"
    assert sorted(parameter["AllowedValues"]) == sorted(ARCHITECTURES)
    reference = {"Ref": "Architecture"}
    assert template["Globals"]["Function"]["Architectures"] == [reference]
    (layer,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::LayerVersion"]
    assert layer["Properties"]["CompatibleArchitectures"] == [reference]
    assert layer["Metadata"]["BuildArchitecture"] == reference


def test_env_from_stack_names_the_resources_the_functions_are_given(deployment: Deployment) -> None:
    outputs = {name: str(deployment.render(output["Value"])) for name, output in deployment.outputs.items()}
    for variable, value in stack_environment(outputs).items():
        given = {f: deployment.environment(f).get(variable) for f in functions(deployment)}
        declared = {f: v for f, v in given.items() if v is not None}
        assert declared, f"no function is given {variable}"
        assert set(declared.values()) == {value}, f"{variable}: outputs give {value}, functions {declared}"


def planned_layer_build(
    architecture: str | None, artifacts: Path | None, target: str = "build-TenantScopeLayer"
) -> subprocess.CompletedProcess[str]:
    """What the layer's Makefile would run (make -n) for TENANTSCOPE_ARCH=``architecture``."""
    if shutil.which("make") is None:
        pytest.skip("make is missing: the layer is built with BuildMethod: makefile")
    environment = {"PATH": "/usr/bin:/bin"}
    if artifacts is not None:
        environment["ARTIFACTS_DIR"] = str(artifacts)
    if architecture:
        environment["TENANTSCOPE_ARCH"] = architecture
    return subprocess.run(
        ["make", "-n", target],
        cwd=LAYER_DIR,
        env=environment,
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    ("architecture", "platform"), [("arm64", "aarch64"), ("x86_64", "x86_64"), (None, "aarch64")]
)
def test_the_layer_makefile_installs_wheels_for_the_architecture(
    architecture: str | None, platform: str, tmp_path: Path
) -> None:
    planned = planned_layer_build(architecture, tmp_path)
    assert planned.returncode == 0, planned.stderr
    assert f"--platform manylinux2014_{platform} " in planned.stdout


def test_the_layer_makefile_builds_a_layer_of_any_logical_id(tmp_path: Path) -> None:
    """Another template may name its layer resource as it likes (BuildMethod: makefile runs
    ``make build-<logical id>``)."""
    ours = planned_layer_build("x86_64", tmp_path)
    theirs = planned_layer_build("x86_64", tmp_path, "build-NotesLayer")
    assert theirs.returncode == 0, theirs.stderr
    assert theirs.stdout == ours.stdout


def test_the_layer_makefile_needs_sams_artifacts_dir() -> None:
    planned = subprocess.run(
        ["make", "build-TenantScopeLayer"], cwd=LAYER_DIR, env={"PATH": "/usr/bin:/bin"}, capture_output=True
    )
    assert planned.returncode != 0
    assert b"ARTIFACTS_DIR is not set" in planned.stderr


def test_the_layer_ships_bytecode_for_what_every_cold_start_imports(tmp_path: Path) -> None:
    planned = planned_layer_build("arm64", tmp_path)
    assert planned.returncode == 0, planned.stderr
    commands = planned.stdout.replace("\\\n", " ")
    # Compiled after the last removal of __pycache__, for the runtime's python, used as shipped.
    assert commands.rindex("compileall") > commands.rindex("__pycache__")
    lines = commands.splitlines()
    ours, pyjwt = [line for line in lines if "compileall" in line]
    for compile_command in (ours, pyjwt):
        assert compile_command.startswith("python3.13 -m compileall")
        assert "--invalidation-mode unchecked-hash" in compile_command
    assert ours.endswith(f' "{tmp_path}/python/tenantscope"')
    # PyJWT ships as bytecode alone: compiled beside its sources (-b), which are then deleted
    assert pyjwt.endswith(f' -b "{tmp_path}/python/jwt"')
    assert lines[lines.index(pyjwt) + 1] == f"find \"{tmp_path}/python/jwt\" -name '*.py' -type f -delete"


def test_the_layer_makefile_refuses_an_unknown_architecture(tmp_path: Path) -> None:
    planned = planned_layer_build("x86", tmp_path)
    assert planned.returncode != 0
    assert "TENANTSCOPE_ARCH must be arm64 or x86_64" in planned.stderr


def fake_build(directory: Path, machine: int) -> Path:
    """A build directory: its template (Architecture defaulting to arm64) and a layer with one
    compiled extension for ``machine``."""
    template: dict[str, Any] = {
        "Parameters": {
            "Architecture": {"Type": "String", "Default": "arm64"},
            "Stage": {"Type": "String", "Default": "dev"},
        },
        "Globals": {"Function": {"Architectures": [{"Ref": "Architecture"}]}},
        "Resources": {
            "Layer": {
                "Type": "AWS::Serverless::LayerVersion",
                "Properties": {"ContentUri": "Layer", "CompatibleArchitectures": [{"Ref": "Architecture"}]},
            },
        },
    }
    (directory / "template.yaml").write_text(yaml.safe_dump(template))
    extension = directory / "Layer" / "python" / "_rust.abi3.so"
    extension.parent.mkdir(parents=True)
    # An ELF header: 64-bit, little-endian, shared object, then e_machine.
    extension.write_bytes(
        b"\x7fELF\x02\x01\x01" + bytes(9) + (3).to_bytes(2, "little") + machine.to_bytes(2, "little")
    )
    return directory


def test_a_build_writes_its_architecture_into_its_template_so_a_deploy_cannot_keep_another(
    tmp_path: Path,
) -> None:
    build = fake_build(tmp_path, ARCHITECTURES["x86_64"])
    pin_built_architecture("x86_64", build)
    built = yaml.safe_load((build / "template.yaml").read_text())
    assert built["Globals"]["Function"]["Architectures"] == ["x86_64"]
    assert built["Resources"]["Layer"]["Properties"]["CompatibleArchitectures"] == ["x86_64"]
    # WHEN sam deploy updates a stack first deployed for arm64, given no Architecture (as
    # `make deploy` runs it), THEN it has no parameter to keep at its previous value
    merged = DeployContext.merge_parameters(built, {})
    assert merged == [{"ParameterKey": "Stage", "UsePreviousValue": True}]


def test_a_layer_built_for_another_architecture_is_refused(tmp_path: Path) -> None:
    build = fake_build(tmp_path, ARCHITECTURES["arm64"])
    with pytest.raises(SystemExit, match="not all x86_64"):
        pin_built_architecture("x86_64", build)
    assert (
        yaml.safe_load((build / "template.yaml").read_text())["Parameters"]["Architecture"]["Default"]
        == "arm64"
    )
