"""tenantscope installed as a user installs it: in clean venvs (no system site packages, nothing of
this repository on the path), from the wheel ``make dist`` builds and from the folder
``layers/tenantscope`` itself, copied alone; then README's own-service example runs its tests there.

Dependencies come from the package registry, pinned to this repository's versions
(``-c requirements-dev.txt``). Where the registry cannot be reached, the tests are skipped with a
reason that says so.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import textwrap
import tomllib
import venv
from pathlib import Path

import pytest
from packaging.version import Version

from tests import own_service

ROOT = own_service.ROOT
CONSTRAINTS = ROOT / "requirements-dev.txt"
# pip's words for a registry it cannot reach (DNS, refused or dropped connections, timeouts).
UNREACHABLE = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "Connection refused",
    "ConnectTimeout",
    "Read timed out",
    "ProxyError",
)


def clean_env() -> dict[str, str]:
    """This process's environment without what would point the venv at this repository or at AWS."""
    return {
        name: value
        for name, value in os.environ.items()
        if name != "PYTHONPATH" and not name.startswith(("AWS_", "TENANTSCOPE_", "VIRTUAL_ENV", "PYTEST"))
    }


def make_venv(directory: Path) -> Path:
    """A venv with no system site packages and no pip of its own; returns its python."""
    venv.EnvBuilder(system_site_packages=False, with_pip=False, clear=True).create(directory)
    return directory / "bin" / "python"


def pip_install(python: Path, *requirements: str, cwd: Path, constraints: Path = CONSTRAINTS) -> None:
    """``pip install`` into the venv of ``python`` (this venv's pip, ``--python``), constrained to
    ``constraints`` (by default the versions this repository pins); skip when the registry is
    unreachable."""
    command = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    command += ["--disable-pip-version-check", "-c", str(constraints), *requirements]
    result = subprocess.run(command, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        if any(sign in output for sign in UNREACHABLE):
            last = [line for line in output.splitlines() if line.strip()][-1]
            pytest.skip(f"the package registry is unreachable, so nothing can be installed: {last}")
        pytest.fail(f"pip install {' '.join(requirements)} failed:\n{output[-4000:]}")


def run_clean(command: list[str], cwd: Path | None = None, timeout: float = 120) -> str:
    """Run ``command`` in the clean environment; it must succeed. Returns its output."""
    result = subprocess.run(
        command, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def run_python(python: Path, code: str, cwd: Path) -> str:
    return run_clean([str(python), "-c", textwrap.dedent(code)], cwd)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make dist``'s command, run on a copy of the folder alone: the wheel and the sdist."""
    work = tmp_path_factory.mktemp("dist")
    library = own_service.copy_library(work / "tenantscope")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "-m build --no-isolation --outdir $(DIST) $(LIBRARY)" in makefile
    assert "LIBRARY := layers/tenantscope" in makefile
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(work / "dist"), str(library)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return work / "dist"


def test_the_sdist_holds_the_library_and_nothing_else(dist: Path) -> None:
    (sdist,) = dist.glob("tenantscope-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {Path(*Path(name).parts[1:]) for name in archive.getnames() if len(Path(name).parts) > 1}
    tops = {name.parts[0] for name in names}
    assert tops <= {
        "tenantscope",
        "tenantscope.egg-info",
        "pyproject.toml",
        "README.md",
        "PKG-INFO",
        "setup.cfg",
    }
    assert Path("tenantscope/py.typed") in names
    assert Path("tenantscope/testing/_local.py") in names


def test_the_wheel_installs_alone_into_a_clean_venv(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("tenantscope-*.whl")
    python = make_venv(tmp_path / "venv")
    pip_install(python, str(wheel), cwd=tmp_path)
    version = wheel.name.split("-")[1]
    output = run_python(
        python,
        f"""
        import importlib.metadata, importlib.resources, importlib.util, sys
        import tenantscope
        from tenantscope import tenant_key, tenant_scope

        assert not sys.flags.no_site and sys.prefix != sys.base_prefix, "not in the venv"
        assert tenantscope.__file__.startswith(sys.prefix), tenantscope.__file__
        assert tenantscope.__version__ == importlib.metadata.version("tenantscope") == {version!r}
        assert importlib.resources.files("tenantscope").joinpath("py.typed").is_file()
        for absent in ("devtools", "tests", "app", "aws_xray_sdk"):
            assert importlib.util.find_spec(absent) is None, absent + " is importable"
        # The package, its metadata, and the console script (../../../bin/tenantscope).
        installed = {{str(f).split("/")[0] for f in importlib.metadata.files("tenantscope")}}
        assert installed == {{"tenantscope", "tenantscope-{version}.dist-info", ".."}}, installed
        with tenant_scope("acme"):
            print(tenant_key("NOTE", "1"))
        """,
        cwd=tmp_path,
    )
    assert output.strip() == "TENANT#acme#NOTE#1"
    assert "send" in run_clean([str(tmp_path / "venv" / "bin" / "tenantscope"), "--help"], timeout=60)


def lowest_versions(pyproject: Path) -> list[str]:
    """The oldest release each of the package's own dependencies accepts, as ``name==version``."""
    dependencies = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    lowest = []
    for dependency in dependencies:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?>=([0-9.]+)", dependency)
        assert match, f"{dependency}: every dependency names the oldest release it works with"
        lowest.append(f"{match[1]}=={match[2]}")
    return lowest


def test_lowest_versions_reads_each_dependencys_floor(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["PyJWT[crypto]>=2.11", "boto3>=1.34.2"]\n')
    assert lowest_versions(pyproject) == ["PyJWT==2.11", "boto3==1.34.2"]
    pyproject.write_text('[project]\ndependencies = ["boto3"]\n')
    with pytest.raises(AssertionError, match="boto3: every dependency names the oldest release"):
        lowest_versions(pyproject)


@pytest.mark.parametrize("versions", ["pinned", "lowest"])
def test_the_own_service_example_passes_its_tests_with_pip_install_of_the_folder(
    tmp_path: Path, versions: str
) -> None:
    """README's "Use it in your own service": the folder copied into a service, installed with the
    README's command into a clean venv, and the service's tests run there with pytest and moto:
    with this repository's pinned versions, and with the oldest the package declares it works with
    (a floor too low would let pip install a PyJWT or boto3 the layer's calls do not exist in)."""
    service = own_service.lay_out(tmp_path / "service")
    python = make_venv(tmp_path / "venv")
    pins = lowest_versions(own_service.LIBRARY / "pyproject.toml") if versions == "lowest" else []
    constraints = CONSTRAINTS
    if pins:
        constraints = tmp_path / "lowest.txt"
        constraints.write_text("\n".join(pins) + "\n")
    requirements = ("./layers/tenantscope", "pytest", "moto[dynamodb,sqs,sts,iam]")
    pip_install(python, *requirements, cwd=service, constraints=constraints)
    for pin in pins:
        name, _, version = pin.partition("==")
        code = f"import importlib.metadata; print(importlib.metadata.version({name!r}))"
        assert Version(run_python(python, code, tmp_path).strip()) == Version(version), pin
    pytest_command = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
    output = run_clean(pytest_command, service, timeout=300)
    assert " passed" in output and "failed" not in output, output
