"""The README's `make demo`, verbatim (tests/unit/test_setup.py: `make test` is what CI runs)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.unit.test_setup import quickstart_commands

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


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
