"""docs/api.md lists exactly the public names: each name of ``tenantscope.__all__`` once, and nothing else."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import tenantscope

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
# The first cell of a table row: one name, or several separated by commas, each in backquotes.
FIRST_CELL = re.compile(r"^\| ((?:`\w+`(?:, )?)+) \|", re.MULTILINE)


def documented_names() -> Counter[str]:
    return Counter(
        name
        for cell in FIRST_CELL.findall(API_DOC.read_text(encoding="utf-8"))
        for name in re.findall(r"`(\w+)`", cell)
    )


def test_every_public_name_is_documented_once_and_nothing_else_is() -> None:
    names = documented_names()
    assert sorted(names) == sorted(tenantscope.__all__)
    assert [name for name, count in names.items() if count > 1] == []


def test_the_table_reader_finds_single_and_grouped_names() -> None:
    # GIVEN the rows the page is made of WHEN read THEN each name in a first cell is found
    rows = "| `Name` | a |\n| `Tracer`, `Span` | b |\n| Name | c |\n"
    assert [re.findall(r"`(\w+)`", cell) for cell in FIRST_CELL.findall(rows)] == [
        ["Name"],
        ["Tracer", "Span"],
    ]
