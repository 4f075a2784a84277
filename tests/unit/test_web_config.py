"""The web configuration file (TLS, basic auth) and the HTTP endpoint that applies it.

Certificates are made at test time with ``cryptography`` (a CA, a server certificate for
127.0.0.1, a client certificate, and a second CA nobody trusts). The endpoint tests run a
real MetricsServer over a real prometheus_client registry on 127.0.0.1 and talk to it with
requests and raw sockets.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import socket
import ssl
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry, Gauge

from streamon.config import load_config
from streamon.errors import ConfigError
from streamon.runtime.http import MetricsServer
from streamon.webconfig import Authenticator, WebConfigError, load_web_config

# Cost 4, the minimum, keeps the suite fast; the server treats every cost the same.
PASSWORD = "scrape-me"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


# --------------------------------------------------------------------------- certificates


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(
    path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, password: bytes = b""
) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    path.with_suffix(".key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )


def _issue(
    subject: str,
    sans: list[x509.GeneralName],
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer[0].subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    signer = issuer[1] if issuer else key
    return builder.sign(signer, hashes.SHA256()), key


def make_pki(directory: Path) -> dict[str, Path]:
    """ca, server (127.0.0.1 + localhost), client (client.streamon.test), rogue-client (other CA)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _issue("streamon test CA", [])
    _write(directory / "ca", *ca)
    server = _issue(
        "127.0.0.1", [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")], ca
    )
    _write(directory / "server", *server)
    _write(directory / "client", *_issue("client", [x509.DNSName("client.streamon.test")], ca))
    rogue_ca = _issue("rogue CA", [])
    _write(directory / "rogue", *_issue("client", [x509.DNSName("client.streamon.test")], rogue_ca))
    _write(directory / "encrypted", server[0], server[1], password=b"pw")
    return {p.name: p for p in directory.iterdir()}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def web_file(tmp: Path, data: Any) -> Path:
    path = tmp / "web.yml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def tls(pki: dict[str, Path], **extra: Any) -> dict[str, Any]:
    return {"cert_file": str(pki["server.crt"]), "key_file": str(pki["server.key"]), **extra}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --------------------------------------------------------------------------- validation


def test_valid_file_and_relative_paths(tmp_path: Path, pki: dict[str, Path]) -> None:
    # Relative paths are resolved against the web config file's directory, not the cwd.
    path = web_file(
        pki["ca.crt"].parent,
        {
            "tls_server_config": {
                "cert_file": "server.crt",
                "key_file": "server.key",
                "min_version": "TLS13",
            },
            "http_server_config": {"http2": True, "headers": {"X-Frame-Options": "deny"}},
            "basic_auth_users": {"prometheus": HASH},
        },
    )
    web = load_web_config(path)
    assert web.tls_server_config is not None
    assert web.tls_server_config.cert_file == pki["server.crt"]
    assert web.http_server_config.headers.items() == [("X-Frame-Options", "deny")]
    ctx = web.ssl_context()
    assert ctx is not None and ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode == ssl.CERT_NONE
    # An empty file is valid (as in the toolkit): neither TLS nor auth.
    empty = load_web_config(web_file(tmp_path, ""))
    assert empty.ssl_context() is None and empty.basic_auth_users == {}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"tls_server_confg": {}}, "tls_server_confg: unknown key (did you mean 'tls_server_config'?)"),
        ({"tls_server_config": {"cert_file": "nope.crt", "key_file": "nope.key"}},
         "tls_server_config.cert_file: file not found"),
        ({"tls_server_config": {"key_file": "x"}}, "tls_server_config.cert_file: required key missing"),
        ({"basic_auth_users": {"prom": "hunter2"}}, "basic_auth_users.prom: not a bcrypt hash"),
        ({"basic_auth_users": {"a:b": HASH}}, "basic_auth_users.a:b: user names must be non-empty"),
        ({"rate_limit": {"interval": "1s", "burst": 5}}, "rate_limit: not supported"),
        ({"http_server_config": {"headers": {"X-Frame-Options": "allow"}}},
         "http_server_config.headers.X-Frame-Options: must be one of 'deny' or 'sameorigin'"),
        ({"http_server_config": {"headerz": {}}}, "http_server_config.headerz: unknown key (did you mean"),
    ],
)  # fmt: skip
def test_errors_name_the_file_and_the_key(tmp_path: Path, data: Any, expected: str) -> None:
    path = web_file(tmp_path, data)
    with pytest.raises(WebConfigError) as err:
        load_web_config(path)
    text = str(err.value)
    assert text.startswith(f"web config {path}: "), text
    assert expected in text, text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"cipher_suites": ["TLS_AES_128_GCM_SHA256"]}, "tls_server_config.cipher_suites: not supported"),
        ({"curve_preferences": ["X25519"]}, "tls_server_config.curve_preferences: not supported"),
        ({"cert": "-----BEGIN"}, "tls_server_config.cert: inline certificates are not supported"),
        ({"client_auth_type": "RequireAnyClientCert"},
         "tls_server_config.client_auth_type: RequireAnyClientCert accepts unverified certificates"),
        ({"client_auth_type": "RequireAndVerifyClientCert"},
         "tls_server_config.client_ca_file: required with client_auth_type RequireAndVerifyClientCert"),
        ({"client_ca_file": "ca.crt"}, "tls_server_config.client_auth_type: client_ca_file is set but"),
        ({"min_version": "TLS11"}, "tls_server_config.min_version: TLS 1.0 and 1.1 are not supported"),
        ({"min_version": "TLS13", "max_version": "TLS12"}, "tls_server_config.min_version: TLS13 is above"),
        ({"client_allowed_sans": ["x"]}, "tls_server_config.client_allowed_sans: needs client_auth_type"),
    ],
)  # fmt: skip
def test_unsupported_or_inconsistent_tls_settings(pki: dict[str, Path], extra: Any, expected: str) -> None:
    path = web_file(pki["ca.crt"].parent, {"tls_server_config": tls(pki, **extra)})
    with pytest.raises(WebConfigError, match=r"^web config .*web\.yml: ") as err:
        load_web_config(path)
    assert expected in str(err.value), str(err.value)


def test_openssl_problems_name_the_file(tmp_path: Path, pki: dict[str, Path]) -> None:
    cases = {
        "tls_server_config.cert_file: not a PEM certificate": tls(pki, cert_file=str(pki["server.key"])),
        "tls_server_config.key_file: not a PEM private key": tls(pki, key_file=str(pki["server.crt"])),
        "tls_server_config.key_file: does not match cert_file": tls(pki, key_file=str(pki["client.key"])),
        "tls_server_config.key_file: the key is encrypted": tls(pki, key_file=str(pki["encrypted.key"])),
    }
    for expected, section in cases.items():
        with pytest.raises(WebConfigError) as err:
            load_web_config(web_file(tmp_path, {"tls_server_config": section}))
        assert expected in str(err.value), str(err.value)


def test_config_key_resolves_and_validates_the_file(tmp_path: Path, pki: dict[str, Path]) -> None:
    (tmp_path / "sub").mkdir()
    web_file(tmp_path / "sub", {"basic_auth_users": {"prom": HASH}})
    config = tmp_path / "c.yaml"
    body = "models: [{name: m, features: [{name: x, type: numeric}]}]\n"
    config.write_text(f"monitoring: {{prometheus: {{web_config_file: sub/web.yml}}}}\n{body}")
    settings = load_config(config)
    assert settings.monitoring.prometheus.web_config_file == tmp_path / "sub" / "web.yml"
    assert settings.monitoring.prometheus.health_without_auth is False

    web_file(tmp_path / "sub", {"basic_auth_users": {"prom": "plain"}})
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert str(err.value) == (
        f"config {config}: monitoring.prometheus.web_config_file: web config {tmp_path / 'sub' / 'web.yml'}: "
        "basic_auth_users.prom: not a bcrypt hash (expected $2b$10$ + 53 characters; make one with "
        "htpasswd -nBC 10)"
    )
    config.write_text(f"monitoring: {{prometheus: {{web_config_file: missing.yml}}}}\n{body}")
    with pytest.raises(ConfigError, match=r"web_config_file: web config .*missing\.yml: file not found$"):
        load_config(config)


# --------------------------------------------------------------------------- auth decisions


def test_auth_decisions() -> None:
    auth = Authenticator({"prom": HASH})
    assert auth.check(basic("prom", PASSWORD))
    assert not auth.check(basic("prom", PASSWORD + "x"))
    assert not auth.check(basic("someone", PASSWORD))  # unknown user, same password
    assert not auth.check(None) and not auth.check("")
    assert not auth.check("Bearer " + base64.b64encode(b"prom:" + PASSWORD.encode()).decode())
    assert not auth.check("Basic !!!not-base64!!!")
    assert not auth.check("Basic " + base64.b64encode(b"no-colon").decode())
    assert not auth.check(basic("prom", "x" * 100))  # past bcrypt's 72 bytes: refused, no crash
    assert auth.check("basic  " + base64.b64encode(f"prom:{PASSWORD}".encode()).decode())  # scheme case
    # Passwords may contain ':'; only the first one separates the user.
    colon = Authenticator({"u": bcrypt.hashpw(b"a:b", bcrypt.gensalt(4)).decode()})
    assert colon.check(basic("u", "a:b")) and not colon.check(basic("u", "a"))
    # htpasswd writes $2y$ hashes.
    assert Authenticator({"u": HASH.replace("$2b$", "$2y$", 1)}).check(basic("u", PASSWORD))
    # No users configured: no auth required.
    assert Authenticator({}).check(None) and not Authenticator({}).required


def test_successes_are_cached_failures_are_not() -> None:
    auth = Authenticator({"prom": HASH}, ttl=300.0, size=2)
    for _ in range(5):
        assert auth.check(basic("prom", PASSWORD))
    assert auth.bcrypt_checks == 1  # the scrape header is verified once, then remembered
    for _ in range(3):
        assert not auth.check(basic("prom", "wrong"))
    assert auth.bcrypt_checks == 4  # every wrong guess pays for bcrypt again

    expired = Authenticator({"prom": HASH}, ttl=0.0)
    assert expired.check(basic("prom", PASSWORD)) and expired.check(basic("prom", PASSWORD))
    assert expired.bcrypt_checks == 2

    # A changed hash (another password) invalidates what was remembered for the old one.
    other = bcrypt.hashpw(b"new", bcrypt.gensalt(4)).decode()
    auth.users["prom"] = other.encode()
    assert not auth.check(basic("prom", PASSWORD))


# --------------------------------------------------------------------------- the endpoint


def serve(web_path: Path | None, **kw: Any) -> MetricsServer:
    registry = CollectorRegistry()
    Gauge("streamon_test_up", "a metric to find", registry=registry).set(1)
    web = load_web_config(web_path) if web_path else None
    server = MetricsServer(registry, "127.0.0.1", 0, web_config=web, ready=lambda: False, **kw)
    server.start()
    return server


def test_basic_auth_over_tls(tmp_path: Path, pki: dict[str, Path]) -> None:
    path = web_file(
        tmp_path,
        {
            "tls_server_config": tls(pki),
            "basic_auth_users": {"prom": HASH},
            "http_server_config": {"headers": {"X-Content-Type-Options": "nosniff"}},
        },
    )
    server = serve(path)
    ca = str(pki["ca.crt"])
    try:
        assert server.url("/metrics").startswith("https://127.0.0.1:")
        for auth in (None, ("prom", "wrong"), ("nobody", PASSWORD)):
            r = requests.get(server.url("/metrics"), verify=ca, auth=auth, timeout=5)
            assert r.status_code == 401, auth
            assert r.headers["WWW-Authenticate"] == 'Basic realm="streamon"'
            assert "streamon_test_up" not in r.text
        r = requests.get(server.url("/metrics"), verify=ca, auth=("prom", PASSWORD), timeout=5)
        assert r.status_code == 200 and "streamon_test_up 1.0" in r.text
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        # Health endpoints and unknown paths are protected too by default.
        for p in ("/healthz", "/readyz", "/nothing"):
            assert requests.get(server.url(p), verify=ca, timeout=5).status_code == 401
        assert (
            requests.get(server.url("/nothing"), verify=ca, auth=("prom", PASSWORD), timeout=5).status_code
            == 404
        )
        # A plain-HTTP request to the TLS port gets no metrics, only a closed connection ...
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while chunk := raw.recv(4096):
                received += chunk
        assert b"streamon_test_up" not in received and not received.startswith(b"HTTP/1")
        # ... and a client that connects and says nothing does not hold up anyone else.
        with socket.create_connection(("127.0.0.1", server.port), timeout=5):
            r = requests.get(server.url("/metrics"), verify=ca, auth=("prom", PASSWORD), timeout=5)
            assert r.status_code == 200
        # A client that does not trust the server's CA refuses it (the certificate is really used).
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(server.url("/metrics"), verify=str(pki["rogue.crt"]), timeout=5)
    finally:
        server.stop()


def test_health_without_auth(tmp_path: Path) -> None:
    server = serve(web_file(tmp_path, {"basic_auth_users": {"prom": HASH}}), health_without_auth=True)
    try:
        assert server.url().startswith("http://")
        assert requests.get(server.url("/healthz"), timeout=5).status_code == 200
        assert requests.get(server.url("/readyz"), timeout=5).status_code == 503  # not ready, but answered
        assert requests.get(server.url("/metrics"), timeout=5).status_code == 401
        assert requests.get(server.url("/metrics"), auth=("prom", PASSWORD), timeout=5).status_code == 200
    finally:
        server.stop()


def test_without_web_config_nothing_changes() -> None:
    server = serve(None)
    try:
        r = requests.get(server.url("/metrics"), timeout=5)
        assert r.status_code == 200 and "streamon_test_up" in r.text
        assert "WWW-Authenticate" not in r.headers
    finally:
        server.stop()


def test_client_certificates(tmp_path: Path, pki: dict[str, Path]) -> None:
    ca = str(pki["ca.crt"])
    client = (str(pki["client.crt"]), str(pki["client.key"]))
    rogue = (str(pki["rogue.crt"]), str(pki["rogue.key"]))
    required = tls(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=ca)
    server = serve(web_file(tmp_path, {"tls_server_config": required}))
    try:
        for cert in (None, rogue):
            with pytest.raises(requests.exceptions.RequestException):
                requests.get(server.url("/metrics"), verify=ca, cert=cert, timeout=5)
        r = requests.get(server.url("/metrics"), verify=ca, cert=client, timeout=5)
        assert r.status_code == 200 and "streamon_test_up" in r.text
    finally:
        server.stop()

    sans = {**required, "client_allowed_sans": ["other.streamon.test"]}
    server = serve(web_file(tmp_path, {"tls_server_config": sans}))
    try:
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(server.url("/metrics"), verify=ca, cert=client, timeout=5)
    finally:
        server.stop()

    allowed = {**required, "client_allowed_sans": ["client.streamon.test"]}
    server = serve(web_file(tmp_path, {"tls_server_config": allowed}))
    try:
        assert requests.get(server.url("/metrics"), verify=ca, cert=client, timeout=5).status_code == 200
    finally:
        server.stop()

    optional = tls(pki, client_auth_type="VerifyClientCertIfGiven", client_ca_file=ca)
    server = serve(web_file(tmp_path, {"tls_server_config": optional}))
    try:
        assert requests.get(server.url("/metrics"), verify=ca, timeout=5).status_code == 200
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(server.url("/metrics"), verify=ca, cert=rogue, timeout=5)
    finally:
        server.stop()
