"""The web configuration file of the HTTP endpoints: TLS and basic auth.

The file has the format of the Prometheus exporter-toolkit (``--web.config.file`` of
node_exporter and friends), so one file and one habit serve every exporter::

    tls_server_config:
      cert_file: server.crt            # paths are relative to this file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # optional mutual TLS
      client_ca_file: clients-ca.crt
      min_version: TLS12
    http_server_config:
      headers: {X-Content-Type-Options: nosniff}
    basic_auth_users:
      prometheus: $2b$10$...           # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')

What streamon does not implement is rejected with a message rather than ignored (a
security setting that silently does nothing is worse than an error): inline ``cert`` /
``key`` / ``client_ca`` (use the ``*_file`` keys), ``cipher_suites`` and
``curve_preferences`` (Go names; OpenSSL's defaults apply), ``client_auth_type``
values that accept unverified certificates, TLS below 1.2, and ``rate_limit``.
``http_server_config.http2`` is accepted for compatibility; streamon serves HTTP/1.1.

The file is read when the configuration is loaded (so ``streamon check-config`` reports a
bad certificate or hash) and again when the worker starts; changes need a restart.

>>> WebConfig.model_validate({}).tls_server_config is None  # an empty file: no TLS, no auth
True
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import ipaddress
import re
import ssl
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from streamon.errors import ConfigError

__all__ = ["REALM", "Authenticator", "WebConfig", "WebConfigError", "load_web_config"]

REALM = "streamon"

# $2a$/$2b$/$2y$ (htpasswd writes 2y), two-digit cost, 22 salt + 31 hash characters.
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}")

Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]


class WebConfigError(ConfigError):
    """The web configuration file is unusable; the message names the file and the key."""


class _Unsupported(ValueError):
    """A toolkit key streamon deliberately does not implement, with what to do instead."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _file(value: object, info: ValidationInfo) -> Path:
    # Relative to the web config file's directory, as the exporter-toolkit resolves them.
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a file path (a non-empty string)")
    path = Path(value).expanduser()
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and isinstance(base, Path):
        path = base / path
    if not path.is_file():
        raise ValueError(f"file not found ({path})")
    return path


_UNSUPPORTED_TLS = {
    "cert": "inline certificates are not supported; put the PEM in a file and use cert_file",
    "key": "inline keys are not supported; put the PEM in a file and use key_file",
    "client_ca": "inline CA certificates are not supported; put the PEM in a file and use client_ca_file",
    "cipher_suites": "not supported (Go cipher names); remove it: OpenSSL's default suites apply",
    "curve_preferences": "not supported (Go curve names); remove it: OpenSSL's default curves apply",
}
_UNVERIFIED = ("RequestClientCert", "RequireAnyClientCert")
_OLD_TLS = ("TLS10", "TLS11")
_TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


def _reject(data: Any, table: dict[str, str]) -> Any:
    if isinstance(data, dict):
        for key, message in table.items():
            if key in data:
                raise _Unsupported(key, message)
    return data


class TLSServerConfig(_Strict):
    """``tls_server_config``: the server certificate and the client-certificate policy."""

    cert_file: Path
    key_file: Path
    client_auth_type: Literal["NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"] = (
        "NoClientCert"
    )
    client_ca_file: Path | None = None
    client_allowed_sans: tuple[Str, ...] | None = None
    min_version: Literal["TLS12", "TLS13"] = "TLS12"
    max_version: Literal["TLS12", "TLS13"] = "TLS13"
    prefer_server_cipher_suites: Bool = True

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        data = _reject(data, _UNSUPPORTED_TLS)
        if isinstance(data, dict):
            if data.get("client_auth_type") in _UNVERIFIED:
                raise _Unsupported(
                    "client_auth_type",
                    f"{data['client_auth_type']} accepts unverified certificates and is not supported; "
                    "use RequireAndVerifyClientCert with client_ca_file",
                )
            for key in ("min_version", "max_version"):
                if data.get(key) in _OLD_TLS:
                    raise _Unsupported(key, "TLS 1.0 and 1.1 are not supported; use TLS12 or TLS13")
        return data

    @field_validator("cert_file", "key_file", "client_ca_file", mode="before")
    @classmethod
    def _paths(cls, value: object, info: ValidationInfo) -> Path | None:
        return None if value is None and info.field_name == "client_ca_file" else _file(value, info)

    @model_validator(mode="after")
    def _policy(self) -> TLSServerConfig:
        verifies = self.client_auth_type != "NoClientCert"
        if verifies and self.client_ca_file is None:
            raise _Unsupported("client_ca_file", f"required with client_auth_type {self.client_auth_type}")
        if not verifies and self.client_ca_file is not None:
            raise _Unsupported(
                "client_auth_type", "client_ca_file is set but NoClientCert never asks for a certificate"
            )
        if self.client_allowed_sans is not None and self.client_auth_type != "RequireAndVerifyClientCert":
            raise _Unsupported("client_allowed_sans", "needs client_auth_type RequireAndVerifyClientCert")
        if _TLS_VERSIONS[self.min_version] > _TLS_VERSIONS[self.max_version]:
            raise _Unsupported("min_version", f"{self.min_version} is above max_version {self.max_version}")
        return self


class Headers(_Strict):
    """``http_server_config.headers``: the security headers the toolkit allows, added to every answer."""

    content_security_policy: Str | None = Field(default=None, alias="Content-Security-Policy")
    x_frame_options: Literal["deny", "sameorigin"] | None = Field(default=None, alias="X-Frame-Options")
    x_content_type_options: Literal["nosniff"] | None = Field(default=None, alias="X-Content-Type-Options")
    x_xss_protection: Str | None = Field(default=None, alias="X-XSS-Protection")
    strict_transport_security: Str | None = Field(default=None, alias="Strict-Transport-Security")

    def items(self) -> list[tuple[str, str]]:
        return [(name, value) for name, value in self.model_dump(by_alias=True).items() if value]


class HTTPServerConfig(_Strict):
    # Accepted so toolkit files load unchanged; streamon always answers HTTP/1.1 (Prometheus
    # negotiates it through ALPN).
    http2: Bool = True
    headers: Headers = Field(default_factory=Headers)


class WebConfig(_Strict):
    """A validated web configuration file. Build it with :func:`load_web_config`."""

    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)
    basic_auth_users: dict[Str, Str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        return _reject(
            data,
            {"rate_limit": "not supported; remove it (limit request rates in a proxy in front of streamon)"},
        )

    @field_validator("basic_auth_users")
    @classmethod
    def _hashes(cls, users: dict[str, str]) -> dict[str, str]:
        for name, hashed in users.items():
            if not name or ":" in name:
                raise _Unsupported(name, "user names must be non-empty and must not contain ':'")
            if not _BCRYPT.fullmatch(hashed):
                raise _Unsupported(
                    name,
                    "not a bcrypt hash (expected $2b$10$ + 53 characters; make one with htpasswd -nBC 10)",
                )
        return users

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server-side TLS context, or None when TLS is off; WebConfigError if OpenSSL refuses a file."""
        tls = self.tls_server_config
        if tls is None:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _TLS_VERSIONS[tls.min_version]
        ctx.maximum_version = _TLS_VERSIONS[tls.max_version]
        if tls.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        ctx.set_alpn_protocols(["http/1.1"])

        def no_passphrase() -> str:
            # Without a callback OpenSSL would prompt on the terminal and hang a service.
            raise WebConfigError("tls_server_config.key_file: the key is encrypted; use an unencrypted key")

        # OpenSSL's own errors ("PEM lib") do not say which file is wrong: look first.
        for key, path, marker, what in (
            ("cert_file", tls.cert_file, b"-----BEGIN CERTIFICATE-----", "a PEM certificate"),
            ("key_file", tls.key_file, b"PRIVATE KEY-----", "a PEM private key"),
        ):
            try:
                content = path.read_bytes()
            except OSError as exc:
                raise WebConfigError(f"tls_server_config.{key}: cannot read {path}: {exc.strerror}") from None
            if marker not in content:
                raise WebConfigError(f"tls_server_config.{key}: not {what} ({path})")
        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file, password=no_passphrase)
        except OSError as exc:  # ssl.SSLError included
            if not isinstance(exc, ssl.SSLError):
                raise WebConfigError(
                    f"tls_server_config: cannot read the certificate or key: {exc}"
                ) from None
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise WebConfigError("tls_server_config.key_file: does not match cert_file") from None
            raise WebConfigError(
                f"tls_server_config.cert_file/key_file: OpenSSL cannot load them ({exc.reason or exc})"
            ) from None
        if tls.client_ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=tls.client_ca_file)
            except OSError as exc:  # ssl.SSLError included
                raise WebConfigError(
                    "tls_server_config.client_ca_file: not a readable PEM CA certificate "
                    f"({getattr(exc, 'reason', None) or exc})"
                ) from None
            ctx.verify_mode = (
                ssl.CERT_REQUIRED
                if tls.client_auth_type == "RequireAndVerifyClientCert"
                else ssl.CERT_OPTIONAL
            )
        return ctx

    def san_allowed(self, peer: dict[str, Any] | None) -> bool:
        """Whether a verified client certificate matches ``client_allowed_sans`` (True when unset)."""
        tls = self.tls_server_config
        if tls is None or tls.client_allowed_sans is None:
            return True
        allowed = {_normal(v) for v in tls.client_allowed_sans}
        sans = (peer or {}).get("subjectAltName", ())
        return any(_normal(str(value)) in allowed for _, value in sans)


def _normal(value: str) -> str:
    # IP SANs are compared as addresses: "::1" and "0:0:0:0:0:0:0:1" are the same client.
    value = value.strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


# --------------------------------------------------------------------------- loading


def load_web_config(path: Path) -> WebConfig:
    """Read and validate the web config file at ``path``; one-line WebConfigError on any problem.

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "web.yml"
    >>> _ = p.write_text("tls_server_config: {cert_file: missing.crt, key_file: missing.key}\\n")
    >>> load_web_config(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamon.webconfig.WebConfigError: web config .../web.yml: tls_server_config.cert_file: file not found...
    """
    where = f"web config {path}"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise WebConfigError(f"{where}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"{where}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise WebConfigError(f"{where}: invalid YAML: {line}{getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        data = {}  # an empty file is valid in the toolkit: no TLS, no auth
    if not isinstance(data, dict):
        raise WebConfigError(f"{where}: top level must be a mapping")
    try:
        config = WebConfig.model_validate(data, context={"base_dir": path.resolve().parent})
    except ValidationError as exc:
        raise WebConfigError(f"{where}: {_describe(exc)}") from None
    try:
        config.ssl_context()  # OpenSSL's own checks: PEM syntax, key matches certificate
    except WebConfigError as exc:
        raise WebConfigError(f"{where}: {exc}") from None
    return config


def _describe(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    loc: list[str] = [str(part) for part in err["loc"]]
    ctx = err.get("ctx") or {}
    error = ctx.get("error")
    if isinstance(error, _Unsupported):
        loc.append(error.key)
        text = str(error)
    elif err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        known = [f.alias or n for n, f in parent.model_fields.items()] if parent else []
        match = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
        text = "unknown key" + (
            f" (did you mean '{match[0]}'?)" if match else f" (known: {', '.join(known)})"
        )
    elif err["type"] == "literal_error":
        text = f"must be one of {ctx.get('expected', '')} (got {err.get('input')!r})"
    elif err["type"] == "missing":
        text = "required key missing"
    elif isinstance(error, ValueError):
        text = str(error)
    else:
        text = f"{err['msg']} (got {type(err.get('input')).__name__})"
    return f"{'.'.join(loc) or '(top level)'}: {' '.join(text.split())}"


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    current: type[BaseModel] = WebConfig
    for part in loc:
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        inner = field.annotation if field is not None else None
        inner = next((a for a in getattr(inner, "__args__", (inner,)) if isinstance(a, type)), None)
        if inner is None or not issubclass(inner, BaseModel):
            return None
        current = inner
    return current


# --------------------------------------------------------------------------- basic auth

# A bcrypt hash of a random string: unknown user names cost the same bcrypt work as known
# ones, so response times do not reveal which user names exist.
_DUMMY_HASH = b"$2b$10$fwgZLDjSXwXMldX..jBcWups2ae5ftFrEDE6OAYRCrCDteF9qa.rO"


class Authenticator:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes.

    bcrypt is slow on purpose (about 70 ms per check at cost 10) and Prometheus sends the
    same header on every scrape, so a successful check is remembered for ``ttl`` seconds
    (at most ``size`` entries, least recently used dropped). The cache key is a SHA-256 of
    the user, the password and the stored hash: no password is kept in memory, and a
    changed hash no longer matches. Failures are never cached, so guessing stays slow.

    >>> import bcrypt
    >>> auth = Authenticator({"prom": bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()})
    >>> ok = "Basic " + base64.b64encode(b"prom:s3cret").decode()
    >>> auth.check(ok), auth.check(ok), auth.check("Basic " + base64.b64encode(b"prom:nope").decode())
    (True, True, False)
    >>> auth.check(None), auth.check("Bearer x"), Authenticator({}).check(None)
    (False, False, True)
    """

    def __init__(self, users: dict[str, str], ttl: float = 300.0, size: int = 256) -> None:
        self.users = {name: hashed.encode() for name, hashed in users.items()}
        self.ttl, self.size = ttl, size
        self._ok: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()
        self.bcrypt_checks = 0  # how many checks actually ran bcrypt (the cache's effect)

    @property
    def required(self) -> bool:
        return bool(self.users)

    def check(self, header: str | None) -> bool:
        """True when no users are configured or ``header`` carries a valid user and password."""
        if not self.users:
            return True
        credentials = _parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        stored = self.users.get(user)
        key = hashlib.sha256(b"\0".join((user.encode(), password, stored or b""))).digest()
        now = time.monotonic()
        with self._lock:
            expiry = self._ok.get(key)
            if expiry is not None and expiry > now:
                self._ok.move_to_end(key)
                return True
        import bcrypt

        self.bcrypt_checks += 1
        try:
            # checkpw compares in constant time; an unknown user still pays for one bcrypt.
            ok = bcrypt.checkpw(password, stored or _DUMMY_HASH) and stored is not None
        except ValueError:  # longer than bcrypt's 72 bytes: cannot match any hash
            ok = False
        if ok:
            with self._lock:
                self._ok[key] = now + self.ttl
                self._ok.move_to_end(key)
                while len(self._ok) > self.size:
                    self._ok.popitem(last=False)
        return ok


def _parse_basic(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None
