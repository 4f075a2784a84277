"""Every CLI command: --help with an example; user errors are one ``error:`` line and a non-zero exit."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import pytest

from streamon.cli import cli, main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "monitoring_config.yaml")
STREAMON = str(Path(sys.executable).parent / "streamon")
EXPECTED = {"check-config", "reference build", "replay", "worker", "simulate", "demo", "ab report"}


def _leaves(group: click.Group, prefix: tuple[str, ...] = ()) -> list[str]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out += _leaves(cmd, (*prefix, name))
        else:
            out.append(" ".join((*prefix, name)))
    return out


COMMANDS = _leaves(cli)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_every_command_is_known() -> None:
    assert set(COMMANDS) >= EXPECTED


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, err = _run(capsys, *command.split(), "--help")
    assert code == 0 and err == ""
    assert "Example" in out
    assert f"streamon {command}" in out.split("Example", 1)[1]  # the example runs this command


def _one_error_line(code: int, out: str, err: str, expected_code: int, fragment: str) -> None:
    assert code == expected_code, (out, err)
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert fragment in err


# Each command with a missing config file: the config is read before anything else happens.
MISSING_CONFIG = {
    "check-config": ["check-config", "{missing}"],
    "reference build": [
        "reference",
        "build",
        "--config",
        "{missing}",
        "--input",
        "x.jsonl",
        "--out",
        "y.json",
    ],
    "replay": ["replay", "--config", "{missing}", "--predictions", "x.jsonl"],
    "worker": ["worker", "--config", "{missing}", "--metrics-port", "0"],
    "simulate": ["simulate", "--config", "{missing}"],
    "demo": ["demo", "--config", "{missing}", "--headless"],
    "ab report": ["ab", "report", "--experiment", "e", "--config", "{missing}", "--predictions", "x.jsonl"],
}


@pytest.mark.parametrize("command", sorted(MISSING_CONFIG))
def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    missing = str(tmp_path / "missing.yaml")
    args = [a.format(missing=missing) for a in MISSING_CONFIG[command]]
    _one_error_line(*_run(capsys, *args), 2, f"config {missing}: file not found")


@pytest.mark.parametrize("command", sorted(MISSING_CONFIG))
def test_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka: {topicz: {}}\nmodels: [{name: m, features: [{name: x, type: numeric}]}]\n")
    args = [a.format(missing=str(bad)) for a in MISSING_CONFIG[command]]
    _one_error_line(*_run(capsys, *args), 2, "kafka.topicz: unknown key (did you mean 'topics'?)")


MISSING_INPUT = {
    "reference build": ["reference", "build", "--config", CONFIG, "--input", "{missing}", "--out", "{out}"],
    "replay": ["replay", "--config", CONFIG, "--predictions", "{missing}"],
    "ab report": ["ab", "report", "--experiment", "e", "--config", CONFIG, "--predictions", "{missing}"],
}


@pytest.mark.parametrize(
    "command",
    [
        "reference build",
        "replay",
        "ab report",
    ],
)
def test_missing_input_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    missing = str(tmp_path / "missing.jsonl")
    args = [a.format(missing=missing, out=tmp_path / "out.json") for a in MISSING_INPUT[command]]
    _one_error_line(*_run(capsys, *args), 2, f"input file {missing} not found")


@pytest.mark.parametrize(
    "args",
    [
        ["simulate", "--config", CONFIG, "--duration", "5", "--count", "3"],
        ["simulate", "--config", CONFIG, "--drift", "bogus"],
        ["simulate", "--config", CONFIG, "--models", "nope"],
        ["simulate", "--config", CONFIG, "--rate", "0"],
        ["demo", "--config", CONFIG, "--duration", "-1"],
        ["ab", "report", "--experiment", "e", "--config", CONFIG],
        ["ab", "report", "--experiment", "e", "--config", CONFIG, "--predictions", "x", "--alpha", "2"],
    ],
    ids=[
        "duration-and-count",
        "bad-drift",
        "unknown-model",
        "zero-rate",
        "negative-duration",
        "no-input",
        "bad-alpha",
    ],
)
def test_bad_arguments(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, out, err = _run(capsys, *args)
    _one_error_line(code, out, err, 2, "")


@functools.cache
def _unreachable(command: str) -> tuple[int, list[str], float]:
    """Run ``command`` against a port nothing listens on, once per session (two tests read it)."""
    tmp = tempfile.mkdtemp(prefix="streamon-unreachable-")
    args = [a.format(tmp=tmp) for a in UNREACHABLE[command]]
    started = time.monotonic()
    proc = subprocess.run([STREAMON, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    shutil.rmtree(tmp, ignore_errors=True)
    lines = (proc.stdout + proc.stderr).splitlines()
    return proc.returncode, lines, time.monotonic() - started


UNREACHABLE = {
    "worker": [
        "worker",
        "--config",
        CONFIG,
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--metrics-port",
        "0",
        "--state-dir",
        "{tmp}",
    ],
    "simulate": ["simulate", "--config", CONFIG, "--bootstrap-servers", "127.0.0.1:1", "--duration", "5"],
    "demo": ["demo", "--bootstrap-servers", "127.0.0.1:1", "--headless", "--duration", "5"],
    "ab report": [
        "ab",
        "report",
        "--experiment",
        "e",
        "--config",
        CONFIG,
        "--bootstrap-servers",
        "127.0.0.1:1",
    ],
}


@pytest.mark.parametrize("command", sorted(UNREACHABLE))
def test_unreachable_broker_fails_fast_with_a_clear_line(command: str) -> None:
    code, lines, elapsed = _unreachable(command)
    assert code == 3, lines[-5:]
    assert elapsed < 20
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "cannot reach Kafka" in errors[0]
    assert not any("Traceback" in line for line in lines)


def test_unreachable_broker_line_names_the_address_and_what_to_do() -> None:
    _code, lines, _elapsed = _unreachable("worker")
    (error,) = [line for line in lines if line.startswith("error: ")]
    assert "cannot reach Kafka at 127.0.0.1:1 (" in error
    assert "KafkaError{" not in error  # librdkafka's reason, not the repr of its error object
    for hint in ("kafka.bootstrap_servers", "python3 deploy/kafka/broker.py start", "streamon demo"):
        assert hint in error, error


@pytest.mark.parametrize(
    "command",
    [
        "worker",
        "simulate",
        "demo",
        "ab report",
    ],
)
def test_unreachable_broker_prints_only_that_line(command: str) -> None:
    _code, lines, _elapsed = _unreachable(command)
    assert len(lines) == 1, f"{len(lines)} lines, e.g. {lines[:2]}"


@pytest.mark.parametrize(
    ("args", "code", "stream", "text"),
    [
        (
            ["check-config", "/nonexistent/streamon.yaml"],
            2,
            "stderr",
            "error: config /nonexistent/streamon.yaml",
        ),
        (["--version"], 0, "stdout", "streamon, version"),
    ],
)
def test_console_script_keeps_exit_codes_and_output(
    args: list[str], code: int, stream: str, text: str
) -> None:
    """``entry`` (the console script) ends a failed run with os._exit: the code and line survive."""
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from streamon.cli import entry; sys.argv[0] = 'streamon'; entry()",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == code, res.stderr
    assert getattr(res, stream).startswith(text)
