"""Judge a pip-audit JSON report; audit what pip-audit could not from PyPI's project JSON.

pip-audit asks PyPI for the vulnerabilities of each installed *version*
(``/pypi/<name>/<version>/json``). Where that lookup fails (some mirrors and proxies
serve only the project endpoint), the project endpoint ``/pypi/<name>/json`` still
lists the known vulnerabilities of the project's LATEST release: for a package whose
installed version is the latest (the usual case, since pyproject.toml sets lower bounds
only), that list is the audit. A package that is neither is reported as not audited.

Usage: audit_report.py REPORT.json [IGNORED_ID ...]; exit 1 on a known vulnerability,
3 when some package could not be audited, 0 otherwise.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from importlib import metadata


def latest_vulns(name: str, version: str, timeout: float = 30.0) -> list[dict[str, object]] | None:
    """Vulnerabilities of ``name`` ``version`` if it is PyPI's latest release, else None."""
    url = f"https://pypi.org/pypi/{name}/json"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            doc = json.load(resp)
    except (OSError, ValueError):
        return None
    if doc.get("info", {}).get("version") != version or "vulnerabilities" not in doc:
        return None
    return [
        {"id": v.get("id"), "aliases": v.get("aliases") or [], "fix_versions": v.get("fixed_in") or []}
        for v in doc["vulnerabilities"]
        if not v.get("withdrawn")
    ]


def main(argv: list[str]) -> int:
    report, ignored = argv[0], set(argv[1:])
    # streamon itself (an editable install) is not on PyPI: not a dependency to audit.
    with open(report) as f:
        listed = json.load(f)["dependencies"]
    deps = [d for d in listed if "editable" not in d.get("skip_reason", "")]
    found, skipped, by_project = [], [], 0
    for d in deps:
        vulns = d.get("vulns", [])
        if "skip_reason" in d:
            try:  # a skipped entry may carry no version: ask the environment (this runs in .venv)
                d["version"] = d.get("version") or metadata.version(d["name"])
            except metadata.PackageNotFoundError:
                d["version"] = "?"
            vulns = latest_vulns(d["name"], d["version"])
            if vulns is None:
                skipped.append(d)
                continue
            by_project += 1
        found += [(d["name"], d["version"], v) for v in vulns if v["id"] not in ignored]
    for name, version, vuln in found:
        fix = ", ".join(vuln.get("fix_versions") or []) or "no fixed release"
        aliases = ", ".join(vuln.get("aliases") or [])
        line = f"audit: VULNERABLE {name} {version}: {vuln['id']} ({aliases}); fixed in: {fix}"
        print(line, file=sys.stderr)
    if found:
        print(
            f"audit: {len(found)} known vulnerabilities: raise the bound in pyproject.toml to a fixed"
            " release, or ignore one that does not affect streamon in .ci/audit with a reason",
            file=sys.stderr,
        )
        return 1
    audited = len(deps) - len(skipped)
    if audited:
        how = f" ({by_project} of them as PyPI's latest release)" if by_project else ""
        print(f"audit: no known vulnerabilities in {audited} audited packages{how}")
    if skipped:
        names = ", ".join(f"{d['name']} {d['version']}" for d in skipped[:5])
        print(
            f"audit: WARNING {len(skipped)} of {len(deps)} packages could not be audited "
            f"(not PyPI's latest release and no per-version data), e.g. {names}",
            file=sys.stderr,
        )
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
