"""The state dir fills up while a worker runs: it ends in one line naming the state dir (no
traceback), a restart fails the same way while the disk stays full, and once there is space
again the restarted worker (same --instance-id and state dir) replays the gap between its
stores' markers and the committed offsets: the final metrics equal ``streamon replay``.

On the shared session broker (``session_scenario``): the fault is on the worker's disk, a
small tmpfs mounted as its state dir (tests run as root).
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration import harness as h
from tests.integration.faults.helpers import Scenario, scenario_settings, stream

pytestmark = pytest.mark.integration

TMPFS_SIZE = "32m"  # the join stores of a few thousand events need well under 1 MB


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` for the block; unmounted after it."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs on {path} (needs root and mount(8)): {r.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)  # still busy: detach it


def fill(directory: Path, name: str) -> Path:
    """Write the file ``name`` in ``directory`` until its file system has no space left (ENOSPC)."""
    filler = directory / name
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def test_a_state_dir_that_fills_up_while_running(
    kafka_bootstrap: str, session_scenario: Callable[[dict[str, Any]], Scenario]
) -> None:
    d = scenario_settings(kafka_bootstrap, partitions=2)
    d["kafka"].update(batch_size=200, flush_interval=0.2)  # many commits, a store write after each
    sc = session_scenario(d)
    sc.max_exits = 60  # restarts on the full disk fail at once, by design
    state = sc.tmp / "w1"
    preds, labels = stream(3000, seed=61)
    half_p, half_l = len(preds) // 2, len(labels) // 2
    with tmpfs(state, TMPFS_SIZE):
        try:
            w = sc.worker("w1")
            h.wait_ready([w], timeout=60, settle=1.0)
            sc.produce(preds[:half_p], labels[:half_l])
            deadline = time.monotonic() + 60
            while h.processed([w], sc.topics.predictions) < 300:
                assert time.monotonic() < deadline and w.alive(), sc.tails()
                time.sleep(0.1)
            fillers = [fill(state, "filler-1")]
            sc.produce(preds[half_p:], labels[half_l:])  # events keep arriving
            # The next store write after a Kafka commit fails: the worker ends.
            deadline = time.monotonic() + 30
            while not sc.running_exits:
                assert time.monotonic() < deadline, f"no exit on a full state dir\n{sc.tails()}"
                time.sleep(0.1)
            # Its exit gave back the space RocksDB had reserved: full again, so that the
            # supervisor's restart (1 s later) meets a full disk too, and ends the same way.
            fillers.append(fill(state, "filler-2"))
            deadline = time.monotonic() + 45  # it ends within seconds; a loaded machine is slower
            while len(sc.exits) < 2:
                assert time.monotonic() < deadline, (
                    f"the restart on a full state dir did not end\n{sc.tails()}"
                )
                time.sleep(0.1)
            for filler in fillers:  # the operator frees the space; the next restart works
                filler.unlink()
            live = sc.wait_consumed(timeout=90)

            # What the operator sees: JSON log lines, and one `error:` line per exit, naming
            # the state dir; never a traceback.
            text = (sc.tmp / "w1.log").read_text(errors="replace")
            assert "Traceback" not in text, text[-3000:]
            errors = []
            for line in text.splitlines():
                if line.startswith("{"):
                    orjson.loads(line)
                else:
                    assert line.startswith("error: "), f"not a log line: {line!r}"
                    errors.append(line)
            assert len(errors) == len(sc.exits), (errors, sc.exits)
            assert all(code != 0 for _, code in sc.exits), sc.exits
            # A restart either meets the full disk or, when its group join does not complete in
            # time (it then never opens a store), ends as stalled: never alive but stuck.
            assert all(
                (f"state dir {state}" in line and "No space left on device" in line)
                or (i > 0 and "has had no partitions assigned" in line)
                for i, line in enumerate(errors)
            ), errors
            assert "cannot write the join store" in errors[0], errors[0]  # after a Kafka commit
            assert sc.running_exits[0] == sc.exits[0], sc.exits  # the first exit was mid-run

            # Nothing lost, nothing counted twice: (i) equal to replay, (ii) orphans as replay's,
            # (iii) no alert fired twice, (iv) no worker alive but not committing.
            sc.check(live)
        finally:
            sc.close()  # no worker holds the tmpfs when it is unmounted
