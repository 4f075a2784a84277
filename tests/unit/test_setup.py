"""The README's test command sets up everything itself, and CI runs exactly that command.

A fresh machine has only the README's requirements: ``make test`` runs ``make setup``
(deploy/install-tools.sh) first, which installs every external tool the suite runs, and
``.ci/run`` runs ``make test`` with nothing before it that the suite could depend on.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "deploy" / "install-tools.sh"


def quickstart_commands() -> list[str]:
    """The commands of the README's Quickstart block, comments stripped."""
    section = (ROOT / "README.md").read_text().split("## Quickstart", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README's Quickstart has no bash block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def shell_commands(path: Path) -> list[str]:
    """The command lines of a shell script: no shebang, comments or blank lines."""
    lines = [line.split(" #", 1)[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_ci_runs_the_readme_test_command_and_nothing_the_suite_needs_before_it() -> None:
    commands = quickstart_commands()
    assert commands == ["make demo", "make test"]
    test_command = commands[1]
    ci = shell_commands(ROOT / ".ci" / "run")
    assert ci.count(test_command) == 1, ci
    position = ci.index(test_command)
    # Before it only the shell's own settings: no apt-get, no tool builds, no make target.
    assert ci[:position] == ["set -euo pipefail", 'cd "$(dirname "$0")/.."'], ci[:position]
    # After it, the audit, which the tests do not depend on; nothing else runs tests.
    assert ci[position + 1 :] == ["make audit"], ci[position + 1 :]


def test_make_test_runs_the_setup_before_any_test() -> None:
    # make -n prints the recipes in the order make would run them (the @-silenced ones too).
    proc = subprocess.run(
        ["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
    )
    lines = proc.stdout.splitlines()
    setup = [i for i, line in enumerate(lines) if "deploy/install-tools.sh" in line]
    suite = [i for i, line in enumerate(lines) if "-m pytest" in line]
    assert setup and suite and setup[0] < suite[0], proc.stdout


def tools_the_suite_runs() -> set[str]:
    """Executables the tests and the broker script look up or run, by name."""
    patterns = [
        r"shutil\.which\(\s*\"([^\"]+)\"",  # shutil.which("promtool")
        r"\b_tool\(\s*\"([^\"]+)\"",  # the tests' _tool("amtool") / _tool("composecheck")
        r"subprocess\.(?:run|Popen|check_call|check_output)\(\s*\[\s*\"([A-Za-z][\w.-]*)\"",
    ]
    sources = [*sorted((ROOT / "tests").rglob("*.py")), ROOT / "deploy" / "kafka" / "broker.py"]
    found: set[str] = set()
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for pattern in patterns:
            found.update(re.findall(pattern, text))
    return found


# The README's requirements and the commands of Debian's essential packages (coreutils,
# util-linux, bash), present on every machine the set-up supports.
PRESENT = {"python3", "make", "bash", "sh", "env", "mount", "umount", "kill", "cat", "ls", "sleep", "true"}
# Looked up only to enrich a failure report (the native stacks of a hung worker); no test
# needs it to pass.
OPTIONAL = {"gdb"}


def test_setup_provides_every_tool_the_suite_runs() -> None:
    tools = tools_the_suite_runs()
    known = {
        "promtool",
        "amtool",
        "prometheus",
        "java",
        "mvn",
        "openssl",
        "composecheck",
        "k8svalidate",
        "chromium",
    }
    assert known <= tools, f"the scan misses {known - tools}"
    setup = SETUP.read_text()
    missing = sorted(
        t for t in tools - PRESENT - OPTIONAL if not re.search(rf"(?<![\w-]){re.escape(t)}(?![\w-])", setup)
    )
    assert not missing, f"deploy/install-tools.sh does not install {missing}: `make test` would fail on them"


def test_setup_scripts_parse() -> None:
    for script in (SETUP, *sorted((ROOT / "deploy" / "tools").glob("*.sh")), ROOT / ".ci" / "run"):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"


def test_pinned_go_toolchain_builds_the_validators() -> None:
    go_tool = (ROOT / "deploy" / "tools" / "go-tool.sh").read_text()
    toolchain = re.search(r"^TOOLCHAIN=go1\.(\d+)\.(\d+)$", go_tool, re.M)
    minimum = re.search(r"^MIN_MINOR=(\d+)", go_tool, re.M)
    assert toolchain and minimum
    assert int(toolchain.group(1)) >= int(minimum.group(1))
    for go_mod in sorted((ROOT / "deploy" / "tools").glob("*/go.mod")):
        wanted = re.search(r"^go 1\.(\d+)", go_mod.read_text(), re.M)
        assert wanted and int(wanted.group(1)) <= int(minimum.group(1)), go_mod


def test_package_metadata_builds_without_setuptools_warnings() -> None:
    # An SPDX string as project.license (a TOML table is deprecated and warns on every
    # install); setuptools reads the string form from version 77 on.
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "Apache-2.0"
    (setuptools,) = [r for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    bound = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools)
    assert bound and int(bound.group(1)) >= 77, setuptools
