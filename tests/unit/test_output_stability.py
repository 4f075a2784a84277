"""The complete output of a replay (every series, alert event, bad line and join count) of
a stream with invalid events, duplicates, corrections, orphans, variants and segments is
exactly what it was before the hot path was rewritten for speed (tests/data/output_stability.py)."""

from __future__ import annotations

import difflib
from pathlib import Path

from tests.data.output_stability import EXPECTED, output


def test_replay_output_is_unchanged(tmp_path: Path) -> None:
    expected = EXPECTED.read_text()
    got = output(tmp_path)
    diff = list(
        difflib.unified_diff(expected.splitlines(), got.splitlines(), "expected", "now", lineterm="", n=0)
    )
    assert not diff, "\n".join(diff[:60])
