"""``streamon check-config FILE``: exit 0 and a one-line summary, or one ``error:`` line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from streamon.cli import cli, main

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "configs" / "monitoring_config.yaml"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(["check-config", *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_valid_config_prints_one_summary_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, str(SHIPPED))
    assert code == 0 and err == ""
    assert out.count("\n") == 1 and out.startswith(f"ok: {SHIPPED}: ")
    for fragment in (
        "fraud-detector",
        "4 features",
        "threshold 0.5",
        "current 24h",
        "reference 7d",
        "predictions",
    ):
        assert fragment in out


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "file not found"),
        ("kafka: {topicz: x}\nmodels: []\n", "kafka.topicz: unknown key"),
        ("models: [{name: m, threshold: 1.5, features: [{name: x, type: numeric}]}]", "models.0.threshold"),
        ("models:\n  - name: [unclosed\n", "invalid YAML: line"),
        ("", "file is empty"),
        ("- a list\n", "top level must be a mapping"),
    ],
    ids=["missing", "unknown-key", "out-of-range", "yaml-syntax", "empty", "not-a-mapping"],
)
def test_invalid_config_prints_one_error_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, fragment: str
) -> None:
    file = tmp_path / "c.yaml"
    if content is not None:
        file.write_text(content)
    code, out, err = _run(capsys, str(file))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: config {file}: "), err
    assert fragment in err


def test_help_shows_an_example() -> None:
    result = CliRunner().invoke(cli, ["check-config", "--help"])
    assert result.exit_code == 0
    assert "streamon check-config configs/monitoring_config.yaml" in result.output


def test_installed_console_script(tmp_path: Path) -> None:
    # The real entry point, as users run it (the package is installed editable in .venv).
    script = Path(sys.executable).parent / "streamon"
    if not script.exists():
        pytest.skip("streamon console script not installed in this environment")
    ok = subprocess.run(
        [str(script), "check-config", str(SHIPPED)], capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0 and ok.stdout.startswith("ok: ") and ok.stdout.count("\n") == 1
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text(
        "windows: {current: 24hours}\nmodels: [{name: m, features: [{name: x, type: numeric}]}]\n"
    )
    bad = subprocess.run(
        [str(script), "check-config", str(bad_file)], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith(f"error: config {bad_file}: windows.current: not a duration")
    assert bad.stderr.count("\n") == 1


PROFILED = "models: [{name: m, reference_profile: ref.profile.json, features: [{name: x, type: numeric}]}]\n"


def test_missing_reference_profile_is_one_error_line_saying_how_to_build_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(PROFILED)
    code, out, err = _run(capsys, str(file))
    assert code == 2 and out == ""
    profile = tmp_path / "ref.profile.json"  # resolved against the config's directory
    assert err == (
        f"error: config {file}: models.0.reference_profile: {profile} not found: build it with "
        f"`streamon reference build --config {file} --input REFERENCE.jsonl --out {profile}`\n"
    )


def test_reference_profile_is_checked_as_replay_and_the_worker_load_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from streamon.config import load_config
    from streamon.core.profile import profile_to_bytes
    from streamon.engine import build_engine

    file = tmp_path / "c.yaml"
    file.write_text(PROFILED)
    profile = tmp_path / "ref.profile.json"
    # A profile of another model: the worker would refuse it at start.
    other = tmp_path / "other.yaml"
    other.write_text("models: [{name: other, features: [{name: x, type: numeric}]}]\n")
    profile.write_bytes(profile_to_bytes(list(build_engine(load_config(other)).models.values())))
    code, out, err = _run(capsys, str(file))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"error: reference profile {profile} has no model 'm'"), err
    # The profile of this config's model passes.
    unpinned = tmp_path / "unpinned.yaml"
    unpinned.write_text(PROFILED.replace(", reference_profile: ref.profile.json", ""))
    profile.write_bytes(profile_to_bytes(list(build_engine(load_config(unpinned)).models.values())))
    code, out, err = _run(capsys, str(file))
    assert code == 0 and err == "" and "m: 1 features, threshold 0.5, reference profile" in out
