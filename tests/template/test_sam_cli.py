"""The SAM CLI gates of ``make test``: ``sam validate --lint`` and ``sam build``.

``sam build`` runs without Docker here, so it needs the Lambda runtime's python (python3.13) on PATH.
With pyenv that is ``PYENV_VERSION=3.11.7:3.12.1:3.13.0``, which the Makefile exports; these tests
also try it when the inherited environment has no python3.13. Where the runtime's python (or make,
for the layer's makefile build) is missing, the build tests are skipped with a reason naming it.

Everything ``sam build`` writes goes to a temporary directory (``--build-dir``, ``--cache-dir`` and
the working directory, which holds ``.aws-sam/deps``), never into the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from samcli.lib.config.samconfig import SamConfig

from devtools.events import EVENTS_DIR, LOCAL_ENV
from devtools.local_aws import REGION as LOCAL_REGION
from devtools.local_aws import load_template
from devtools.runtime import MAKEFILE_PYENV_VERSION, RUNTIME_PYTHON, runs, runtime_environments
from devtools.sam import ARCHITECTURES, layer_machines
from tests import own_service
from tests.own_service import copy_library
from tests.template.conftest import ROOT, TEMPLATE, sam_template

pytestmark = pytest.mark.sam

SAM = Path(sys.executable).with_name("sam")
RUNTIME: str = sam_template()["Globals"]["Function"]["Runtime"]  # e.g. python3.13
APP_SOURCE = ROOT / "functions" / "app"
LAYER_SOURCE = ROOT / "layers" / "tenantscope" / "tenantscope"
LAYER_TEMPLATE = ROOT / "layers" / "tenantscope" / "template.yaml"
# The files of layers/tenantscope beside the package: the layer's build never ships them.
# The flags word of a .pyc (PEP 552): hash-based, not checked against its source.
UNCHECKED_HASH = 0b01
LIBRARY_FOLDER_FILES = {"pyproject.toml", "README.md", "template.yaml", "Makefile", "requirements.txt"}


def _sam_env(**extra: str) -> dict[str, str]:
    # The layer's architecture is the template's default here, whatever the shell says.
    inherited = {name: value for name, value in os.environ.items() if name != "TENANTSCOPE_ARCH"}
    return {**inherited, "SAM_CLI_TELEMETRY": "0", **extra}


def _require_sam() -> None:
    if not SAM.exists():
        pytest.skip(f"aws-sam-cli is not installed: no {SAM} (run `make install`)")


def test_the_runtime_python_tried_is_the_templates_and_the_makefiles() -> None:
    assert RUNTIME == RUNTIME_PYTHON
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"export PYENV_VERSION ?= {MAKEFILE_PYENV_VERSION}\n" in makefile


def _build_env() -> dict[str, str]:
    """An environment in which the runtime's python resolves, or skip naming what is missing."""
    tried = []
    for env in runtime_environments(_sam_env()):
        tried.append(f"PYENV_VERSION={env.get('PYENV_VERSION', '<unset>')}")
        if runs(RUNTIME, env):
            if shutil.which("make", path=env.get("PATH")) is None:
                pytest.skip("make is missing: the tenantscope layer is built with BuildMethod: makefile")
            return env
    pytest.skip(
        f"{RUNTIME} is missing: sam build without Docker needs the Lambda runtime's python on PATH "
        f"(tried {' and '.join(tried)}); install it, e.g. `pyenv install 3.13`, and put {RUNTIME} on PATH, "
        f"e.g. PYENV_VERSION={MAKEFILE_PYENV_VERSION}"
    )


def _tail(result: subprocess.CompletedProcess[str], lines: int = 40) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-lines:])


def sam_validate_lint(template: Path) -> None:
    _require_sam()
    result = subprocess.run(
        [str(SAM), "validate", "--lint", "--template-file", str(template)],
        cwd=template.parent,
        env=_sam_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"sam validate --lint failed:\n{_tail(result)}"
    assert "is a valid SAM Template" in result.stdout + result.stderr


@pytest.mark.parametrize("command", [["local", "invoke"], ["local", "start-api"]])
def test_sam_local_reads_the_environment_of_the_local_aws_by_default(command: list[str]) -> None:
    # Read as SAM CLI reads samconfig.toml. Any other env file leaves TENANTSCOPE_BUCKETS and the
    # tables at the logical ids SAM gives a Ref, and every function fails on its settings.
    defaults = SamConfig(str(ROOT)).get_all(command, "parameters")
    assert defaults["env_vars"] == f"{EVENTS_DIR.name}/{LOCAL_ENV}"
    assert (EVENTS_DIR.parent, defaults["region"]) == (ROOT, LOCAL_REGION)


@pytest.mark.parametrize("document", ["docs/observability.md", "tests/aws/conftest.py"])
def test_a_documented_deploy_with_its_own_parameters_repeats_samconfigs(document: str) -> None:
    # --parameter-overrides on the command line replaces samconfig.toml's whole list: a new stack
    # would get the template's defaults (CreateUserPool=false, which the Rules refuse without an issuer)
    text = (ROOT / document).read_text(encoding="utf-8").replace("\\\n", " ")
    commands = [
        line for line in text.splitlines() if "sam deploy" in line and "--parameter-overrides" in line
    ]
    assert commands, f"{document} shows no sam deploy with parameters"
    configured = SamConfig(str(ROOT)).get_all(["deploy"], "parameters")["parameter_overrides"]
    for command in commands:
        given = command.split("--parameter-overrides", 1)[1].split()
        assert set(configured) <= set(given), command


def test_sam_validate_lint_passes() -> None:
    sam_validate_lint(TEMPLATE)


def test_the_standalone_layer_template_passes_sam_validate_lint() -> None:
    sam_validate_lint(LAYER_TEMPLATE)


# docs/architecture.md's way to turn SnapStart on for a function, as its lines read there.
SNAPSTART_PROPERTIES = ("AutoPublishAlias: live", "SnapStart: {ApplyOn: PublishedVersions}")


def test_the_documented_snapstart_settings_pass_sam_validate_lint(tmp_path: Path) -> None:
    # GIVEN the sample template with the settings the docs give, on the API function
    architecture = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert all(f"`{line}`" in architecture for line in SNAPSTART_PROPERTIES)
    function = "  ApiFunction:\n    Type: AWS::Serverless::Function\n"
    properties = "    Properties:\n"
    text = TEMPLATE.read_text(encoding="utf-8")
    at = text.index(properties, text.index(function)) + len(properties)
    settings = "".join(f"      {line}\n" for line in SNAPSTART_PROPERTIES)
    (tmp_path / "template.yaml").write_text(text[:at] + settings + text[at:], encoding="utf-8")
    # THEN SAM takes it, and the runtime is one SnapStart supports (Python from 3.12)
    sam_validate_lint(tmp_path / "template.yaml")
    version = tuple(int(part) for part in RUNTIME.removeprefix("python").split("."))
    assert version >= (3, 12), RUNTIME


@dataclass(frozen=True)
class Build:
    result: subprocess.CompletedProcess[str]
    build_dir: Path

    def template(self) -> dict[str, Any]:
        if self.result.returncode != 0:
            pytest.fail(f"sam build failed:\n{_tail(self.result)}")
        return load_template(self.build_dir / "template.yaml")

    def artifacts(self, kind: str) -> dict[str, Path]:
        """``{logical id: built directory}`` of the resources of this SAM type."""
        uri = "ContentUri" if kind == "AWS::Serverless::LayerVersion" else "CodeUri"
        return {
            name: self.build_dir / resource["Properties"][uri]
            for name, resource in self.template()["Resources"].items()
            if resource["Type"] == kind
        }


def run_sam_build(template: Path, work: Path, *overrides: str, **env: str) -> Build:
    """``sam build`` of ``template`` into ``work`` (``overrides``: ``Name=value`` parameters)."""
    _require_sam()
    command = [str(SAM), "build", "--template-file", str(template)]
    command += ["--build-dir", str(work / "build"), "--cache-dir", str(work / "cache")]
    if overrides:
        command += ["--parameter-overrides", *overrides]
    result = subprocess.run(
        command,
        cwd=work,  # sam keeps .aws-sam/deps under the working directory
        env={**_build_env(), **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    return Build(result, work / "build")


@pytest.fixture(scope="module")
def sam_build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    return run_sam_build(TEMPLATE, tmp_path_factory.mktemp("sam-build"))


@pytest.fixture(scope="module")
def standalone_layer_build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The standalone layer template, from a copy of its folder alone, for x86_64 as documented."""
    work = tmp_path_factory.mktemp("layer-build")
    folder = copy_library(work / "tenantscope")
    return run_sam_build(folder / "template.yaml", work, "Architecture=x86_64", TENANTSCOPE_ARCH="x86_64")


def assert_only_the_library_is_shipped(layer: Path, machine: str, build_dir: Path) -> None:
    """The layer: python/ with tenantscope as in the repository (but its test doubles) and its
    dependencies for ``machine``; nothing of the folder but the package (no pyproject, README,
    template, Makefile)."""
    assert [p.name for p in layer.iterdir()] == ["python"], sorted(p.name for p in layer.iterdir())
    python = layer / "python"
    for package in ("tenantscope", "aws_xray_sdk"):
        assert (python / package / "__init__.py").is_file(), f"the layer lacks python/{package}"
    # PyJWT ships as bytecode alone (the layer's Makefile says why), importable without sources.
    assert (python / "jwt" / "__init__.pyc").is_file(), "the layer lacks PyJWT's bytecode"
    assert not list((python / "jwt").rglob("*.py")), "PyJWT's sources are shipped beside its bytecode"
    source = {
        p.relative_to(LAYER_SOURCE)
        for p in LAYER_SOURCE.rglob("*.py")
        if p.relative_to(LAYER_SOURCE).parts[0] != "testing"  # test doubles stay out of Lambda
    }
    built = {p.relative_to(python / "tenantscope") for p in (python / "tenantscope").rglob("*.py")}
    assert built == source, "the layer's tenantscope differs from layers/tenantscope/tenantscope"
    assert not list(python.glob("*.dist-info/RECORD")), "pip's uninstall manifests are shipped"
    strays = [p.name for p in python.iterdir() if p.name in LIBRARY_FOLDER_FILES or p.suffix == ".egg-info"]
    strays += [
        str(p) for p in (python / "tenantscope").rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
    ]
    assert not strays, f"the layer ships files of the folder that are not the package: {strays}"
    bundled = sorted(
        p.name
        for p in python.iterdir()
        if p.name.lower().split("-")[0] in ("boto3", "botocore") or p.name in ("boto3", "botocore")
    )
    assert not bundled, f"the runtime provides boto3/botocore; the layer must not bundle {bundled}"
    # OpenTelemetry comes with the ADOT layer: a second copy in /opt/python would shadow its own.
    assert not (python / "opentelemetry").exists(), "the layer must not bundle OpenTelemetry"
    machines = layer_machines(build_dir)
    assert machines, "expected compiled extensions (cryptography)"
    wrong = {p: m for p, m in machines.items() if m != ARCHITECTURES[machine]}
    assert not wrong, f"not {machine} (e_machine {ARCHITECTURES[machine]}): {wrong}"


def test_sam_build_succeeds(sam_build: Build) -> None:
    assert sam_build.result.returncode == 0, f"sam build failed:\n{_tail(sam_build.result)}"
    assert "Build Succeeded" in sam_build.result.stdout + sam_build.result.stderr
    assert (sam_build.build_dir / "template.yaml").is_file()


def test_every_function_build_has_the_app_code(sam_build: Build) -> None:
    functions = sam_build.artifacts("AWS::Serverless::Function")
    assert functions
    expected = {p.relative_to(APP_SOURCE.parent) for p in APP_SOURCE.glob("*.py")}
    assert Path("app/api.py") in expected
    for name, directory in functions.items():
        built = {p.relative_to(directory) for p in (directory / "app").glob("*.py")}
        assert expected <= built, f"{name} build lacks {sorted(map(str, expected - built))}"
        # Lambda cannot write bytecode beside read-only code: without it, every cold start compiles.
        for source in expected:
            pyc = directory / source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
            assert pyc.is_file(), f"{name} ships {source} without python3.13 bytecode"
            flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
            assert flags == UNCHECKED_HASH, f"{pyc} is checked against its source's time or hash"
        assert not (directory / "tenantscope").exists(), (
            f"{name} bundles tenantscope; it belongs in the layer"
        )
        for runtime_package in ("boto3", "botocore"):
            assert not (directory / runtime_package).exists(), f"{name} bundles {runtime_package}"


def test_the_layer_has_tenantscope_and_its_dependencies_for_arm64_but_not_boto(sam_build: Build) -> None:
    (layer,) = sam_build.artifacts("AWS::Serverless::LayerVersion").values()
    assert_only_the_library_is_shipped(layer, "arm64", sam_build.build_dir)


def test_the_standalone_layer_builds_from_its_folder_alone(standalone_layer_build: Build) -> None:
    build = standalone_layer_build
    assert build.result.returncode == 0, f"sam build failed:\n{_tail(build.result)}"
    (layer,) = build.artifacts("AWS::Serverless::LayerVersion").values()
    assert_only_the_library_is_shipped(layer, "x86_64", build.build_dir)
    template = build.template()
    (resource,) = template["Resources"].values()
    assert resource["Properties"]["CompatibleRuntimes"] == [RUNTIME]
    output = template["Outputs"]["LayerArn"]
    assert output["Value"] == {"Ref": "TenantScopeLayer"}
    assert output["Export"]["Name"] == {"Fn::Sub": "${AWS::StackName}-LayerArn"}


# --- README's own-service example: a user's template with the copied folder as its layer ---------


@pytest.fixture(scope="module")
def own_service_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return own_service.lay_out(tmp_path_factory.mktemp("own-service") / "service")


def test_the_own_service_template_passes_sam_validate_lint(own_service_dir: Path) -> None:
    sam_validate_lint(own_service_dir / "template.yaml")


def test_the_own_service_builds_with_the_copied_folder_as_its_layer(
    own_service_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    build = run_sam_build(own_service_dir / "template.yaml", tmp_path_factory.mktemp("own-service-build"))
    assert build.result.returncode == 0, f"sam build failed:\n{_tail(build.result)}"
    (layer,) = build.artifacts("AWS::Serverless::LayerVersion").values()
    assert_only_the_library_is_shipped(layer, "arm64", build.build_dir)
    functions = build.artifacts("AWS::Serverless::Function")
    assert set(functions) == {"NotesFunction", "AuditFunction"}
    for name, directory in functions.items():
        assert sorted(p.name for p in directory.iterdir()) == ["app.py"], f"{name} ships more than src/"
