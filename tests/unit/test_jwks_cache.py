"""JwksCache: lifespan, bounded refetch on unknown kids, last-good on failure; UrlJwksSource schemes and size.

A fake clock drives every time-dependent case: nothing sleeps and nothing asserts on elapsed time.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tenantscope import ConfigurationError, KeysUnavailable, Reason, _jwt, api_handler, current_tenant
from tenantscope._config import Settings
from tenantscope._credentials import CredentialVendor
from tenantscope._jwt import JwksCache, StaticJwksSource, UrlJwksSource, _parse_keys, jwks_cache_for
from tenantscope.testing import LocalIssuer
from tests.conftest import LambdaContext, http_api_event
from tests.fakes import FakeClock, forgotten_after_each_load

TTL = 600.0
INTERVAL = 30.0
MAX_JWKS_BYTES = 256 * 1024


@pytest.fixture
def cache(jwks_source: StaticJwksSource, clock: FakeClock) -> JwksCache:
    return JwksCache(jwks_source, ttl=TTL, min_refetch_interval=INTERVAL, clock=clock)


@pytest.fixture(scope="module")
def rotated() -> LocalIssuer:
    """The issuer's next signing key, published under a new kid."""
    return LocalIssuer.generate(kid="dev-key-2")


# --- lifespan --------------------------------------------------------------------------------------


def test_keys_are_cached_for_the_ttl_and_refetched_after(
    cache: JwksCache, jwks_source: StaticJwksSource, clock: FakeClock, issuer: LocalIssuer
) -> None:
    # GIVEN a first lookup, which fetches
    assert cache.get(issuer.kid) is not None
    assert jwks_source.fetches == 1
    # WHEN the key is used again until the TTL ends
    clock.advance(TTL)
    assert cache.get(issuer.kid) is not None
    # THEN it came from the cache
    assert jwks_source.fetches == 1
    # AND once the TTL has passed the next use refetches
    clock.advance(1)
    assert cache.get(issuer.kid) is not None
    assert jwks_source.fetches == 2


def test_a_key_removed_by_rotation_disappears_after_the_ttl(
    cache: JwksCache,
    jwks_source: StaticJwksSource,
    clock: FakeClock,
    issuer: LocalIssuer,
    rotated: LocalIssuer,
) -> None:
    assert cache.get(issuer.kid) is not None
    # GIVEN the issuer rotated: the old key is withdrawn, a new one published
    jwks_source.document = rotated.jwks()
    # WHEN the TTL passes
    clock.advance(TTL + 1)
    # THEN the old kid is unknown and the new one is found
    assert cache.get(issuer.kid) is None
    assert cache.get(rotated.kid) is not None
    assert jwks_source.fetches == 2


# --- unknown kids ----------------------------------------------------------------------------------


def test_flood_of_unknown_kids_fetches_at_most_once_per_interval(
    cache: JwksCache, jwks_source: StaticJwksSource, clock: FakeClock
) -> None:
    # GIVEN a cold cache
    # WHEN 1,000 unknown kids arrive at the same moment
    assert all(cache.get(f"random-{n}") is None for n in range(1000))
    # THEN the source was fetched once
    assert jwks_source.fetches == 1
    # AND each later interval's flood costs at most one more fetch
    for interval in range(1, 6):
        clock.advance(INTERVAL)
        assert all(cache.get(f"random-{interval}-{n}") is None for n in range(100))
        assert jwks_source.fetches == 1 + interval


def test_flood_just_before_the_interval_ends_fetches_nothing(
    cache: JwksCache, jwks_source: StaticJwksSource, clock: FakeClock, issuer: LocalIssuer
) -> None:
    assert cache.get(issuer.kid) is not None
    clock.advance(INTERVAL - 0.001)
    assert all(cache.get(f"random-{n}") is None for n in range(100))
    assert jwks_source.fetches == 1


def test_new_kid_is_found_once_the_interval_has_passed(
    cache: JwksCache,
    jwks_source: StaticJwksSource,
    clock: FakeClock,
    issuer: LocalIssuer,
    rotated: LocalIssuer,
) -> None:
    # GIVEN keys fetched before the issuer published a new kid
    assert cache.get(issuer.kid) is not None
    jwks_source.document = {"keys": [issuer.jwk(), rotated.jwk()]}
    # WHEN the new kid is asked for within the interval, it is not refetched for yet
    clock.advance(INTERVAL / 2)
    assert cache.get(rotated.kid) is None
    assert jwks_source.fetches == 1
    # THEN after the interval the unknown kid triggers a refetch that finds it
    clock.advance(INTERVAL / 2)
    assert cache.get(rotated.kid) is not None
    assert jwks_source.fetches == 2
    # AND the old key is still there
    assert cache.get(issuer.kid) is not None
    assert jwks_source.fetches == 2


def test_concurrent_unknown_kids_make_a_single_fetch(cache: JwksCache, jwks_source: StaticJwksSource) -> None:
    # GIVEN 16 threads that ask for unknown kids at the same (fake) instant
    barrier = threading.Barrier(16)
    results: list[object] = []

    def ask(n: int) -> None:
        barrier.wait()
        results.append(cache.get(f"random-{n}"))

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN they all miss and the source was fetched once
    assert results == [None] * 16
    assert jwks_source.fetches == 1


# --- failures --------------------------------------------------------------------------------------


def test_failed_fetch_keeps_the_last_good_keys_even_after_the_ttl(
    cache: JwksCache, jwks_source: StaticJwksSource, clock: FakeClock, issuer: LocalIssuer
) -> None:
    # GIVEN keys fetched once
    good = cache.get(issuer.kid)
    assert good is not None
    # WHEN the source fails and the TTL passes, again and again
    jwks_source.fail = True
    for _ in range(3):
        clock.advance(TTL + 1)
        # THEN the last good key is still served
        assert cache.get(issuer.kid) is good
    assert jwks_source.fetches == 4


def test_a_kid_missing_from_a_key_set_whose_refetch_failed_is_an_outage(
    cache: JwksCache,
    jwks_source: StaticJwksSource,
    clock: FakeClock,
    issuer: LocalIssuer,
    rotated: LocalIssuer,
) -> None:
    # GIVEN keys fetched before the issuer published its next key, and the JWKS URL down since
    cache.get(issuer.kid)
    jwks_source.document = {"keys": [*issuer.jwks()["keys"], *rotated.jwks()["keys"]]}
    jwks_source.fail = True
    # WHILE the key set is within its TTL, a kid it lacks is no key: the token is refused (401)
    clock.advance(TTL - 1)
    assert cache.get(rotated.kid) is None
    clock.advance(1)  # a key set lives its TTL whole
    assert cache.get(rotated.kid) is None
    # WHEN the key set is due a refetch that fails THEN the new kid cannot be judged: an outage (503)
    clock.advance(1)
    with pytest.raises(KeysUnavailable) as outage:
        cache.get(rotated.kid)
    assert outage.value.reason is Reason.ISSUER_KEYS_UNAVAILABLE
    assert cache.get(issuer.kid) is not None  # a known kid still verifies on the last good keys
    # AND once the URL answers, the new key is found
    jwks_source.fail = False
    clock.advance(INTERVAL)
    assert cache.get(rotated.kid) is not None


def test_failing_source_is_retried_at_a_bounded_rate(
    cache: JwksCache, jwks_source: StaticJwksSource, clock: FakeClock, issuer: LocalIssuer
) -> None:
    # GIVEN a source that is down from the start
    jwks_source.fail = True
    # WHEN many requests arrive within one second
    for _ in range(100):
        # THEN each is an outage (503), not a bad token: no key set has ever loaded
        with pytest.raises(KeysUnavailable) as outage:
            cache.get(issuer.kid)
        assert outage.value.reason is Reason.ISSUER_KEYS_UNAVAILABLE
    # AND the source was tried once; until a first load it is retried every second
    assert jwks_source.fetches == 1
    clock.advance(1.0)
    with pytest.raises(KeysUnavailable):
        cache.get(issuer.kid)
    assert jwks_source.fetches == 2
    # AND once it recovers, the next try finds the key
    jwks_source.fail = False
    clock.advance(1.0)
    assert cache.get(issuer.kid) is not None
    assert jwks_source.fetches == 3


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({}, id="no-keys"),
        pytest.param({"keys": None}, id="keys-null"),
        pytest.param({"keys": {"kid": "x"}}, id="keys-object"),
        pytest.param({"keys": "dev-key-1"}, id="keys-string"),
    ],
)
def test_broken_document_keeps_the_last_good_keys(
    cache: JwksCache,
    jwks_source: StaticJwksSource,
    clock: FakeClock,
    issuer: LocalIssuer,
    document: dict[str, Any],
) -> None:
    good = cache.get(issuer.kid)
    assert good is not None
    jwks_source.document = document
    clock.advance(TTL + 1)
    assert cache.get(issuer.kid) is good
    assert jwks_source.fetches == 2


# --- preload ---------------------------------------------------------------------------------------


def test_preload_fetches_once_and_later_lookups_use_the_cache(
    cache: JwksCache, jwks_source: StaticJwksSource, issuer: LocalIssuer
) -> None:
    cache.preload()
    assert jwks_source.fetches == 1
    assert cache.get(issuer.kid) is not None
    assert jwks_source.fetches == 1


def test_preload_swallows_errors(
    cache: JwksCache,
    jwks_source: StaticJwksSource,
    clock: FakeClock,
    issuer: LocalIssuer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a source that is down at cold start
    jwks_source.fail = True
    # WHEN the keys are preloaded
    with caplog.at_level(logging.WARNING, logger="tenantscope"):
        cache.preload()
    # THEN nothing is raised, the failure is logged, and the key is found once the source is back
    assert jwks_source.fetches == 1
    assert "JWKS fetch failed" in caplog.text
    jwks_source.fail = False
    clock.advance(INTERVAL)
    assert cache.get(issuer.kid) is not None
    assert jwks_source.fetches == 2


# --- which keys are kept ---------------------------------------------------------------------------


def test_only_usable_signing_keys_with_a_kid_are_kept(
    issuer: LocalIssuer, rotated: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a JWKS mixing one good key with keys that must be skipped
    jwk = issuer.jwk()
    document = {
        "keys": [
            jwk,
            {**rotated.jwk(), "kid": "use-null", "use": None},
            {**jwk, "kid": "enc-key", "use": "enc"},
            {**jwk, "kid": "encrypt-ops", "key_ops": ["encrypt", "wrapKey"]},
            {**jwk, "kid": "ops-not-a-list", "key_ops": "verify"},
            {**jwk, "kid": "no-ops", "key_ops": []},
            {k: v for k, v in jwk.items() if k != "kid"},
            {**jwk, "kid": 123},
            {**jwk, "kid": ""},
            {**jwk, "kid": "has space"},
            {**jwk, "kid": "x" * 129},
            {"kty": "XYZ", "kid": "unknown-kty"},
            {"kty": "RSA", "kid": "rsa-without-e", "n": jwk["n"]},
            {"kty": "EC", "kid": "ec-not-on-curve", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "oct", "kid": "oct-without-k"},  # PyJWK raises KeyError
            {**jwk, "kid": "alg-none", "alg": "none"},  # PyJWK raises NotImplementedError
            {**jwk, "kid": "alg-list", "alg": ["RS256"]},  # PyJWK raises TypeError
            {**jwk, "kid": "alg-mismatch", "alg": "ES256"},
            "not-an-object",
            None,
        ]
    }
    cache = JwksCache(StaticJwksSource(document), clock=FakeClock())
    # WHEN the keys are loaded
    cache.preload()
    # THEN the good key is usable and every other entry was skipped, not fatal to the set
    key = cache.get(issuer.kid)
    assert key is not None
    assert key.algorithm_name == "RS256"
    for kid in (
        "enc-key",
        "encrypt-ops",
        "ops-not-a-list",
        "no-ops",
        "use-null",
        "unknown-kty",
        "rsa-without-e",
        "ec-not-on-curve",
        "oct-without-k",
        "alg-none",
        "alg-list",
        "alg-mismatch",
        "has space",
        "x" * 129,
        "",
    ):
        assert cache.get(kid) is None, kid
    # AND each key PyJWK could not read was skipped with a warning that shows none of it
    assert "tenantscope: skipped an unusable JWKS key" in caplog.messages


def test_keys_after_skipped_entries_are_still_read(issuer: LocalIssuer) -> None:
    # GIVEN a JWKS whose good key comes after each kind of entry that is skipped
    jwk = issuer.jwk()
    skipped = [
        {**jwk, "kid": "enc-key", "use": "enc"},
        {**jwk, "kid": "has space"},
        {"kty": "XYZ", "kid": "k"},
    ]
    cache = JwksCache(StaticJwksSource({"keys": [*skipped, jwk]}), clock=FakeClock())
    # THEN the good key is found
    assert cache.get(issuer.kid) is not None


def test_a_document_without_a_keys_list_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"^JWKS has no keys list$"):
        _parse_keys({"keys": {}})
    jwks_source = StaticJwksSource({"keys": []})
    jwks_source.fail = True
    with pytest.raises(OSError, match=r"^JWKS source unavailable$"):
        jwks_source.fetch()


def test_key_without_use_is_a_signing_key(issuer: LocalIssuer) -> None:
    jwk = {k: v for k, v in issuer.jwk().items() if k != "use"}
    cache = JwksCache(StaticJwksSource({"keys": [jwk]}), clock=FakeClock())
    assert cache.get(issuer.kid) is not None


def test_a_key_without_key_ops_as_identity_providers_publish_it_is_a_signing_key(issuer: LocalIssuer) -> None:
    # Cognito's and most providers' JWKS carry no key_ops (PyJWT's to_jwk adds ["verify"])
    jwk = {k: v for k, v in issuer.jwk().items() if k != "key_ops"}
    cache = JwksCache(StaticJwksSource({"keys": [jwk]}), clock=FakeClock())
    assert cache.get(issuer.kid) is not None


def test_a_key_whose_operations_include_verify_is_a_signing_key(issuer: LocalIssuer) -> None:
    jwk = {k: v for k, v in issuer.jwk().items() if k != "use"} | {"key_ops": ["verify"]}
    cache = JwksCache(StaticJwksSource({"keys": [jwk]}), clock=FakeClock())
    assert cache.get(issuer.kid) is not None


def test_a_request_signed_by_a_key_published_for_encryption_is_refused(
    issuer: LocalIssuer, vendor: CredentialVendor
) -> None:
    # GIVEN an issuer whose JWKS publishes its RSA key for encryption only (key_ops, no use), as
    # a provider does the key clients encrypt request objects to
    jwk = {k: v for k, v in issuer.jwk().items() if k not in ("use", "alg")} | {"key_ops": ["encrypt"]}
    keys = JwksCache(StaticJwksSource({"keys": [jwk]}), clock=FakeClock())
    ran: list[str] = []

    @api_handler(jwks=keys, vendor=vendor)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        ran.append(current_tenant().tenant_id)
        return {"statusCode": 200}

    # WHEN a token that key's private half signed arrives
    response = handler(http_api_event(issuer.token("acme")), LambdaContext())
    # THEN it is refused, and no handler runs
    assert response["statusCode"] == 401
    assert ran == []


# --- UrlJwksSource ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://issuer.example/.well-known/jwks.json",
        "HTTP://issuer.example/.well-known/jwks.json",
        "ftp://issuer.example/jwks.json",
        "data:application/json,{}",
        "issuer.example/.well-known/jwks.json",
        "",
    ],
)
def test_url_source_refuses_schemes_other_than_https_and_file(url: str) -> None:
    with pytest.raises(ConfigurationError) as refusal:
        UrlJwksSource(url)
    assert (refusal.value.reason, refusal.value.detail) == (
        Reason.INVALID_SETTING,
        "TENANTSCOPE_JWKS_URL must be the issuer's https:// URL, or file://<path> or inline:<JWKS JSON>"
        " for local development",
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://issuer.example/.well-known/jwks.json",
        "https://issuer.example/jwks.json?from=file://x",  # the scheme is what comes before the first ://
        "file:///var/task/jwks.json",
    ],
)
def test_url_source_accepts_https_and_file(url: str) -> None:
    jwks_source = UrlJwksSource(url)
    assert (jwks_source.url, jwks_source.timeout) == (url, 2.0)  # seconds, unless told
    assert UrlJwksSource(url, timeout=0.5).timeout == 0.5


def write_json(path: Path, document: object) -> str:
    path.write_text(json.dumps(document))
    return path.as_uri()


def test_file_url_fetches_a_real_jwks(tmp_path: Path, issuer: LocalIssuer) -> None:
    # GIVEN the development issuer's JWKS in a file
    url = write_json(tmp_path / "jwks.json", issuer.jwks())
    jwks_source = UrlJwksSource(url)
    # WHEN it is fetched, directly and through a cache
    assert jwks_source.fetch() == issuer.jwks()
    cache = JwksCache(jwks_source, clock=FakeClock())
    # THEN the key is usable
    assert cache.get(issuer.kid) is not None


def test_document_at_the_size_limit_is_accepted(tmp_path: Path) -> None:
    base = json.dumps({"keys": [], "pad": ""})
    document = {"keys": [], "pad": "x" * (MAX_JWKS_BYTES - len(base))}
    url = write_json(tmp_path / "jwks.json", document)
    assert (tmp_path / "jwks.json").stat().st_size == MAX_JWKS_BYTES
    assert UrlJwksSource(url).fetch() == document


def test_oversized_document_is_refused(tmp_path: Path, issuer: LocalIssuer) -> None:
    # GIVEN a JWKS padded beyond 256 KiB
    url = write_json(tmp_path / "jwks.json", {**issuer.jwks(), "pad": "x" * MAX_JWKS_BYTES})
    # THEN fetching it fails
    with pytest.raises(ValueError, match=r"^JWKS document too large$"):
        UrlJwksSource(url).fetch()
    # AND a cache built on it has no keys: an outage, not a bad token
    with pytest.raises(KeysUnavailable) as outage:
        JwksCache(UrlJwksSource(url), clock=FakeClock()).get(issuer.kid)
    assert outage.value.reason is Reason.ISSUER_KEYS_UNAVAILABLE


class RecordingBody(io.BytesIO):
    """A response body that records how much of it its reader took."""

    taken = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.taken += len(data)
        return data


def test_a_huge_document_is_read_only_one_byte_past_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN an issuer URL that answers with a body four times the limit
    body = RecordingBody(b" " * (4 * MAX_JWKS_BYTES))
    requested: list[tuple[str, float]] = []

    class Opener:
        def open(self, request: urllib.request.Request, timeout: float) -> RecordingBody:
            requested.append((request.full_url, timeout))
            return body

    monkeypatch.setattr(urllib.request, "build_opener", lambda *handlers: Opener())
    # WHEN it is fetched THEN it is refused
    with pytest.raises(ValueError, match=r"^JWKS document too large$"):
        UrlJwksSource("https://issuer.example/jwks.json", timeout=0.5).fetch()
    # AND only the limit and one byte were read: a huge answer costs no more memory or time than that
    assert requested == [("https://issuer.example/jwks.json", 0.5)]
    assert body.taken == MAX_JWKS_BYTES + 1


def test_document_that_is_not_an_object_is_refused(tmp_path: Path, issuer: LocalIssuer) -> None:
    url = write_json(tmp_path / "jwks.json", issuer.jwks()["keys"])
    with pytest.raises(ValueError, match=r"^JWKS document is not an object$"):
        UrlJwksSource(url).fetch()


def test_missing_file_keeps_the_last_good_keys(tmp_path: Path, issuer: LocalIssuer) -> None:
    # GIVEN keys fetched from a file that then disappears
    path = tmp_path / "jwks.json"
    clock = FakeClock()
    cache = JwksCache(UrlJwksSource(write_json(path, issuer.jwks())), ttl=TTL, clock=clock)
    good = cache.get(issuer.kid)
    assert good is not None
    path.unlink()
    # WHEN the TTL passes
    clock.advance(TTL + 1)
    # THEN the last good key is still served
    assert cache.get(issuer.kid) is good


# --- the process-wide caches: one per JWKS and its settings ------------------------------------------


def test_preload_fetches_now_even_right_after_a_fetch(
    cache: JwksCache, jwks_source: StaticJwksSource, issuer: LocalIssuer
) -> None:
    assert cache.get(issuer.kid) is not None
    cache.preload()
    assert jwks_source.fetches == 2


def test_a_jwks_url_gets_a_cache_fetching_that_url(tmp_path: Path, issuer: LocalIssuer) -> None:
    settings = Settings.load(jwks_url=write_json(tmp_path / "jwks.json", issuer.jwks()))
    key = jwks_cache_for(settings).get(issuer.kid)
    assert key is not None and key.algorithm_name == "RS256"


class Recorded:
    """Stands in for a class of _jwt: keeps the arguments it was made with."""

    made: list[tuple[tuple[Any, ...], dict[str, Any]]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.made.append((args, kwargs))


def test_the_cache_is_made_with_the_jwks_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a JWKS URL with its own timeout, lifespan and refetch interval
    sources = type("Sources", (Recorded,), {"made": []})
    caches = type("Caches", (Recorded,), {"made": []})
    monkeypatch.setattr(_jwt, "UrlJwksSource", sources)
    monkeypatch.setattr(_jwt, "JwksCache", caches)
    settings = Settings.load(
        jwks_url="https://issuer.example/jwks.json",
        jwks_timeout_seconds=1.5,
        jwks_ttl_seconds=120,
        jwks_min_refetch_seconds=7,
    )
    # WHEN its cache is made
    jwks_cache_for(settings)
    # THEN each setting reaches the source or the cache
    assert sources.made == [(("https://issuer.example/jwks.json",), {"timeout": 1.5})]
    ((jwks_source,), options) = caches.made[0]
    assert isinstance(jwks_source, sources)
    assert options == {"ttl": 120, "min_refetch_interval": 7}


@pytest.mark.parametrize(
    ("jwks_url", "deployed", "reason", "detail"),
    [
        (
            None,
            False,
            Reason.MISSING_SETTING,
            "TENANTSCOPE_JWKS_URL: set it to the issuer's https:// URL,"
            " or file://<path> or inline:<JWKS JSON> for local development",
        ),
        ("inline:{not json", False, Reason.INVALID_SETTING, "TENANTSCOPE_JWKS_URL=inline: is not JSON"),
        (
            'inline:{"keys": []}',
            True,
            Reason.LOCAL_ONLY_SETTING,
            "TENANTSCOPE_JWKS_URL=inline:... is not for a deployed function",
        ),
    ],
    ids=["missing", "inline-not-json", "inline-deployed"],
)
def test_a_jwks_url_that_cannot_be_used_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, jwks_url: str | None, deployed: bool, reason: Reason, detail: str
) -> None:
    monkeypatch.delenv("TENANTSCOPE_JWKS_URL")
    if deployed:
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "api")
    with pytest.raises(ConfigurationError) as refusal:
        jwks_cache_for(Settings.load(jwks_url=jwks_url))
    assert (refusal.value.reason, refusal.value.detail) == (reason, detail)


def test_by_default_keys_live_ten_minutes_and_unknown_kids_refetch_every_30_seconds(
    jwks_source: StaticJwksSource, clock: FakeClock, issuer: LocalIssuer
) -> None:
    cache = JwksCache(jwks_source, clock=clock)
    assert cache.get(issuer.kid) is not None
    clock.advance(30)
    assert cache.get("unknown") is None  # 30 s after the last fetch: an unknown kid refetches
    clock.advance(570)
    assert cache.get(issuer.kid) is not None  # 600 s after the first fetch: still within its life
    assert jwks_source.fetches == 2
    clock.advance(31)
    assert cache.get(issuer.kid) is not None  # over 600 s after the last fetch: refreshed
    assert jwks_source.fetches == 3


def test_keys_forgotten_right_after_a_fetch_still_answer_the_read_that_fetched_them(
    issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN keys that another thread forgets (a SnapStart resume, a test's reset) just as a fetch
    # has stored them
    jwks = JwksCache(StaticJwksSource(issuer.jwks()))
    forgotten_after_each_load(jwks._keys, monkeypatch)
    # WHEN the read that fetched them goes on THEN it answers with what it fetched, not an outage
    assert jwks.get(issuer.kid) is not None
