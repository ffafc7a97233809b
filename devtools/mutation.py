"""`make mutation`: mutation testing of the layer, one module at a time, with mutmut.

For each module, mutmut changes the module's code one small edit at a time (a mutant: a flipped
comparison, a dropped check, a changed constant) and runs the tests that reach the changed
function; a mutant some test fails on is killed. A mutant no test notices is a behaviour no test
holds: either a missing test, or an equivalent mutant, one that cannot change what the code does
(a reviewed line in ``tests/mutation/equivalent.txt`` says why). The score is
killed / (generated - equivalent).

Each module runs in its own work directory under ``.mutation/<module>/`` (the layer's package as
``src/tenantscope``, which is where mutmut looks for a package, the tests and devtools), with only
the test files of :data:`TESTS` selected; mutmut narrows them further to the tests that call each
mutated function. The table is printed, and each module's survivors, with their diffs, are written
to ``.mutation/<module>/survivors.txt`` for review.

    python -m devtools.mutation [--jobs N] [MODULE ...]
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "layers" / "tenantscope" / "tenantscope"
WORK = ROOT / ".mutation"
EQUIVALENTS = ROOT / "tests" / "mutation" / "equivalent.txt"

# The test files that can kill a module's mutants: its own tests, and the attack and adapter
# tests that drive it through a real handler.
TESTS: dict[str, tuple[str, ...]] = {
    "_tenant_id": ("tests/unit/test_tenant_id.py", "tests/unit/test_jwt_attacks.py"),
    "_resolve": (
        "tests/unit/test_api_handler.py",
        "tests/unit/test_jwt_attacks.py",
        "tests/unit/test_token_cache.py",
        "tests/unit/test_sqs_handler.py",
        "tests/unit/test_sfn_task.py",
        "tests/unit/test_adding_a_trigger.py",
        "tests/integration/test_errors_name_the_fix.py",
    ),
    "_context": (
        "tests/unit/test_context.py",
        "tests/unit/test_isolation_concurrency.py",
        "tests/unit/test_logging.py",
        "tests/unit/test_api_handler.py",
        "tests/unit/test_sqs_handler.py",
    ),
    "_data": (
        "tests/unit/test_guard.py",
        "tests/unit/test_isolation_concurrency.py",
        "tests/unit/test_api_handler.py",
        "tests/unit/test_object_guard.py",
        "tests/integration/test_data_on_moto.py",
        "tests/integration/test_files_on_moto.py",
    ),
    "_policy": ("tests/unit/test_policy.py", "tests/unit/test_credentials.py"),
    "_credentials": (
        "tests/unit/test_credentials.py",
        "tests/unit/test_api_handler.py",
        "tests/unit/test_snapstart.py",
    ),
    "_envelope": (
        "tests/unit/test_envelope.py",
        "tests/unit/test_sqs_handler.py",
        "tests/unit/test_sfn_task.py",
    ),
    "_guard": ("tests/unit/test_guard.py", "tests/integration/test_data_on_moto.py"),
    "_expressions": ("tests/unit/test_guard.py", "tests/integration/test_data_on_moto.py"),
    "_object_guard": ("tests/unit/test_object_guard.py", "tests/integration/test_files_on_moto.py"),
    "_files": ("tests/unit/test_object_guard.py", "tests/integration/test_files_on_moto.py"),
    "_producer": (
        "tests/unit/test_envelope.py",
        "tests/unit/test_context.py",
        "tests/unit/test_sqs_handler.py",
        "tests/unit/test_tracing_unit.py",
        "tests/integration/test_producer_on_moto.py",
    ),
    "_keyring": (
        "tests/unit/test_keyring.py",
        "tests/unit/test_envelope.py",
        "tests/integration/test_keys_and_replay_on_moto.py",
    ),
    "_replay": (
        "tests/unit/test_sqs_handler.py",
        "tests/unit/test_public_types.py",
        "tests/integration/test_keys_and_replay_on_moto.py",
    ),
    "sfn": (
        "tests/unit/test_sfn_task.py",
        "tests/unit/test_async_handlers.py",
        "tests/unit/test_public_types.py",
        "tests/integration/test_producer_on_moto.py",
        "tests/unit/test_tracing_unit.py",
        "tests/integration/test_tracing.py",
    ),
    "api": (
        "tests/unit/test_snapstart.py",
        "tests/unit/test_api_handler.py",
        "tests/unit/test_jwt_attacks.py",
        "tests/unit/test_async_handlers.py",
        "tests/unit/test_loggable_error.py",
        "tests/unit/test_public_types.py",
        "tests/integration/test_errors_name_the_fix.py",
        "tests/unit/test_tracing_unit.py",
        "tests/integration/test_tracing.py",
    ),
    "sqs": (
        "tests/unit/test_sqs_handler.py",
        "tests/unit/test_powertools_batch.py",
        "tests/unit/test_async_handlers.py",
        "tests/unit/test_loggable_error.py",
        "tests/unit/test_public_types.py",
        "tests/integration/test_keys_and_replay_on_moto.py",
        "tests/integration/test_errors_name_the_fix.py",
        "tests/unit/test_tracing_unit.py",
        "tests/integration/test_tracing.py",
    ),
    "_aws": (
        "tests/integration/test_aws_clients_on_moto.py",
        "tests/unit/test_credentials.py",
        "tests/integration/test_data_on_moto.py",
        "tests/integration/test_keys_and_replay_on_moto.py",
    ),
    "_pipeline": (
        "tests/unit/test_api_handler.py",
        "tests/unit/test_sqs_handler.py",
        "tests/unit/test_sfn_task.py",
        "tests/unit/test_adding_a_trigger.py",
        "tests/unit/test_async_handlers.py",
        "tests/unit/test_isolation_concurrency.py",
        "tests/unit/test_loggable_error.py",
        "tests/unit/test_logging.py",
        "tests/unit/test_metrics.py",
        "tests/unit/test_tracing_unit.py",
        "tests/integration/test_errors_name_the_fix.py",
        "tests/integration/test_process_reset.py",
        "tests/integration/test_keys_and_replay_on_moto.py",
        "tests/unit/test_snapstart.py",
    ),
    "_cache": (
        "tests/unit/test_process_cache.py",
        "tests/unit/test_credentials.py",
        "tests/unit/test_jwks_cache.py",
        "tests/unit/test_keyring.py",
        "tests/unit/test_token_cache.py",
        "tests/unit/test_snapstart.py",
    ),
    "_jwt": (
        "tests/unit/test_jwt_attacks.py",
        "tests/unit/test_jwks_cache.py",
        "tests/unit/test_token_cache.py",
        "tests/unit/test_jwt_decode_matches_pyjwt.py",
        "tests/integration/test_jwks_over_tls.py",
    ),
    "_config": (
        "tests/unit/test_config.py",
        "tests/unit/test_policy.py",
        "tests/unit/test_credentials.py",
        "tests/unit/test_public_types.py",
        "tests/unit/test_metrics.py",
        "tests/unit/test_keyring.py",
        "tests/unit/test_jwks_cache.py",
    ),
    "_logging": (
        "tests/unit/test_logging.py",
        "tests/unit/test_logging_integrations.py",
        "tests/unit/test_loggable_error.py",
        "tests/unit/test_public_types.py",
    ),
    "_tracing": (
        "tests/unit/test_tracing_unit.py",
        "tests/unit/test_otel_tracing.py",
        "tests/integration/test_tracing.py",
        "tests/integration/test_tracing_on_each_backend.py",
        "tests/integration/test_tracing_otel.py",
        "tests/unit/test_snapstart.py",
    ),
    "_metrics": (
        "tests/unit/test_metrics.py",
        "tests/unit/test_config.py",
        "tests/unit/test_tracing_unit.py",
    ),
    "_errors": (
        "tests/unit/test_loggable_error.py",
        "tests/unit/test_tracing_unit.py",
        "tests/unit/test_logging.py",
        "tests/unit/test_api_handler.py",
        "tests/unit/test_sqs_handler.py",
        "tests/unit/test_sfn_task.py",
    ),
    "_otel": (
        "tests/unit/test_otel_tracing.py",
        "tests/unit/test_tracing_unit.py",
        "tests/integration/test_tracing_otel.py",
        "tests/integration/test_tracing_on_each_backend.py",
    ),
    "cli": ("tests/unit/test_cli.py", "tests/integration/test_cli_on_moto.py"),
    "testing/_events": (
        "tests/unit/test_testing_events.py",
        "tests/integration/test_testing_events_on_moto.py",
        "tests/unit/test_api_handler.py",
        "tests/unit/test_sqs_handler.py",
        "tests/unit/test_sfn_task.py",
        "tests/integration/test_producer_on_moto.py",
        "tests/integration/test_cli_on_moto.py",
    ),
    "testing/_issuer": (
        "tests/unit/test_testing_doubles.py",
        "tests/unit/test_api_handler.py",
        "tests/unit/test_jwt_attacks.py",
        "tests/unit/test_token_cache.py",
        "tests/unit/test_jwks_cache.py",
        "tests/integration/test_jwks_over_tls.py",
        "tests/integration/test_process_reset.py",
    ),
    "testing/_doubles": (
        "tests/unit/test_testing_doubles.py",
        "tests/unit/test_tracing_unit.py",
        "tests/unit/test_metrics.py",
        "tests/unit/test_api_handler.py",
        "tests/unit/test_sqs_handler.py",
        "tests/unit/test_sfn_task.py",
    ),
    "testing/_local": (
        "tests/integration/test_local_tenants.py",
        "tests/integration/test_local_tenants_files.py",
        "tests/integration/test_process_reset.py",
        "tests/integration/test_errors_name_the_fix.py",
    ),
}
# `make mutation` runs every module, in the order above (the security core first, smallest
# first), unless MODULES names others.
DEFAULT_MODULES = tuple(TESTS)

KILLED = frozenset({"killed", "timeout", "segfault", "caught by type check"})


@dataclass(frozen=True)
class Row:
    """One module's outcome. ``survived`` counts every non-equivalent mutant that was not killed
    (survivors, and mutants no test reaches)."""

    module: str
    generated: int
    killed: int
    survived: int
    equivalent: int

    @property
    def score(self) -> float | None:
        """killed / non-equivalent, or None when every mutant is equivalent (or none was made)."""
        relevant = self.generated - self.equivalent
        return self.killed / relevant if relevant else None


def parse_equivalents(text: str) -> dict[str, str]:
    """``{mutant name: reason}`` from the reviewed file: one ``name: reason`` a line; blank lines
    and ``#`` comments are ignored. A line without a reason, or a name listed twice, is an error.

    >>> parse_equivalents("# reviewed\\ntenantscope._x.x_f__mutmut_1: only a log message\\n")
    {'tenantscope._x.x_f__mutmut_1': 'only a log message'}
    """
    equivalents: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, reason = (part.strip() for part in line.partition(":"))
        if not name or " " in name or not reason:
            raise ValueError(f"line {number}: expected 'mutant name: reason', got {line!r}")
        if name in equivalents:
            raise ValueError(f"line {number}: {name} is listed twice")
        equivalents[name] = reason
    return equivalents


def parse_results(text: str) -> dict[str, str]:
    """``{mutant name: status}`` from the output of ``mutmut results --all true``."""
    statuses: dict[str, str] = {}
    for line in text.splitlines():
        name, separator, status = line.strip().partition(": ")
        if separator and "__mutmut_" in name:
            statuses[name] = status
    return statuses


def tally(module: str, statuses: Mapping[str, str], equivalents: Mapping[str, str]) -> Row:
    """The row of ``module``: a mutant listed as equivalent counts as equivalent unless a test
    killed it (then the listing is wrong, and it counts as killed)."""
    killed = {name for name, status in statuses.items() if status in KILLED}
    equivalent = {name for name in statuses if name in equivalents and name not in killed}
    return Row(
        module=module,
        generated=len(statuses),
        killed=len(killed),
        survived=len(statuses) - len(killed) - len(equivalent),
        equivalent=len(equivalent),
    )


def format_table(rows: list[Row]) -> str:
    """A Markdown table of ``rows``, the score in percent rounded down to a tenth: 99.96% is not 100%."""
    lines = [
        "| module | generated | killed | survived | equivalent | score |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        score = "n/a" if row.score is None else f"{math.floor(row.score * 1000) / 10:.1f}%"
        counts = " | ".join(str(n) for n in (row.generated, row.killed, row.survived, row.equivalent))
        lines.append(f"| `{row.module}` | {counts} | {score} |")
    return "\n".join(lines)


# What the tests read besides the package: their own folder, the development issuer, the docs
# whose examples they run.
_ALSO_COPIED = ("tests", "devtools", "docs")


def _prepare(module: str, work: Path) -> None:
    """A work directory where mutmut finds the package as ``src/tenantscope`` and its tests."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(PACKAGE, work / "src" / "tenantscope", ignore=shutil.ignore_patterns("__pycache__"))
    for folder in _ALSO_COPIED:
        shutil.copytree(ROOT / folder, work / folder, ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = (ROOT / "pyproject.toml").read_text()
    layer_path = 'pythonpath = ["layers/tenantscope", "."]'
    if layer_path not in pyproject:
        raise RuntimeError(f"pyproject.toml no longer sets {layer_path}: update devtools/mutation.py")
    selection = ", ".join(f'"{test}"' for test in TESTS[module])
    also_copy = ", ".join(f'"{folder}"' for folder in _ALSO_COPIED)
    pyproject = pyproject.replace(layer_path, 'pythonpath = ["src", "."]')
    pyproject += (
        "\n[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f'only_mutate = ["src/tenantscope/{module}.py"]\n'
        f"also_copy = [{also_copy}]\n"
        f"pytest_add_cli_args_test_selection = [{selection}]\n"
        'pytest_add_cli_args = ["-p", "devtools.mutation"]\n'
    )
    (work / "pyproject.toml").write_text(pyproject)


def pytest_collection_modifyitems(items: list[Any]) -> None:
    """A pytest hook (mutmut loads this module as a plugin): mutmut 3.7 reads ``item._nodeid``,
    which pytest 9 no longer has. mutmut 3.8 reads ``nodeid``, but needs a newer click than the
    SAM CLI's pin allows."""
    for item in items:
        item._nodeid = item.nodeid


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: Any) -> None:
    r"""A pytest hook, run before pytest's own parametrization: mutmut runs pytest many times in one
    process, and pytest keeps the ids it generated for a ``parametrize`` given ``ids`` on its mark,
    already escaped, then escapes them again on the next run (``'k\xe9'`` becomes ``'k\\xe9'``).
    Those tests are then "not found", every mutant run that names them fails to start, and mutmut
    counts each such mutant as killed. Forgetting the kept ids makes each run generate them anew."""
    for mark in metafunc.definition.iter_markers("parametrize"):
        source = getattr(mark, "_param_ids_from", None)
        if source is not None and getattr(source, "_param_ids_generated", None) is not None:
            object.__setattr__(source, "_param_ids_generated", None)


def _mutmut(work: Path, *args: str) -> str:
    """Run mutmut in ``work``: ``run`` writes its progress to ``mutmut.log`` as it goes; the other
    commands' output is returned (and logged)."""
    command = [str(Path(sys.executable).parent / "mutmut"), *args]
    with (work / "mutmut.log").open("a") as log:
        if args[0] == "run":
            result = subprocess.run(command, cwd=work, stdout=log, stderr=subprocess.STDOUT, check=False)
            output = ""
        else:
            result = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
            output = result.stdout
            log.write(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"mutmut {' '.join(args)} failed in {work}: see {work / 'mutmut.log'}")
    if args[0] == "run" and _BAD_TEST_COMMAND in (work / "mutmut.log").read_text(errors="replace"):
        # A mutant run whose pytest could not start (exit code 4: a test id not found) crashes,
        # and mutmut counts the crash as a kill: the module's score would be a lie.
        raise RuntimeError(f"mutmut could not run some tests as asked in {work}: see {work / 'mutmut.log'}")
    return output


_BAD_TEST_COMMAND = "BadTestExecutionCommandsException"


def run_module(module: str, jobs: int, equivalents: Mapping[str, str]) -> Row:
    """Mutation-test ``module``; write its survivors and their diffs for review."""
    work = WORK / module
    _prepare(module, work)
    _mutmut(work, "run", "--max-children", str(jobs))
    statuses = parse_results(_mutmut(work, "results", "--all", "true"))
    row = tally(module, statuses, equivalents)
    survivors = sorted(
        name for name, status in statuses.items() if status not in KILLED and name not in equivalents
    )
    with (work / "survivors.txt").open("w") as report:
        for name in survivors:
            report.write(_mutmut(work, "show", name) + "\n")  # headed "# <name>: <status>"
    wrongly_listed = sorted(name for name in equivalents if statuses.get(name) in KILLED)
    if wrongly_listed:
        print(f"{module}: killed, yet listed as equivalent: {', '.join(wrongly_listed)}")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("modules", nargs="*", help=f"default: {' '.join(DEFAULT_MODULES)}")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(TESTS))
    if unknown:
        parser.error(f"no test selection for {', '.join(unknown)}; known: {', '.join(sorted(TESTS))}")
    equivalents = parse_equivalents(EQUIVALENTS.read_text())
    rows = []
    for module in args.modules or DEFAULT_MODULES:
        started = time.monotonic()
        rows.append(run_module(module, args.jobs, equivalents))
        print(f"{module}: {time.monotonic() - started:.0f} s; survivors in {WORK / module / 'survivors.txt'}")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
