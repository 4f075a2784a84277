"""The dependency audit's verdict (.ci/audit_report.py) on pip-audit reports.

The network lookup of PyPI's project JSON is replaced by a table here; what is tested is
the policy: a vulnerability fails (exit 1), an unaudited package warns (exit 3), ignored
ids and the editable streamon install do not count.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "audit_report.py"
spec = importlib.util.spec_from_file_location("audit_report", SCRIPT)
assert spec is not None and spec.loader is not None
audit_report: Any = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audit_report)

VULN = {"id": "PYSEC-1", "aliases": ["CVE-1"], "fix_versions": ["2.0"]}


def run(tmp_path: Path, deps: list[dict[str, Any]], *ignored: str) -> int:
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"dependencies": deps}))
    return int(audit_report.main([str(report), *ignored]))


@pytest.fixture
def latest(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[dict[str, Any]] | None]:
    table: dict[str, list[dict[str, Any]] | None] = {}
    monkeypatch.setattr(audit_report, "latest_vulns", lambda name, version: table.get(name))
    return table


def test_a_known_vulnerability_fails_and_names_the_fix(
    tmp_path: Path, latest: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    deps: list[dict[str, Any]] = [
        {"name": "a", "version": "1.0", "vulns": [VULN]},
        {"name": "b", "version": "1.0", "vulns": []},
    ]
    assert run(tmp_path, deps) == 1
    assert "VULNERABLE a 1.0: PYSEC-1 (CVE-1); fixed in: 2.0" in capsys.readouterr().err
    assert run(tmp_path, deps, "PYSEC-1") == 0


def test_a_package_without_per_version_data_is_audited_as_the_latest_release(
    tmp_path: Path, latest: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    skipped = {"name": "a", "version": "1.0", "skip_reason": "Dependency not found on PyPI"}
    latest["a"] = []
    assert run(tmp_path, [skipped]) == 0
    assert "1 of them as PyPI's latest release" in capsys.readouterr().out
    latest["a"] = [VULN]
    assert run(tmp_path, [skipped]) == 1


def test_a_package_that_cannot_be_audited_warns_and_editables_do_not_count(
    tmp_path: Path, latest: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    deps = [
        {"name": "a", "version": "1.0", "skip_reason": "Dependency not found on PyPI"},  # not the latest
        {"name": "streamon", "skip_reason": "Dependency is an editable install"},
    ]
    assert run(tmp_path, deps) == 3
    assert "WARNING 1 of 1 packages could not be audited" in capsys.readouterr().err
