"""The one check that no secret reached a text a test captured (logs, trace documents)."""

from __future__ import annotations

import re
from collections.abc import Iterable

# A JWT in compact form, minted by a test or not: a header and a claims set, each base64url JSON
# (so each starts with base64url('{"') = "eyJ"), joined by a dot. The dot and the second "eyJ"
# keep random ids (an AWS request id of 52 letters and digits may hold "eyJ") from matching.
JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.eyJ[A-Za-z0-9_-]{2,}")


def assert_no_secret_in(text: str, secrets: Iterable[str], where: str) -> None:
    """No secret of at least 8 characters in ``text``, and nothing shaped like a JWT."""
    leaked = sorted(s[:12] + "..." for s in secrets if len(s) >= 8 and s in text)
    assert not leaked, f"secrets reached the {where}: {leaked}"
    assert not JWT_SHAPE.search(text), f"a JWT-shaped string reached the {where}"
