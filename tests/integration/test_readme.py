"""The README's two commands, verbatim: `make demo` runs the demo, `make test` is what CI runs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README's Quickstart has no bash block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_one():
    commands = quickstart_commands()
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in [line.strip() for line in ci if not line.strip().startswith("#")]


def test_make_demo_verbatim_shows_alerts_and_stops_on_ctrl_c():
    """`make demo` as a user types it; without a terminal the demo prints plain lines."""
    command = quickstart_commands()[0]
    proc = subprocess.Popen(
        command.split(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # Ctrl-C goes to make and the demo, as in a terminal
        env={**os.environ, "PYTHON": os.environ.get("PYTHON", "python3")},
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(line.rstrip() for line in proc.stdout), daemon=True).start()  # type: ignore[union-attr]
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any(line.startswith("ALERT firing") for line in lines):
                break
            time.sleep(0.5)
        assert any(line.startswith("ALERT firing") for line in lines), "\n".join(lines[-40:])
        assert any("mock cluster" in line for line in lines)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)  # make itself reports the interrupt (exit by SIGINT), as in a terminal
        time.sleep(0.5)
        assert any(line.startswith("streamon demo: stopped after") for line in lines), "\n".join(lines[-20:])
        assert not any("Traceback" in line for line in lines), "\n".join(lines)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
