"""The tenant id grammar."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tenantscope import InvalidTenantId, Reason, validate_tenant_id
from tenantscope._tenant_id import TENANT_ID_FORMAT, TENANT_ID_PATTERN


@pytest.mark.parametrize("value", ["ab", "acme", "acme-corp", "a1", "0-0", "a" * 64, "x" + "-" * 62 + "y"])
def test_valid_ids_are_returned_unchanged(value: str) -> None:
    assert validate_tenant_id(value) == value


class StrSubclass(str):
    pass


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("*", id="wildcard-star"),
        pytest.param("acme*", id="trailing-star"),
        pytest.param("ac?e", id="wildcard-question"),
        pytest.param("acme#x", id="key-delimiter"),
        pytest.param("acme:x", id="colon"),
        pytest.param("acme/x", id="slash"),
        pytest.param("acme\\x", id="backslash"),
        pytest.param("ac..me", id="dot-dot"),
        pytest.param("acme.x", id="dot"),
        pytest.param("ac me", id="space"),
        pytest.param("acme\t", id="tab"),
        pytest.param("acme\n", id="trailing-newline"),
        pytest.param("acme\x00", id="nul"),
        pytest.param("ac\x7fme", id="del"),
        pytest.param("\u0430cme", id="cyrillic-a-lookalike"),
        pytest.param("acme\u200b", id="zero-width-space"),
        pytest.param("ａｃｍｅ", id="fullwidth"),
        pytest.param("ACME", id="uppercase"),
        pytest.param("-acme", id="leading-hyphen"),
        pytest.param("acme-", id="trailing-hyphen"),
        pytest.param("a", id="too-short"),
        pytest.param("", id="empty"),
        pytest.param("a" * 65, id="too-long"),
        pytest.param(None, id="none"),
        pytest.param(42, id="int"),
        pytest.param(b"acme", id="bytes"),
        pytest.param(["acme"], id="list"),
        pytest.param(StrSubclass("acme"), id="str-subclass"),
    ],
)
def test_invalid_ids_raise(value: object) -> None:
    with pytest.raises(InvalidTenantId) as raised:
        validate_tenant_id(value)
    # The log says which of the two refusals it was: a string outside the grammar, or no string.
    assert raised.value.reason is Reason.INVALID_TENANT_ID
    assert raised.value.detail == (
        TENANT_ID_FORMAT if type(value) is str else f"not a string; {TENANT_ID_FORMAT}"
    )
    # The refusal never echoes the value: it may be an attack payload bound for a log.
    assert repr(value) not in str(raised.value) or value == ""


def assert_safe_for_policies_keys_and_session_names(accepted: str) -> None:
    assert re.fullmatch(TENANT_ID_PATTERN, accepted)
    assert 2 <= len(accepted) <= 64  # RoleSessionName and SourceIdentity bounds
    assert not set(accepted) & set("*?#:/\\. \t\r\n")
    assert accepted.isascii() and accepted == accepted.lower()


@hypothesis_settings(max_examples=300, database=None, derandomize=True, deadline=None)
@given(st.from_regex(TENANT_ID_PATTERN, fullmatch=True))
def test_every_id_of_the_grammar_is_accepted_and_safe(value: str) -> None:
    assert validate_tenant_id(value) == value
    assert_safe_for_policies_keys_and_session_names(value)


# Near misses (the grammar's characters and the ones that matter in a policy, a key or a session
# name, in lengths around the bounds) and arbitrary text.
NEAR_MISSES = st.from_regex(r"[a-zA-Z0-9\-_.#*?:/\\ \n\u00e9\u0131]{0,70}", fullmatch=True)


@hypothesis_settings(max_examples=500, database=None, derandomize=True, deadline=None)
@given(st.one_of(NEAR_MISSES, st.text(max_size=80)))
def test_anything_accepted_is_safe_for_policies_keys_and_session_names(value: str) -> None:
    try:
        accepted = validate_tenant_id(value)
    except InvalidTenantId:
        assert re.fullmatch(TENANT_ID_PATTERN, value) is None  # only what the grammar refuses
        return
    assert accepted == value
    assert_safe_for_policies_keys_and_session_names(accepted)
