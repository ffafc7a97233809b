"""The issuer's keys come only over TLS from the configured URL: no redirect, no plain HTTP.

Real sockets on 127.0.0.1: an HTTPS issuer with a certificate made for the test (trusted through
``UrlJwksSource(ssl_context=...)``) and a plain-HTTP server standing for an attacker's.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.error import URLError

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tenantscope import ConfigurationError, KeysUnavailable, Reason
from tenantscope._jwt import JwksCache, UrlJwksSource
from tenantscope.testing import LocalIssuer
from tests.fakes import FakeClock


@dataclass
class Server:
    """A local HTTP(S) server: ``routes`` maps a path to (status, headers, body); hits are counted,
    with the media types each asked for."""

    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    accepts: list[str | None] = field(default_factory=list)
    base: str = ""


def _serve(context: ssl.SSLContext | None) -> Callable[[], Iterator[Server]]:
    def run() -> Iterator[Server]:
        server = Server()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits.append(self.path)
                server.accepts.append(self.headers.get("Accept"))
                status, headers, body = server.routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if context is not None:
            httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        scheme = "https" if context is not None else "http"
        server.base = f"{scheme}://127.0.0.1:{httpd.server_address[1]}"
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=10)

    return run


LOOPBACK = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def issuer_site(certificate: tuple[Path, Path]) -> Iterator[Server]:
    """The issuer, over HTTPS."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    yield from _serve(context)()


@pytest.fixture
def attacker_site() -> Iterator[Server]:
    """Somebody else's server, over plain HTTP."""
    yield from _serve(None)()


@pytest.fixture
def trust(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


def jwks_response(issuer: LocalIssuer) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps(issuer.jwks()).encode()


def test_the_issuers_keys_are_fetched_over_tls(
    issuer_site: Server, trust: ssl.SSLContext, issuer: LocalIssuer
) -> None:
    issuer_site.routes["/jwks.json"] = jwks_response(issuer)
    source = UrlJwksSource(f"{issuer_site.base}/jwks.json", ssl_context=trust)
    assert source.fetch() == issuer.jwks()
    assert issuer_site.accepts == ["application/json"]


def test_an_issuer_certificate_that_is_not_trusted_is_refused(
    issuer_site: Server, issuer: LocalIssuer
) -> None:
    issuer_site.routes["/jwks.json"] = jwks_response(issuer)
    with pytest.raises(URLError, match="CERTIFICATE_VERIFY_FAILED"):
        UrlJwksSource(f"{issuer_site.base}/jwks.json").fetch()


def test_a_redirect_to_plain_http_is_refused_and_never_followed(
    issuer_site: Server,
    attacker_site: Server,
    trust: ssl.SSLContext,
    issuer: LocalIssuer,
    foreign_issuer: LocalIssuer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN the issuer's JWKS URL redirects to plain HTTP, where someone else's keys wait
    attacker_site.routes["/jwks.json"] = jwks_response(foreign_issuer)
    issuer_site.routes["/jwks.json"] = (302, {"Location": f"{attacker_site.base}/jwks.json"}, b"")
    source = UrlJwksSource(f"{issuer_site.base}/jwks.json", ssl_context=trust)
    # WHEN the keys are fetched THEN the redirect is refused, and the other server never asked
    with pytest.raises(KeysUnavailable) as refused:
        source.fetch()
    assert refused.value.reason is Reason.JWKS_REDIRECT
    assert attacker_site.hits == []
    # AND a cache on it has no keys (a 503, not the foreign key); the log says why
    with pytest.raises(KeysUnavailable) as outage:
        JwksCache(source, clock=FakeClock()).get(foreign_issuer.kid)
    assert outage.value.reason is Reason.ISSUER_KEYS_UNAVAILABLE
    assert "JWKS URL answered with a redirect, which is refused" in caplog.text


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_every_redirect_is_refused_even_to_the_same_https_site(
    issuer_site: Server, trust: ssl.SSLContext, issuer: LocalIssuer, status: int
) -> None:
    issuer_site.routes["/jwks.json"] = (status, {"Location": "/keys.json"}, b"")
    issuer_site.routes["/keys.json"] = jwks_response(issuer)
    with pytest.raises(KeysUnavailable) as refused:
        UrlJwksSource(f"{issuer_site.base}/jwks.json", ssl_context=trust).fetch()
    assert refused.value.reason is Reason.JWKS_REDIRECT
    assert issuer_site.hits == ["/jwks.json"]


def test_a_jwks_file_is_refused_in_a_deployed_function(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, issuer: LocalIssuer
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(issuer.jwks()))
    # GIVEN a deployed function (not sam local)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-api")
    monkeypatch.delenv("AWS_SAM_LOCAL", raising=False)
    with pytest.raises(ConfigurationError) as refused:
        UrlJwksSource(path.as_uri())
    assert (refused.value.reason, refused.value.detail) == (
        Reason.LOCAL_ONLY_SETTING,
        "TENANTSCOPE_JWKS_URL=file://... is not for a deployed function",
    )
    # AND under sam local invoke the development issuer's file still works
    monkeypatch.setenv("AWS_SAM_LOCAL", "true")
    assert UrlJwksSource(path.as_uri()).fetch() == issuer.jwks()


def test_an_issuer_that_never_answers_fails_after_the_timeout() -> None:
    # GIVEN an address that accepts connections and then says nothing (no TLS handshake, no answer)
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"https://127.0.0.1:{silent.getsockname()[1]}/jwks.json"
        # WHEN the keys are fetched THEN the fetch gives up after its timeout rather than waiting
        # for ever: the request in front of it is answered (a 503) instead of the function timing out
        with pytest.raises((TimeoutError, URLError)):
            UrlJwksSource(url, timeout=0.2).fetch()
