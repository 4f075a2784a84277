"""Progress reporting for long commands: a rich bar on a terminal, plain lines otherwise.

``progress()`` yields a ``tick`` callable. ``tick(n)`` advances the position by ``n``
units of ``total`` (bytes of a file, events, ...); ``items=`` counts the things the
rate is shown in (lines, events) when they differ from the position's units, so a
command can use a file's size as the cheap total and still show lines/s:

    >>> import io
    >>> out = io.StringIO()
    >>> with progress("replay", total=100, unit="lines", stream=out, min_seconds=0) as tick:
    ...     tick(60, items=3)
    ...     tick(40, items=2)
    >>> out.getvalue().startswith("replay: done, 5 lines in ")
    True

On a terminal (``console.is_terminal``) a ``rich.progress`` bar with rate and ETA is
drawn on stderr and erased at the end. Otherwise (a pipe, a log file, CI) a line goes
to ``stream`` (stderr) every ``interval`` seconds, and one at the end if the command ran
at least ``min_seconds``, so quick runs print nothing extra.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from rich.console import Console


class Tick(Protocol):
    def __call__(self, n: float = 1, *, items: int | None = None) -> None: ...


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _count(n: float) -> str:
    return f"{int(n):,}"


class _Plain:
    """Plain-text progress: one line every ``interval`` seconds and one at the end."""

    def __init__(
        self,
        description: str,
        total: float | None,
        unit: str,
        stream: TextIO,
        interval: float,
        min_seconds: float,
        clock: Callable[[], float],
    ) -> None:
        self.description = description
        self.total = total
        self.unit = unit
        self.stream = stream
        self.interval = interval
        self.min_seconds = min_seconds
        self.clock = clock
        self._start = clock()
        self._next = self._start + interval
        self._position = 0.0
        self._items = 0
        self._printed = False

    def tick(self, n: float = 1, *, items: int | None = None) -> None:
        self._position += n
        self._items += int(n) if items is None else items
        now = self.clock()
        if now >= self._next:
            # Next line one interval after this one, not after the missed deadline,
            # so a stalled loop does not print a burst of catch-up lines.
            self._next = now + self.interval
            self._write(self._line(now))

    def _line(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        rate = self._items / elapsed
        parts = [f"{self.description}: {_count(self._items)} {self.unit}"]
        if self.total:
            fraction = min(self._position / self.total, 1.0)
            parts.append(f"{fraction:.0%}")
        parts.append(f"{_count(rate)} {self.unit}/s")
        if self.total and 0 < self._position < self.total:
            remaining = elapsed * (self.total - self._position) / self._position
            parts.append(f"ETA {_duration(remaining)}")
        return ", ".join(parts)

    def finish(self) -> None:
        now = self.clock()
        elapsed = now - self._start
        if not self._printed and elapsed < self.min_seconds:
            return
        rate = self._items / max(elapsed, 1e-9)
        self._write(
            f"{self.description}: done, {_count(self._items)} {self.unit} in {elapsed:.1f} s"
            f" ({_count(rate)} {self.unit}/s)"
        )

    def _write(self, line: str) -> None:
        self._printed = True
        self.stream.write(line + "\n")
        self.stream.flush()


def _rich_bar(
    description: str, total: float | None, unit: str, console: Console
) -> tuple[Any, Callable[[float, int | None], None]]:
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        Task,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class ItemsColumn(ProgressColumn):
        """Items done and their rate; the position's units (bytes) may differ."""

        def render(self, task: Task) -> Text:
            items = task.fields.get("items", 0)
            elapsed = task.elapsed or 0.0
            rate = items / elapsed if elapsed > 0 else 0.0
            return Text(f"{_count(items)} {unit}, {_count(rate)} {unit}/s", no_wrap=True)

    bar = Progress(  # narrow enough for an 80-column terminal: one line, never wrapped
        TextColumn("{task.description}"),
        BarColumn(bar_width=20),
        TaskProgressColumn(),
        ItemsColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task(description, total=total, items=0)
    counted = [0]

    def tick(n: float, items: int | None) -> None:
        counted[0] += int(n) if items is None else items
        bar.update(task, advance=n, items=counted[0])

    return bar, tick


@contextmanager
def progress(
    description: str,
    *,
    total: float | None = None,
    unit: str = "items",
    enabled: bool = True,
    stream: TextIO | None = None,
    console: Console | None = None,
    interval: float = 10.0,
    min_seconds: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Tick]:
    """Report the progress of the block; yields ``tick(n=1, *, items=None)``.

    ``enabled=False`` yields a no-op tick (for ``--quiet`` or library callers).
    ``console`` (a rich Console) chooses the mode by ``console.is_terminal``; without
    it the mode follows whether ``stream`` (default stderr) is a terminal.
    """
    if not enabled:
        yield _noop
        return
    out = stream if stream is not None else sys.stderr
    if console is None:
        from rich.console import Console

        console = Console(file=out, stderr=stream is None)
    if console.is_terminal:
        bar, advance = _rich_bar(description, total, unit, console)

        def rich_tick(n: float = 1, *, items: int | None = None) -> None:
            advance(n, items)

        with bar:
            yield rich_tick
        return
    plain = _Plain(description, total, unit, out, interval, min_seconds, clock)
    yield plain.tick
    plain.finish()


def _noop(n: float = 1, *, items: int | None = None) -> None:
    pass
