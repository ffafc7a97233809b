"""How a setting is resolved: explicit argument, then environment variable, then default.

The checks that keep a policy narrow (table and bucket names, the envelope windows) are in
test_policy.py, beside the policies they protect; this file holds the resolution itself, the
parsing of each kind of value, and the refusal of the local-development forms in a deployment.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import pytest

from tenantscope._config import (
    ENV,
    ISOLATION_SESSION_POLICY,
    MAX_CHAINED_SESSION_SECONDS,
    MIN_SESSION_SECONDS,
    Settings,
    TableSpec,
    get_settings,
    kept_tenants_bound,
    refuse_local_only_in_deployment,
)
from tenantscope._errors import ConfigurationError, Reason


def refusal(**load: Any) -> tuple[Reason, str]:
    """The (reason, detail) of the ConfigurationError that ``Settings.load(**load)`` raises."""
    with pytest.raises(ConfigurationError) as refused:
        Settings.load(**load)
    return refused.value.reason, refused.value.detail


# One value of each field's kind, unlike its default, and what it loads as.
ENVIRONMENT_VALUES: dict[str, tuple[str, object]] = {
    "jwt_issuer": ("https://issuer.example", "https://issuer.example"),
    "jwt_audience": ("app, admin", ("app", "admin")),
    "jwks_url": ("https://issuer.example/jwks.json", "https://issuer.example/jwks.json"),
    "tenant_claim": ("custom:tenant", "custom:tenant"),
    "jwt_algorithms": ("RS256,ES256", ("RS256", "ES256")),
    "jwt_token_use": ("access", "access"),
    "jwt_leeway_seconds": ("5", 5),
    "max_token_bytes": ("4096", 4096),
    "jwks_ttl_seconds": ("120.5", 120.5),
    "jwks_min_refetch_seconds": ("10", 10.0),
    "jwks_timeout_seconds": ("0.5", 0.5),
    "role_arn": ("arn:aws:iam::123456789012:role/t", "arn:aws:iam::123456789012:role/t"),
    "isolation": (ISOLATION_SESSION_POLICY, ISOLATION_SESSION_POLICY),
    "tables": ("orders=pk", (TableSpec("orders", "pk"),)),
    "buckets": ("files,media", ("files", "media")),
    "tenant_tag_key": ("Tenant", "Tenant"),
    "unguarded_services": ("sqs", ("sqs",)),
    "session_duration_seconds": ("1800", 1800),
    "refresh_margin_seconds": ("60", 60),
    "signing_keys": ("kms:alias/k", "kms:alias/k"),
    "signing_keys_max_age_seconds": ("60", 60.0),
    "sqs_envelope_ttl_seconds": ("600", 600),
    "sfn_envelope_ttl_seconds": ("3600", 3600),
    "clock_skew_seconds": ("5", 5),
    "replay_table": ("replay", "replay"),
    "metrics": ("per-tenant", "per-tenant"),
    "region": ("eu-west-1", "eu-west-1"),
}


def test_every_setting_has_a_value_for_these_tests() -> None:
    assert set(ENVIRONMENT_VALUES) == {f.name for f in fields(Settings)}


@pytest.mark.parametrize("name", sorted(ENVIRONMENT_VALUES))
def test_each_setting_is_read_from_its_own_variable_and_parsed(name: str) -> None:
    text, loaded = ENVIRONMENT_VALUES[name]
    variable = next(f.metadata["env"] for f in fields(Settings) if f.name == name)
    # GIVEN the setting's variable alone (surrounding blanks are not part of a value)
    settings = Settings.load(environ={variable: f"  {text} "})
    # THEN it is read, parsed, and nothing else moved from its default
    assert getattr(settings, name) == loaded
    assert loaded != getattr(Settings(), name)
    assert replace(settings, **{name: getattr(Settings(), name)}) == Settings()


def test_variable_names_are_the_documented_ones() -> None:
    assert {f.name: f.metadata["env"] for f in fields(Settings)} == {
        "jwt_issuer": "TENANTSCOPE_JWT_ISSUER",
        "jwt_audience": "TENANTSCOPE_JWT_AUDIENCE",
        "jwks_url": "TENANTSCOPE_JWKS_URL",
        "tenant_claim": "TENANTSCOPE_TENANT_CLAIM",
        "jwt_algorithms": "TENANTSCOPE_JWT_ALGORITHMS",
        "jwt_token_use": "TENANTSCOPE_JWT_TOKEN_USE",
        "jwt_leeway_seconds": "TENANTSCOPE_JWT_LEEWAY_SECONDS",
        "max_token_bytes": "TENANTSCOPE_MAX_TOKEN_BYTES",
        "jwks_ttl_seconds": "TENANTSCOPE_JWKS_TTL_SECONDS",
        "jwks_min_refetch_seconds": "TENANTSCOPE_JWKS_MIN_REFETCH_SECONDS",
        "jwks_timeout_seconds": "TENANTSCOPE_JWKS_TIMEOUT_SECONDS",
        "role_arn": "TENANTSCOPE_ROLE_ARN",
        "isolation": "TENANTSCOPE_ISOLATION",
        "tables": "TENANTSCOPE_TABLES",
        "buckets": "TENANTSCOPE_BUCKETS",
        "tenant_tag_key": "TENANTSCOPE_TENANT_TAG_KEY",
        "unguarded_services": "TENANTSCOPE_UNGUARDED_SERVICES",
        "session_duration_seconds": "TENANTSCOPE_SESSION_DURATION_SECONDS",
        "refresh_margin_seconds": "TENANTSCOPE_REFRESH_MARGIN_SECONDS",
        "signing_keys": "TENANTSCOPE_SIGNING_KEYS",
        "signing_keys_max_age_seconds": "TENANTSCOPE_SIGNING_KEYS_MAX_AGE_SECONDS",
        "sqs_envelope_ttl_seconds": "TENANTSCOPE_SQS_ENVELOPE_TTL_SECONDS",
        "sfn_envelope_ttl_seconds": "TENANTSCOPE_SFN_ENVELOPE_TTL_SECONDS",
        "clock_skew_seconds": "TENANTSCOPE_CLOCK_SKEW_SECONDS",
        "replay_table": "TENANTSCOPE_REPLAY_TABLE",
        "metrics": "TENANTSCOPE_METRICS",
        "region": "AWS_REGION",
    }


def test_the_defaults() -> None:
    settings = Settings.load(environ={})
    assert settings == Settings()
    assert (settings.jwt_issuer, settings.jwt_audience, settings.tenant_claim) == (None, (), "tenant_id")
    assert (settings.jwt_algorithms, settings.jwt_leeway_seconds, settings.max_token_bytes) == (
        ("RS256",),
        30,
        8192,
    )
    assert (settings.jwks_ttl_seconds, settings.jwks_min_refetch_seconds, settings.jwks_timeout_seconds) == (
        600.0,
        30.0,
        2.0,
    )
    assert (settings.isolation, settings.tenant_tag_key, settings.metrics) == (
        "session-tags",
        "TenantId",
        "off",
    )
    assert (settings.session_duration_seconds, settings.refresh_margin_seconds) == (3600, 300)
    assert (settings.sqs_envelope_ttl_seconds, settings.sfn_envelope_ttl_seconds) == (86400, 7 * 86400)
    assert (settings.clock_skew_seconds, settings.signing_keys_max_age_seconds) == (60, 300.0)
    assert (settings.tables, settings.buckets, settings.unguarded_services) == ((), (), ())
    assert (settings.role_arn, settings.signing_keys, settings.replay_table, settings.region) == (None,) * 4


def test_an_argument_wins_over_the_environment_and_none_leaves_it_to_the_environment() -> None:
    environ = {ENV.TENANT_CLAIM: "org", ENV.JWT_LEEWAY: "10"}
    settings = Settings.load(environ=environ, tenant_claim="team", jwt_leeway_seconds=None)
    assert (settings.tenant_claim, settings.jwt_leeway_seconds) == ("team", 10)


def test_the_process_environment_is_read_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV.TENANT_CLAIM, "org")
    assert Settings.load().tenant_claim == "org"


def test_an_empty_optional_variable_is_unset() -> None:
    assert Settings.load(environ={ENV.JWT_ISSUER: " ", ENV.ROLE_ARN: ""}).jwt_issuer is None
    assert Settings.load(environ={ENV.REPLAY_TABLE: ""}).replay_table is None


def test_string_arguments_are_parsed_as_the_environment_is() -> None:
    # A string where a tuple belongs would let `in` match substrings ("app" in "webapp").
    settings = Settings.load(environ={}, jwt_audience="app", tables="orders=pk", jwt_leeway_seconds="7")
    assert settings.jwt_audience == ("app",)
    assert settings.tables == (TableSpec("orders", "pk"),)
    assert settings.jwt_leeway_seconds == 7


def test_list_arguments_become_tuples_and_other_arguments_are_kept() -> None:
    settings = Settings.load(environ={}, jwt_audience=["app", "admin"], jwt_leeway_seconds=0)
    assert settings.jwt_audience == ("app", "admin")
    assert settings.jwt_leeway_seconds == 0


@pytest.mark.parametrize(
    "name", ["jwt_audience", "jwt_algorithms", "tables", "buckets", "unguarded_services"]
)
def test_a_collection_given_as_another_type_is_refused(name: str) -> None:
    kind = "TableSpec" if name == "tables" else "str"
    expected = (Reason.INVALID_SETTING, f"{name} must be a tuple of {kind}")
    assert refusal(environ={}, **{name: {"app"}}) == expected
    # AND made directly or by replace(), where load() parses nothing: a string is refused rather
    # than searched with `in` (an audience "api.example.com/orders" would accept "api.example.com")
    for made in (lambda: Settings(**{name: "app"}), lambda: replace(Settings(), **{name: "app"})):
        with pytest.raises(ConfigurationError) as refused:
            made()
        assert (refused.value.reason, refused.value.detail) == expected
    # AND a tuple of something else is refused too
    assert refusal(environ={}, **{name: (1,)}) == expected


def test_unknown_settings_are_refused_by_name() -> None:
    assert refusal(environ={}, tenant_claims="org", audience="app") == (
        Reason.INVALID_SETTING,
        "unknown settings: audience, tenant_claims",
    )


@pytest.mark.parametrize(
    "variable",
    [ENV.JWT_LEEWAY, ENV.MAX_TOKEN_BYTES, ENV.JWKS_TTL, ENV.SESSION_DURATION, ENV.SIGNING_KEYS_MAX_AGE],
)
def test_a_bad_number_is_refused_naming_the_variable_not_the_value(variable: str) -> None:
    assert refusal(environ={variable: "secret-looking-value"}) == (
        Reason.INVALID_SETTING,
        f"{variable} is not a valid value",
    )


# (variable, lowest, highest): each number's range; a value outside it is refused by name.
NUMBER_RANGES = [
    (ENV.CLOCK_SKEW, "0", "900"),
    (ENV.JWT_LEEWAY, "0", "900"),
    (ENV.MAX_TOKEN_BYTES, "1", "65536"),
    (ENV.JWKS_TTL, "1", "86400"),
    (ENV.JWKS_MIN_REFETCH, "1", "3600"),
    (ENV.JWKS_TIMEOUT, "0.1", "60"),
    (ENV.SIGNING_KEYS_MAX_AGE, "1", "86400"),
]


@pytest.mark.parametrize(("variable", "lowest", "highest"), NUMBER_RANGES)
def test_a_number_at_either_end_of_its_range_is_accepted(variable: str, lowest: str, highest: str) -> None:
    field_name = next(f.name for f in fields(Settings) if f.metadata["env"] == variable)
    for value in (lowest, highest):
        assert getattr(Settings.load(environ={variable: value}), field_name) == float(value)


@pytest.mark.parametrize(("variable", "lowest", "highest"), NUMBER_RANGES)
def test_a_number_outside_its_range_is_refused_by_name(variable: str, lowest: str, highest: str) -> None:
    # GIVEN values that float() or int() reads but that would switch a protection off: a NaN or
    # infinite age never ends, so a withdrawn key would verify for the container's life; a
    # refetch interval of 0 lets every unknown kid fetch the JWKS; a leeway of a day accepts
    # a token expired yesterday
    below = str(float(lowest) - 1) if "." in lowest else str(int(lowest) - 1)
    above = str(float(highest) + 1) if "." in highest else str(int(highest) + 1)
    candidates = [below, above] + (["nan", "inf", "-inf"] if variable not in INTEGER_VARIABLES else [])
    for value in candidates:
        # THEN each is refused, naming the variable and its range
        assert refusal(environ={variable: value}) == (
            Reason.INVALID_SETTING,
            f"{variable} must be between {float(lowest):g} and {float(highest):g}",
        ), value


INTEGER_VARIABLES = (ENV.CLOCK_SKEW, ENV.JWT_LEEWAY, ENV.MAX_TOKEN_BYTES)


def test_a_range_is_checked_however_the_settings_are_made() -> None:
    with pytest.raises(ConfigurationError, match="TENANTSCOPE_JWKS_TTL_SECONDS must be between"):
        replace(Settings(), jwks_ttl_seconds=float("inf"))
    with pytest.raises(ConfigurationError, match="TENANTSCOPE_JWKS_MIN_REFETCH_SECONDS must be between"):
        Settings.load(environ={}, jwks_min_refetch_seconds=0)
    with pytest.raises(ConfigurationError, match="TENANTSCOPE_JWT_LEEWAY_SECONDS must be between"):
        Settings(jwt_leeway_seconds=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="TENANTSCOPE_SIGNING_KEYS_MAX_AGE_SECONDS must be between"):
        Settings(signing_keys_max_age_seconds="300")  # type: ignore[arg-type]


def test_the_repr_of_settings_holds_no_signing_key() -> None:
    # An inline: ring (tests, local runs) is key material; pytest and debug logs print reprs.
    settings = Settings.load(
        environ={ENV.SIGNING_KEYS: 'inline:{"active":"k1","keys":{"k1":"S2V5TWF0ZXJpYWw="}}'}
    )
    assert "S2V5TWF0ZXJpYWw=" not in repr(settings)
    assert "S2V5TWF0ZXJpYWw=" not in str(settings)
    assert settings.signing_keys is not None


def test_an_unknown_isolation_strategy_is_refused() -> None:
    expected = (Reason.INVALID_SETTING, "TENANTSCOPE_ISOLATION must be one of session-tags, session-policy")
    assert refusal(environ={ENV.ISOLATION: "none"}) == expected
    # AND given as an argument that is not a string, it is still checked
    assert refusal(environ={}, isolation=1) == expected


@pytest.mark.parametrize("value", ["off", "on", "per-tenant"])
def test_each_metrics_mode_is_accepted(value: str) -> None:
    assert Settings.load(environ={ENV.METRICS: value}).metrics == value


@pytest.mark.parametrize("value", ["yes", "ON", "per_tenant", "none"])
def test_an_unknown_metrics_mode_is_refused(value: str) -> None:
    assert refusal(environ={ENV.METRICS: value}) == (
        Reason.INVALID_SETTING,
        "TENANTSCOPE_METRICS must be one of off, on, per-tenant",
    )


def test_tables_name_their_partition_keys_and_their_indexes_keys() -> None:
    settings = Settings.load(
        environ={ENV.TABLES: " orders = pk , orders/gsi2=g2, orders / gsi1 = g1 ,,audit"}
    )
    assert settings.tables == (
        TableSpec("orders", "pk", (("gsi1", "g1"), ("gsi2", "g2"))),
        TableSpec("audit"),
    )
    orders = settings.table("orders")
    assert orders is not None and orders.partition_key == "pk"
    assert (orders.index_key("gsi1"), orders.index_key("gsi2"), orders.index_key("gsi3")) == (
        "g1",
        "g2",
        None,
    )
    assert settings.table("audit") == TableSpec("audit")
    assert settings.table("other") is None


def test_an_index_entry_first_makes_its_table_and_a_later_key_is_added() -> None:
    settings = Settings.load(environ={ENV.TABLES: "orders/gsi1=g1,orders=pk"})
    assert settings.tables == (TableSpec("orders", "pk", (("gsi1", "g1"),)),)


@pytest.mark.parametrize("entry", ["orders/gsi1", "orders/gsi1= "])
def test_an_index_entry_without_its_key_is_refused(entry: str) -> None:
    assert refusal(environ={ENV.TABLES: f"orders=pk,{entry}"}) == (
        Reason.INVALID_SETTING,
        f"TENANTSCOPE_TABLES: index entry {entry.strip()!r} needs '=<partition key>'",
    )


def test_a_table_spec_takes_its_index_keys_as_a_mapping_or_pairs_and_keeps_them_sorted() -> None:
    assert TableSpec("orders", "pk", {"gsi2": "g2", "gsi1": "g1"}) == TableSpec(
        "orders", "pk", (("gsi2", "g2"), ("gsi1", "g1"))
    )
    assert TableSpec("orders", index_partition_keys={"gsi2": "g2", "gsi1": "g1"}).index_partition_keys == (
        ("gsi1", "g1"),
        ("gsi2", "g2"),
    )
    hash(TableSpec("orders", index_partition_keys={"gsi1": "g1"}))


@pytest.mark.parametrize(
    ("duration", "margin"),
    [(3600, 3600), (900, 900), (600, 900), (7200, 3600)],
)
def test_a_refresh_margin_as_long_as_the_session_is_refused(duration: int, margin: int) -> None:
    # The session requested is clamped to STS's minimum and role chaining's cap: the margin is
    # compared with what is requested, or every credential would be refreshed at once.
    environ = {ENV.SESSION_DURATION: str(duration), ENV.REFRESH_MARGIN: str(margin)}
    assert refusal(environ=environ) == (
        Reason.INVALID_SETTING,
        "TENANTSCOPE_REFRESH_MARGIN_SECONDS must be shorter than the session duration",
    )


def test_a_negative_refresh_margin_is_refused() -> None:
    # It would serve cached credentials for that long after they expired.
    expected = (Reason.INVALID_SETTING, "TENANTSCOPE_REFRESH_MARGIN_SECONDS must be at least 0")
    assert refusal(environ={ENV.REFRESH_MARGIN: "-600"}) == expected
    with pytest.raises(ConfigurationError) as refused:
        replace(Settings(), refresh_margin_seconds=-1)
    assert (refused.value.reason, refused.value.detail) == expected
    assert Settings.load(environ={ENV.REFRESH_MARGIN: "0"}).refresh_margin_seconds == 0


def test_a_refresh_margin_shorter_than_the_session_is_accepted() -> None:
    settings = Settings.load(environ={ENV.SESSION_DURATION: "900", ENV.REFRESH_MARGIN: "899"})
    assert (settings.session_seconds, settings.refresh_margin_seconds) == (MIN_SESSION_SECONDS, 899)
    assert (
        Settings.load(environ={ENV.SESSION_DURATION: "7200"}).session_seconds == MAX_CHAINED_SESSION_SECONDS
    )


def test_equal_settings_hash_alike_and_the_hash_is_kept() -> None:
    a, b = Settings.load(environ={ENV.TABLES: "orders=pk"}), Settings.load(environ={ENV.TABLES: "orders=pk"})
    assert a == b and hash(a) == hash(b)
    assert hash(a) == hash(a)
    assert a.__dict__["_hash"] == hash(b)
    assert hash(replace(a, tenant_claim="org")) != hash(a)


def test_the_process_settings_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV.TENANT_CLAIM, "org")
    first = get_settings()
    monkeypatch.setenv(ENV.TENANT_CLAIM, "team")
    assert get_settings() is first
    assert first.tenant_claim == "org"


LOCAL_ONLY = (Reason.LOCAL_ONLY_SETTING, "TENANTSCOPE_SIGNING_KEYS=inline:... is not for a deployed function")


@pytest.mark.parametrize("sam_local", [None, "false", "1", ""])
def test_a_local_only_form_is_refused_in_a_deployed_function(
    monkeypatch: pytest.MonkeyPatch, sam_local: str | None
) -> None:
    # GIVEN a function running in Lambda, not under sam local
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-api")
    if sam_local is None:
        monkeypatch.delenv("AWS_SAM_LOCAL", raising=False)
    else:
        monkeypatch.setenv("AWS_SAM_LOCAL", sam_local)
    # THEN a local-development form of a setting is refused, naming the setting and the form
    with pytest.raises(ConfigurationError) as refused:
        refuse_local_only_in_deployment(ENV.SIGNING_KEYS, "inline:")
    assert (refused.value.reason, refused.value.detail) == LOCAL_ONLY


def test_a_local_only_form_is_accepted_under_sam_local_and_outside_lambda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-api")
    monkeypatch.setenv("AWS_SAM_LOCAL", "true")
    refuse_local_only_in_deployment(ENV.SIGNING_KEYS, "inline:")
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
    monkeypatch.delenv("AWS_SAM_LOCAL")
    refuse_local_only_in_deployment(ENV.SIGNING_KEYS, "inline:")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "")
    refuse_local_only_in_deployment(ENV.SIGNING_KEYS, "inline:")


@pytest.mark.parametrize(
    ("memory_mb", "kept"),
    # Below 8 MB (no Lambda function has so little): still one tenant, never none
    [("128", 32), ("512", 128), ("1023", 255), ("1024", 256), ("10240", 256), ("7", 1), ("0", 1)],
)
def test_a_function_keeps_one_tenant_per_4_mb_of_its_memory_and_256_at_most(
    memory_mb: str, kept: int
) -> None:
    assert kept_tenants_bound({ENV.LAMBDA_MEMORY: memory_mb}) == kept


@pytest.mark.parametrize("memory_mb", ["", "abc", "-512", "\u0662\u0665\u0666"])
def test_outside_lambda_256_tenants_are_kept(memory_mb: str) -> None:
    assert kept_tenants_bound({}) == 256
    # AND a memory size Lambda would not set is no size at all (Arabic-Indic digits included)
    assert kept_tenants_bound({ENV.LAMBDA_MEMORY: memory_mb}) == 256


def test_an_explicit_bound_wins_over_the_memory_up_to_the_credentials_kept() -> None:
    assert kept_tenants_bound({ENV.MAX_KEPT_TENANTS: " 8 ", ENV.LAMBDA_MEMORY: "10240"}) == 8
    assert kept_tenants_bound({ENV.MAX_KEPT_TENANTS: "1000", ENV.LAMBDA_MEMORY: "128"}) == 1000
    assert kept_tenants_bound({ENV.MAX_KEPT_TENANTS: "1"}) == 1
    assert kept_tenants_bound({ENV.MAX_KEPT_TENANTS: "1024"}) == 1024
    # AND an empty value is unset, as for every setting
    assert kept_tenants_bound({ENV.MAX_KEPT_TENANTS: " ", ENV.LAMBDA_MEMORY: "128"}) == 32


OUT_OF_BOUNDS = (
    "TENANTSCOPE_MAX_KEPT_TENANTS must be between 1 and 1024, the tenants whose credentials are kept"
)


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("0", OUT_OF_BOUNDS),
        ("-3", OUT_OF_BOUNDS),
        # More sessions than credentials kept: a returning tenant would cost an STS call
        ("1025", OUT_OF_BOUNDS),
        ("many", "TENANTSCOPE_MAX_KEPT_TENANTS is not a valid value"),
    ],
)
def test_a_bound_outside_one_to_the_credentials_kept_or_no_number_is_refused(value: str, detail: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        kept_tenants_bound({ENV.MAX_KEPT_TENANTS: value})
    assert (refused.value.reason, refused.value.detail) == (Reason.INVALID_SETTING, detail)


def test_the_bound_is_read_from_the_process_environment_when_none_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV.MAX_KEPT_TENANTS, raising=False)
    monkeypatch.setenv(ENV.LAMBDA_MEMORY, "256")
    assert kept_tenants_bound() == 64
