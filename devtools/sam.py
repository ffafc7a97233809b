"""The SAM CLI as the local flow uses it: a function's environment resolved by SAM's own code, and
the architecture of a build.

``resolved_environment`` runs the code of ``sam local invoke`` and ``sam local start-api`` that
turns the template's variables, the shell and an ``--env-vars`` file into a function's
environment (SAM passes an entry of the file only when the template declares that variable for
the function). It needs no Docker, so tests run every sample with exactly that environment.

``make build ARCH=<arch>`` builds with ``Architecture=<arch>``; then ``python -m devtools.sam
built-for <arch>`` writes that architecture into the built template in place of the parameter, so
that ``sam local invoke`` and ``sam deploy`` of this build (a stack that exists included) run the
architecture it was built for, and checks that every compiled extension of the built layer is for it.
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

from devtools.local_aws import REGION, ROOT, TEMPLATE, load_template

BUILD_DIR = ROOT / ".aws-sam" / "build"
ARCHITECTURES = {"arm64": 183, "x86_64": 62}  # Lambda's names -> ELF e_machine


def read_env_vars(path: Path) -> dict[str, Any]:
    """An ``--env-vars`` file, read as SAM reads it (JSON, or the .env format)."""
    from samcli.commands.local.cli_common.invoke_context import InvokeContext

    values: dict[str, Any] = InvokeContext._get_env_vars_value(str(path)) or {}
    return values


@functools.cache
def _function_provider(template: Path) -> Any:
    from samcli.lib.providers.sam_function_provider import SamFunctionProvider
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

    stacks, _ = SamLocalStackProvider.get_stacks(str(template))
    return SamFunctionProvider(stacks)


def resolved_environment(
    logical_id: str,
    env_vars: Mapping[str, Any] | None,
    *,
    shell: Mapping[str, str],
    template: Path = TEMPLATE,
    region: str = REGION,
) -> dict[str, str]:
    """The environment ``sam local invoke <logical_id> --env-vars <file> --region <region>`` gives
    the function, from a shell whose variables are ``shell``: SAM CLI's own resolution."""
    from samcli.commands.local.lib.local_lambda import LocalLambdaRunner

    provider = _function_provider(template)
    runner = LocalLambdaRunner(
        local_runtime=None,  # type: ignore[arg-type]  # resolving the environment runs nothing
        function_provider=provider,
        cwd=str(template.parent),
        real_path=str(template.parent),
        aws_region=region,
        env_vars_values=dict(env_vars or {}),
    )
    function = provider.get(logical_id)
    if function is None:
        raise LookupError(f"{template.name} has no function {logical_id}")
    # SAM reads the shell from os.environ (and credentials through boto3, which reads it too).
    with mock.patch.dict(os.environ, dict(shell), clear=True):
        environment: dict[str, str] = runner._make_env_vars(function).resolve()
    return environment


def elf_machine(path: Path) -> int | None:
    """The ELF e_machine of a compiled file, or None when it is not ELF."""
    header = path.read_bytes()[:20]
    if header[:4] != b"\x7fELF":
        return None
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def layer_machines(build_dir: Path) -> dict[str, int | None]:
    """{compiled file: ELF machine} of every built layer in ``build_dir``."""
    built = load_template(build_dir / "template.yaml")["Resources"]
    machines = {}
    for resource in built.values():
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            layer = build_dir / resource["Properties"]["ContentUri"]
            machines.update({str(p.relative_to(build_dir)): elf_machine(p) for p in layer.rglob("*.so")})
    return machines


def _with_literal(value: Any, name: str, literal: str) -> Any:
    if value == {"Ref": name}:
        return literal
    if isinstance(value, dict):
        return {key: _with_literal(item, name, literal) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_literal(item, name, literal) for item in value]
    return value


def pin_built_architecture(architecture: str, build_dir: Path = BUILD_DIR) -> None:
    """Write ``architecture`` into the built template where it referred to its Architecture
    parameter, and drop the parameter, after checking that the built layer's extensions are all
    for it (a stale cache or a direct ``sam build`` with another Architecture would not be).

    A parameter's default would not do: ``sam deploy`` sends every parameter of a stack that
    exists as UsePreviousValue unless it is given, so a stack first deployed for arm64 would keep
    arm64 functions beside a layer built for x86_64, whose compiled modules would not load."""
    expected = ARCHITECTURES[architecture]
    wrong = {path: machine for path, machine in layer_machines(build_dir).items() if machine != expected}
    if wrong:
        raise SystemExit(f"the built layer is not all {architecture}: {sorted(wrong)[:3]} ...")
    path = build_dir / "template.yaml"
    built = load_template(path)
    del built["Parameters"]["Architecture"]
    path.write_text(yaml.safe_dump(_with_literal(built, "Architecture", architecture), sort_keys=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pin a SAM build to the architecture it was built for.")
    commands = parser.add_subparsers(dest="command", required=True)
    built_for = commands.add_parser("built-for", help="write ARCH into the build's template")
    built_for.add_argument("architecture", choices=sorted(ARCHITECTURES))
    built_for.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    args = parser.parse_args(argv)
    pin_built_architecture(args.architecture, args.build_dir)
    print(f"{args.build_dir}: built for {args.architecture}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
