"""The librdkafka configuration of every Kafka client streamon creates, secrets included.

``kafka.client`` passes librdkafka properties through as written, except secrets: a secret
property (``sasl.password``, ``ssl.key.password``, ``sasl.oauthbearer.client.secret`` ...) is
never written in the configuration file. ``<property>_file: <path>`` reads its value from a
file (trailing newline stripped) and ``<property>_env: <VAR>`` from an environment variable.
They are resolved here, when a client is built, and nowhere else: ``Settings``, its
``model_dump()``, ``check-config`` and ``doctor`` hold the reference, never the value.

>>> resolve_client({"security.protocol": "SASL_SSL", "sasl.password_env": "PW"}, environ={"PW": "s3cret"})
{'security.protocol': 'SASL_SSL', 'sasl.password': 's3cret'}
>>> client_entry_problem("sasl.password", "s3cret")  # doctest: +ELLIPSIS
'a secret must not be written in the config: use sasl.password_file (a file) or sasl.password_env ...'

Authentication and TLS failures: librdkafka retries them forever and reports them only
through its ``error_cb``. :class:`SecurityWatch` (the ``error_cb`` of every client built by
:func:`kafka_client_config`) turns the first one into a :class:`KafkaAuthError` raised from
the client call that served the callback, and :func:`probe` makes start-up checks serve
callbacks every second, so a wrong password stops a command within seconds, in one line.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamon.errors import ConfigError, KafkaUnavailableError

if TYPE_CHECKING:
    from streamon.config import Settings

__all__ = [
    "KafkaAuthError",
    "SecretError",
    "SecretFilter",
    "SecurityWatch",
    "client_entry_problem",
    "install_log_scrubber",
    "is_secret_property",
    "kafka_client_config",
    "probe",
    "resolve_client",
    "secret_values",
    "split_reference",
]

FILE_SUFFIX = "_file"
ENV_SUFFIX = "_env"
# librdkafka properties whose value is a credential (besides any name with a word below).
SECRET_PROPERTIES = frozenset(
    {
        "sasl.password",
        "sasl.oauthbearer.client.secret",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.key.pem",
        "sasl.oauthbearer.assertion.private.key.pem",
        "sasl.oauthbearer.assertion.private.key.passphrase",
    }
)
SECRET_WORDS = ("password", "secret", "passphrase")
# sasl.oauthbearer.config is free text ("principal=... scope=..."): a secret only when it holds one.
_SECRET_TEXT = re.compile(r"secret|password|passphrase|token", re.IGNORECASE)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MIN_SCRUB = 4  # shorter "secrets" would mask ordinary words


class SecretError(ConfigError):
    """A ``<property>_file`` / ``<property>_env`` reference that cannot be resolved."""


class KafkaAuthError(KafkaUnavailableError):
    """The brokers refused the credentials, or the TLS handshake failed."""


def split_reference(key: str) -> tuple[str, str] | None:
    """(property, "file" | "env") for a secret reference key, else None.

    >>> split_reference("sasl.password_file"), split_reference("sasl.username_env")
    (('sasl.password', 'file'), ('sasl.username', 'env'))
    >>> split_reference("security.protocol") is None
    True
    """
    for suffix, kind in ((FILE_SUFFIX, "file"), (ENV_SUFFIX, "env")):
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)], kind
    return None


def is_secret_property(key: str) -> bool:
    """True for a librdkafka property whose value is a credential.

    >>> keys = ("sasl.password", "ssl.key.pem", "ssl.key.location", "sasl.username")
    >>> [k for k in keys if is_secret_property(k)]
    ['sasl.password', 'ssl.key.pem']
    """
    return key in SECRET_PROPERTIES or any(word in key for word in SECRET_WORDS)


def client_entry_problem(key: str, value: object) -> str | None:
    """Why ``key: value`` cannot stand in ``kafka.client`` (None when it can)."""
    ref = split_reference(key)
    if ref is not None:
        prop, kind = ref
        if not isinstance(value, str) or not value.strip():
            what = "a file path" if kind == "file" else "an environment variable name"
            return f"must be {what} holding {prop} (a non-empty string)"
        if kind == "env" and not _ENV_NAME.fullmatch(value):
            return f"not an environment variable name: {value!r} (letters, digits and '_')"
        return None
    if key == "sasl.oauthbearer.config":
        if isinstance(value, str) and _SECRET_TEXT.search(value):
            return (
                "holds a secret, which must not be written in the config: use "
                "sasl.oauthbearer.config_file or sasl.oauthbearer.config_env"
            )
        return None
    if is_secret_property(key):
        return (
            f"a secret must not be written in the config: use {key}{FILE_SUFFIX} (a file) "
            f"or {key}{ENV_SUFFIX} (an environment variable)"
        )
    return None


def resolve_client(client: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``client`` with every ``_file`` / ``_env`` reference replaced by the property's value.

    Raises :class:`SecretError` (one line naming the key and the file or variable) when a
    reference cannot be resolved.
    """
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for key, value in client.items():
        ref = split_reference(key)
        if ref is None:
            out[key] = value
            continue
        prop, kind = ref
        if kind == "env":
            text = env.get(str(value))
            if not text:
                state = "is empty" if text == "" else "is not set"
                raise SecretError(
                    f"kafka.client.{key}: environment variable {value} {state}; "
                    f"set it to the {prop} in the environment streamon runs in"
                )
        else:
            try:
                text = Path(str(value)).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise SecretError(
                    f"kafka.client.{key}: cannot read {value} ({exc.strerror or exc}); "
                    f"point it at a readable file holding the {prop}"
                ) from None
            except UnicodeDecodeError:
                raise SecretError(f"kafka.client.{key}: {value} is not UTF-8 text") from None
            if not text:
                raise SecretError(f"kafka.client.{key}: {value} is empty; it must hold the {prop}")
        out[prop] = text
    return out


def secret_values(resolved: Mapping[str, Any]) -> list[str]:
    """The credential values of a resolved client configuration (for scrubbing texts)."""
    return [
        str(v)
        for k, v in resolved.items()
        if (is_secret_property(k) or k == "sasl.oauthbearer.config") and len(str(v)) >= _MIN_SCRUB
    ]


def scrub(text: str, secrets: list[str], mask: str = "****") -> str:
    """``text`` with every secret replaced by ``mask``.

    >>> scrub("bad password hunter22 for u", ["hunter22"])
    'bad password **** for u'
    """
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, mask)
    return text


# --------------------------------------------------------------------------- failures


def _reason(text: str) -> str:
    """librdkafka's error text without the broker prefix and the state suffix."""
    text = re.sub(r"^\S+://\S+?: ", "", text.strip())
    text = re.sub(r"\s*\(after \d+ms in state \w+\)\s*$", "", text)
    return re.sub(r"^(SASL authentication error|SSL handshake failed): ", "", text)


class SecurityWatch:
    """``error_cb`` of streamon's Kafka clients: authentication and TLS failures end the command.

    librdkafka reports both through the error callback and retries forever; the first one
    is raised as :class:`KafkaAuthError` (one line saying which keys to check) from the call
    that served the callback (poll, consume, flush). Later ones are only recorded in
    :attr:`failure`, so shutting down does not raise again. Other errors go to ``previous``.
    """

    def __init__(
        self,
        bootstrap: str,
        client: Mapping[str, Any],
        resolved: Mapping[str, Any],
        previous: Callable[[Any], Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.client = dict(client)  # as configured: names the keys to check
        self.mechanism = str(
            resolved.get("sasl.mechanism", resolved.get("sasl.mechanisms", "GSSAPI"))
        ).upper()
        self.protocol = str(resolved.get("security.protocol", "PLAINTEXT")).upper()
        self.username = str(resolved.get("sasl.username", ""))
        self.secrets = secret_values(resolved)
        self.previous = previous
        self.failure: str | None = None
        self._raised = False

    def message(self, code: int, text: str) -> str | None:
        """The one line for librdkafka error ``code`` (None: not a security failure)."""
        from confluent_kafka import KafkaError

        reason = scrub(_reason(text), self.secrets)
        if code == KafkaError._AUTHENTICATION:
            if self.mechanism == "OAUTHBEARER":
                return (
                    f"Kafka authentication failed for SASL/OAUTHBEARER at {self.bootstrap} ({reason}): "
                    "check kafka.client sasl.oauthbearer.client.id / sasl.oauthbearer.client.secret_file "
                    "and sasl.oauthbearer.token.endpoint.url"
                )
            password = next(
                (k for k in ("sasl.password_file", "sasl.password_env") if k in self.client),
                "sasl.password_file",
            )
            return (
                f"Kafka authentication failed for SASL/{self.mechanism} user '{self.username}' at "
                f"{self.bootstrap} ({reason}): check kafka.client sasl.username / {password}"
            )
        if code == KafkaError._SSL:
            return (
                f"TLS handshake with Kafka at {self.bootstrap} failed ({reason}): check kafka.client "
                "ssl.ca.location (the CA that signed the brokers' certificates), the client "
                "certificate (ssl.certificate.location, ssl.key.location) if the brokers require one, "
                "and security.protocol"
            )
        return None

    def __call__(self, err: Any) -> None:
        line = self.message(err.code(), err.str())
        if line is None:
            if self.previous is not None:
                self.previous(err)
            return
        self.failure = self.failure or line
        if not self._raised:
            self._raised = True
            raise KafkaAuthError(self.failure)

    def check(self) -> None:
        """Raise the recorded failure (for loops that may have swallowed the first raise)."""
        if self.failure is not None:
            raise KafkaAuthError(self.failure)


def kafka_client_config(
    settings: Settings, previous_error_cb: Callable[[Any], Any] | None = None
) -> dict[str, Any]:
    """librdkafka configuration for a client of ``settings``' cluster: ``bootstrap.servers``,
    ``kafka.client`` with its secrets resolved, and a :class:`SecurityWatch` as ``error_cb``."""
    k = settings.kafka
    resolved = resolve_client(k.client)
    watch = SecurityWatch(k.bootstrap_servers, k.client, resolved, previous_error_cb)
    return {"bootstrap.servers": k.bootstrap_servers, **resolved, "error_cb": watch}


def probe(client: Any, timeout: float = 10.0) -> Any:
    """``client.list_topics()`` in attempts of at most a second until it answers.

    Between attempts the client's callbacks are served, so an authentication or TLS failure
    raises from its :class:`SecurityWatch` within about a second; otherwise the last
    ``KafkaException`` is raised once ``timeout`` has passed.
    """
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            return client.list_topics(timeout=max(0.1, min(1.0, left)))
        except KafkaException:
            client.poll(0)  # serves error_cb: a SecurityWatch raises here
            if time.monotonic() >= deadline:
                raise


# --------------------------------------------------------------------------- logs


class SecretFilter(logging.Filter):
    """A handler filter that replaces secret values in every record's message."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= _MIN_SCRUB]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        clean = scrub(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_log_scrubber(secrets: list[str]) -> None:
    """Scrub ``secrets`` from every record the root logger's handlers write."""
    wanted = [s for s in secrets if len(s) >= _MIN_SCRUB]
    if not wanted:
        return
    for handler in logging.getLogger().handlers:
        current = next((f for f in handler.filters if isinstance(f, SecretFilter)), None)
        if current is None:
            handler.addFilter(SecretFilter(wanted))
        else:
            current.secrets = sorted(set(current.secrets) | set(wanted))
