"""streamon.progress: plain lines when not on a terminal, a rich bar with rate and ETA on one."""

from __future__ import annotations

import io

from rich.console import Console

from streamon.progress import progress


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_plain_lines_every_interval_with_rate_and_eta_then_done() -> None:
    out, clock = io.StringIO(), Clock()
    with progress("replay", total=1000, unit="lines", stream=out, interval=5, clock=clock) as tick:
        for _ in range(10):
            clock.t += 1
            tick(100, items=10)  # position in bytes, rate in lines
    assert out.getvalue().splitlines() == [
        "replay: 50 lines, 50%, 10 lines/s, ETA 0:00:05",
        "replay: 100 lines, 100%, 10 lines/s",
        "replay: done, 100 lines in 10.0 s (10 lines/s)",
    ]


def test_a_quick_run_prints_nothing_and_disabled_is_silent() -> None:
    out, clock = io.StringIO(), Clock()
    with progress("replay", total=10, stream=out, clock=clock) as tick:
        clock.t += 1.0  # under min_seconds (2 s), no line was due
        tick(10)
    with progress("replay", total=10, stream=out, enabled=False, min_seconds=0) as tick:
        tick(10)
    assert out.getvalue() == ""


def test_terminal_gets_a_rich_bar_with_rate_and_eta() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    with progress("replaying", total=40, unit="events", console=console) as tick:
        for _ in range(4):
            tick(10)
    text = buf.getvalue()
    assert "\x1b[" in text  # drawn with terminal control codes, not plain lines
    assert "replaying" in text and "40 events" in text and "events/s" in text and "ETA" in text
    assert "━" in text  # the bar
    assert "done," not in text  # the plain-mode summary line is not printed on a terminal
