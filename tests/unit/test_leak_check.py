"""The leak check every test's logs and every trace go through (tests/leaks.py) can fail."""

from __future__ import annotations

import pytest

from tenantscope.testing import LocalIssuer
from tests.leaks import assert_no_secret_in


def test_a_token_or_a_secret_in_the_text_fails_the_check(issuer: LocalIssuer) -> None:
    token = issuer.token("acme")
    with pytest.raises(AssertionError, match="JWT-shaped"):
        assert_no_secret_in(f"Authorization: Bearer {token}", [], "logs")
    with pytest.raises(AssertionError, match=r"secrets reached the trace: \['testing-secr\.\.\.'\]"):
        assert_no_secret_in("key=testing-secret-value", ["testing-secret-value"], "trace")
    header, claims, _ = token.split(".")
    with pytest.raises(AssertionError, match="JWT-shaped"):  # unsigned, or cut short, still a token
        assert_no_secret_in(f"{header}.{claims}", [], "logs")


def test_a_random_id_that_holds_eyJ_passes_the_check() -> None:
    # An AWS request id (52 letters and digits, as moto makes them) may hold "eyJ" by chance
    request_id = "Q2w9" + "eyJ" + "k7XbP0aZq3LmN8vR2tY6uW1sD4fG5hJ" + "xC0vB9nM7eyJAbCdE"
    assert_no_secret_in(f'"aws": {{"request_id": "{request_id}"}}', ["testing-secret-value"], "trace")
