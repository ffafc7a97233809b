"""The SAM CLI as the local flow uses it: the architecture of a build.

``make build ARCH=<arch>`` builds with ``Architecture=<arch>``; then ``python -m devtools.sam
built-for <arch>`` makes that the built template's default, so that ``sam local invoke`` and
``sam deploy`` of this build run the architecture it was built for, and checks that every compiled
extension of the built layer is for it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from devtools.local_aws import ROOT, load_template

BUILD_DIR = ROOT / ".aws-sam" / "build"
ARCHITECTURES = {"arm64": 183, "x86_64": 62}  # Lambda's names -> ELF e_machine


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


def pin_built_architecture(architecture: str, build_dir: Path = BUILD_DIR) -> None:
    """Make ``architecture`` the default of the built template's Architecture, after checking
    that the built layer's extensions are all for it (a stale cache or a direct ``sam build``
    with another Architecture would not be)."""
    expected = ARCHITECTURES[architecture]
    wrong = {path: machine for path, machine in layer_machines(build_dir).items() if machine != expected}
    if wrong:
        raise SystemExit(f"the built layer is not all {architecture}: {sorted(wrong)[:3]} ...")
    path = build_dir / "template.yaml"
    built = load_template(path)
    built["Parameters"]["Architecture"]["Default"] = architecture
    path.write_text(yaml.safe_dump(built, sort_keys=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pin a SAM build to the architecture it was built for.")
    commands = parser.add_subparsers(dest="command", required=True)
    built_for = commands.add_parser("built-for", help="make the build's default architecture ARCH")
    built_for.add_argument("architecture", choices=sorted(ARCHITECTURES))
    built_for.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    args = parser.parse_args(argv)
    pin_built_architecture(args.architecture, args.build_dir)
    print(f"{args.build_dir}: built for {args.architecture}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
