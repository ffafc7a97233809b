"""`make mutation`'s arithmetic and its reviewed file: what it counts, and what it refuses to read.

mutmut itself is not run here (a module takes minutes); its output format is.
"""

from __future__ import annotations

import pytest

from devtools.mutation import (
    EQUIVALENTS,
    TESTS,
    Row,
    format_table,
    parse_equivalents,
    parse_results,
    tally,
)

# As `mutmut results --all true` prints them (mutmut 3.7).
RESULTS = """\
    tenantscope._jwt.x__parse_keys__mutmut_1: killed
    tenantscope._jwt.x__parse_keys__mutmut_2: survived
    tenantscope._jwt.x__parse_keys__mutmut_3: timeout
    tenantscope._jwt.x__parse_keys__mutmut_4: no tests
    tenantscope._jwt.xǁJwksCacheǁget__mutmut_1: survived
    tenantscope._jwt.xǁJwksCacheǁget__mutmut_2: killed
"""


def test_results_are_read_by_mutant_name() -> None:
    assert parse_results(RESULTS + "\n⠋ Running\n12.00 mutations/second\n") == {
        "tenantscope._jwt.x__parse_keys__mutmut_1": "killed",
        "tenantscope._jwt.x__parse_keys__mutmut_2": "survived",
        "tenantscope._jwt.x__parse_keys__mutmut_3": "timeout",
        "tenantscope._jwt.x__parse_keys__mutmut_4": "no tests",
        "tenantscope._jwt.xǁJwksCacheǁget__mutmut_1": "survived",
        "tenantscope._jwt.xǁJwksCacheǁget__mutmut_2": "killed",
    }


def test_the_score_is_killed_over_the_mutants_that_are_not_equivalent() -> None:
    # GIVEN six mutants: two killed, one timed out (killed), one survivor listed as equivalent,
    # one unlisted survivor and one that no test reaches
    equivalents = {"tenantscope._jwt.xǁJwksCacheǁget__mutmut_1": "only a log message"}
    # WHEN they are counted
    row = tally("_jwt", parse_results(RESULTS), equivalents)
    # THEN the equivalent is set aside, and the survivor and the unreached mutant count against the score
    assert row == Row("_jwt", generated=6, killed=3, survived=2, equivalent=1)
    assert row.score == 3 / 5


def test_a_killed_mutant_listed_as_equivalent_counts_as_killed() -> None:
    equivalents = {"tenantscope._jwt.x__parse_keys__mutmut_1": "wrongly listed"}
    row = tally("_jwt", parse_results(RESULTS), equivalents)
    assert (row.killed, row.equivalent, row.survived) == (3, 0, 3)


def test_a_module_whose_mutants_are_all_equivalent_has_no_score() -> None:
    statuses = {"tenantscope._x.x_f__mutmut_1": "survived"}
    row = tally("_x", statuses, {"tenantscope._x.x_f__mutmut_1": "same behaviour"})
    assert row.score is None
    assert "| `_x` | 1 | 0 | 0 | 1 | n/a |" in format_table([row])


def test_the_table_has_a_row_per_module_with_the_score_rounded_down() -> None:
    rows = [Row("_tenant_id", 11, 11, 0, 0), Row("_jwt", 300, 190, 10, 3), Row("_x", 2001, 2000, 1, 0)]
    assert format_table(rows).splitlines() == [
        "| module | generated | killed | survived | equivalent | score |",
        "|---|---:|---:|---:|---:|---:|",
        "| `_tenant_id` | 11 | 11 | 0 | 0 | 100.0% |",
        "| `_jwt` | 300 | 190 | 10 | 3 | 63.9% |",
        "| `_x` | 2001 | 2000 | 1 | 0 | 99.9% |",
    ]


def test_equivalents_are_one_reviewed_line_each_with_comments_and_blank_lines_ignored() -> None:
    text = """
    # reviewed
    tenantscope._jwt.x__parse_keys__mutmut_2: the default "sig" is only read when "use" is absent

    tenantscope._jwt.xǁJwksCacheǁget__mutmut_1: a second lookup of the same key: same result
    """
    assert parse_equivalents(text) == {
        "tenantscope._jwt.x__parse_keys__mutmut_2": 'the default "sig" is only read when "use" is absent',
        "tenantscope._jwt.xǁJwksCacheǁget__mutmut_1": "a second lookup of the same key: same result",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tenantscope._jwt.x_f__mutmut_1", "expected 'mutant name: reason'"),
        ("tenantscope._jwt.x_f__mutmut_1:   ", "expected 'mutant name: reason'"),
        (": no name", "expected 'mutant name: reason'"),
        ("two words: reason", "expected 'mutant name: reason'"),
        ("m__mutmut_1: a\nm__mutmut_1: b", "line 2: m__mutmut_1 is listed twice"),
    ],
)
def test_an_equivalent_without_a_reason_or_listed_twice_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_equivalents(text)


def test_the_reviewed_file_names_mutants_of_tested_modules_only() -> None:
    equivalents = parse_equivalents(EQUIVALENTS.read_text())
    # tenantscope.<module>.<mutant>, where a module in a subpackage is dotted (testing._events)
    modules = {name.removeprefix("tenantscope.").rpartition(".")[0] for name in equivalents}
    assert modules <= {module.replace("/", ".") for module in TESTS}
    assert all(name.startswith("tenantscope.") and "__mutmut_" in name for name in equivalents)
