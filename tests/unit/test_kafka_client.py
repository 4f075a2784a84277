"""kafka.client secrets (``_file`` / ``_env``), their refusal as literals, the one-line security
errors, log scrubbing, and the alert router's credential mapping. No broker needed."""

from __future__ import annotations

import logging
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError

from streamon.config import Settings, load_config
from streamon.doctor import DoctorOptions, mask_client, run_checks
from streamon.errors import ConfigError, StreamonError
from streamon.kafka_client import (
    KafkaAuthError,
    SecretError,
    SecretFilter,
    SecurityWatch,
    kafka_client_config,
    resolve_client,
)
from streamon.router import faust_credentials

MODELS = [{"name": "m", "features": [{"name": "x", "type": "numeric"}]}]
SECRET = "s3cret-Value-42"


def settings(client: dict[str, Any]) -> Settings:
    return Settings.from_dict({"models": MODELS, "kafka": {"bootstrap_servers": "h:9093", "client": client}})


# --------------------------------------------------------------------------- resolution


def test_file_reference_reads_the_value_without_the_trailing_newline(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text(f" {SECRET} \n")  # only the newline goes: spaces may belong to a password
    conf = kafka_client_config(settings({"sasl.username": "u", "sasl.password_file": str(pw)}))
    assert conf["sasl.password"] == f" {SECRET} "
    assert "sasl.password_file" not in conf
    assert conf["bootstrap.servers"] == "h:9093" and conf["sasl.username"] == "u"
    assert isinstance(conf["error_cb"], SecurityWatch)


def test_env_reference_reads_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_PW", SECRET)
    conf = kafka_client_config(settings({"sasl.password_env": "KAFKA_PW"}))
    assert conf["sasl.password"] == SECRET and "sasl.password_env" not in conf


def test_settings_hold_the_reference_never_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_PW", SECRET)
    s = settings({"sasl.password_env": "KAFKA_PW", "ssl.key.password_file": str(tmp_path / "k")})
    dumped = repr(s.model_dump()) + s.model_dump_json() + repr(s)
    assert SECRET not in dumped and "KAFKA_PW" in dumped


def test_relative_file_reference_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pw").write_text(SECRET + "\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "kafka:\n  client:\n    sasl.password_file: secrets/pw\n"
        "models: [{name: m, features: [{name: x, type: numeric}]}]\n"
    )
    s = load_config(cfg)
    assert s.kafka.client["sasl.password_file"] == str(tmp_path / "secrets" / "pw")
    assert resolve_client(s.kafka.client)["sasl.password"] == SECRET


@pytest.mark.parametrize(
    ("client", "environ", "expected"),
    [
        (
            {"sasl.password_env": "NOPE"},
            {},
            "kafka.client.sasl.password_env: environment variable NOPE is not set",
        ),
        ({"sasl.password_env": "EMPTY"}, {"EMPTY": ""}, "environment variable EMPTY is empty"),
    ],
    ids=["unset", "empty"],
)
def test_unusable_env_reference_is_one_line_naming_key_and_variable(
    client: dict[str, str], environ: dict[str, str], expected: str
) -> None:
    with pytest.raises(SecretError) as err:
        resolve_client(client, environ=environ)
    text = str(err.value)
    assert expected in text and "\n" not in text
    assert "sasl.password" in text


def test_unusable_file_reference_is_one_line_naming_key_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(SecretError) as err:
        resolve_client({"sasl.password_file": str(missing)})
    assert str(err.value).startswith(f"kafka.client.sasl.password_file: cannot read {missing} (")
    assert "No such file" in str(err.value)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(SecretError, match=r"sasl.password_file: .*empty is empty"):
        resolve_client({"sasl.password_file": str(empty)})
    assert issubclass(SecretError, ConfigError)  # exit code 2, like every config mistake


# --------------------------------------------------------------------------- refused in the config


@pytest.mark.parametrize(
    "key",
    [
        "sasl.password",
        "sasl.oauthbearer.client.secret",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.key.pem",
    ],
)
def test_literal_secret_is_a_config_error_naming_the_key(key: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings({key: SECRET})
    text = str(err.value)
    assert f"kafka.client.{key}: a secret must not be written in the config" in text
    assert f"use {key}_file" in text and f"{key}_env" in text
    assert SECRET not in text


def test_oauthbearer_config_is_refused_only_when_it_holds_a_secret() -> None:
    ok = settings({"sasl.oauthbearer.config": "principal=admin scope=monitoring"})
    assert ok.kafka.client["sasl.oauthbearer.config"] == "principal=admin scope=monitoring"
    with pytest.raises(ConfigError, match=r"kafka\.client\.sasl\.oauthbearer\.config: holds a secret.*_file"):
        settings({"sasl.oauthbearer.config": "clientSecret=abc"})


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        ({"sasl.password_env": "1BAD"}, "kafka.client.sasl.password_env: not an environment variable name"),
        ({"sasl.password_file": ""}, "kafka.client.sasl.password_file: must be a file path"),
        ({"sasl.password_file": 3}, "kafka.client.sasl.password_file: must be a file path"),
        ({"bootstrap.servers_env": "B"}, "kafka.client.bootstrap.servers_env: set by streamon"),
        (
            {"sasl.password_file": "/x", "sasl.password_env": "X"},
            "kafka.client.sasl.password_file: sasl.password_env is given as well",
        ),
    ],
    ids=["env-name", "empty-path", "not-a-string", "reserved", "both"],
)
def test_bad_references_are_config_errors(client: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings(client)
    assert expected in str(err.value)


# --------------------------------------------------------------------------- failures


def _err(code: int, text: str) -> KafkaError:
    return KafkaError(code, text)


AUTH_TEXT = (
    "sasl_ssl://h:9093/bootstrap: SASL authentication error: Authentication failed during "
    "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 "
    "(after 312ms in state AUTH_REQ)"
)


def test_authentication_failure_is_raised_once_as_one_clear_line(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text(SECRET)
    client = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "streamon",
              "sasl.password_file": str(pw)}  # fmt: skip
    others: list[KafkaError] = []
    watch = kafka_client_config(settings(client), previous_error_cb=others.append)["error_cb"]
    watch(_err(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    assert others and watch.failure is None  # not a security failure: passed on
    with pytest.raises(KafkaAuthError) as err:
        watch(_err(KafkaError._AUTHENTICATION, AUTH_TEXT))
    assert str(err.value) == (
        "Kafka authentication failed for SASL/SCRAM-SHA-512 user 'streamon' at h:9093 (Authentication failed "
        "during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512): "
        "check kafka.client sasl.username / sasl.password_file"
    )
    watch(_err(KafkaError._AUTHENTICATION, AUTH_TEXT))  # later reports do not raise again (shutdown)
    with pytest.raises(KafkaAuthError):
        watch.check()  # but a loop can still ask


def test_failure_text_is_scrubbed_and_names_the_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW", SECRET)
    client = {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.username": "u",
              "sasl.password_env": "PW"}  # fmt: skip
    watch = kafka_client_config(settings(client))["error_cb"]
    line = watch.message(KafkaError._AUTHENTICATION, f"h:1/bootstrap: bad password {SECRET}")
    assert SECRET not in line and "****" in line
    assert line.endswith("check kafka.client sasl.username / sasl.password_env")


def test_tls_and_oauthbearer_failures_say_what_to_check() -> None:
    tls = SecurityWatch("h:9093", {}, {"security.protocol": "SSL"}).message(
        KafkaError._SSL,
        "ssl://h:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify "
        "failed: broker certificate could not be verified (after 9ms in state SSL_HANDSHAKE)",
    )
    assert tls is not None and tls.startswith("TLS handshake with Kafka at h:9093 failed (error:0A000086")
    assert "ssl.ca.location" in tls
    oauth = SecurityWatch("h:9093", {}, {"sasl.mechanism": "OAUTHBEARER"}).message(
        KafkaError._AUTHENTICATION, "h:9093/bootstrap: SASL authentication error: invalid token"
    )
    assert (
        oauth is not None and "SASL/OAUTHBEARER" in oauth and "sasl.oauthbearer.client.secret_file" in oauth
    )


def test_log_filter_scrubs_secrets_from_messages_and_arguments() -> None:
    record = logging.LogRecord(
        "streamon.worker", logging.WARNING, "", 0, "failed: %s (%d)", (SECRET, 3), None
    )
    assert SecretFilter([SECRET]).filter(record)
    assert record.getMessage() == "failed: **** (3)"


# --------------------------------------------------------------------------- doctor, check-config


def test_doctor_shows_references_masks_literals_and_reports_unresolvable_secret() -> None:
    assert mask_client({"sasl.password_env": "PW", "sasl.password": "x"}) == {
        "sasl.password_env": "PW",
        "sasl.password": "****",
    }
    lines: list[str] = []
    s = settings({"security.protocol": "SASL_SSL", "sasl.password_env": "STREAMON_TEST_UNSET_VARIABLE"})
    ok = run_checks(s, DoctorOptions(skip=frozenset({"prometheus", "alertmanager", "grafana"})), lines.append)
    assert not ok
    assert "sasl.password_env=STREAMON_TEST_UNSET_VARIABLE" in lines[0]
    assert lines[1] == (
        "FAIL kafka: kafka.client.sasl.password_env: environment variable STREAMON_TEST_UNSET_VARIABLE "
        "is not set; fix: set it to the sasl.password in the environment streamon runs in"
    )


def test_check_config_prints_the_reference_not_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from streamon.cli import main

    monkeypatch.setenv("KAFKA_PW", SECRET)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "kafka:\n  client: {security.protocol: SASL_SSL, sasl.password_env: KAFKA_PW}\n"
        "models: [{name: m, features: [{name: x, type: numeric}]}]\n"
    )
    main(["check-config", str(cfg)])  # returns (exit 0) when the file is valid
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "sasl.password_env=KAFKA_PW" in out and SECRET not in out


# --------------------------------------------------------------------------- alert router (aiokafka)


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key (the CA of itself), made with openssl."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "client.pem", d / "client.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=streamon-test"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_router_maps_sasl_ssl_with_ca_and_client_certificate(
    mechanism: str, client_cert: tuple[Path, Path]
) -> None:
    cert, key = client_cert
    creds, ignored = faust_credentials(
        {
            "bootstrap.servers": "h:1",
            "error_cb": print,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": mechanism,
            "sasl.username": "streamon",
            "sasl.password": SECRET,
            "ssl.ca.location": str(cert),
            "ssl.certificate.location": str(cert),
            "ssl.key.location": str(key),
            "client.id": "router",
        }
    )
    assert creds.mechanism.value == mechanism
    assert (creds.username, creds.password) == ("streamon", SECRET)
    context: ssl.SSLContext = creds.ssl_context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any(c.get("subject") == ((("commonName", "streamon-test"),),) for c in context.get_ca_certs())
    assert ignored == ["client.id"]  # streamon's own keys are not reported as ignored


def test_router_maps_ssl_only_and_hostname_opt_out(client_cert: tuple[Path, Path]) -> None:
    cert, _ = client_cert
    creds, ignored = faust_credentials(
        {
            "security.protocol": "SSL",
            "ssl.ca.location": str(cert),
            "ssl.endpoint.identification.algorithm": "none",
        }
    )
    assert creds.context.check_hostname is False and creds.context.verify_mode == ssl.CERT_REQUIRED
    assert ignored == []


def test_router_refuses_oauthbearer_in_one_line() -> None:
    with pytest.raises(StreamonError) as err:
        faust_credentials({"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER"})
    assert str(err.value).startswith("the alert router does not support sasl.mechanism OAUTHBEARER")
    assert "\n" not in str(err.value)
