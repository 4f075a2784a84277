"""What the demo's live view shows: each note once, and which alert events its table lists."""

from __future__ import annotations

import re

from rich.console import Console

from streamon.demo import ALERT_ROWS, MOCK_NOTE, DemoState, alerts_title, note_lines, render


def _state(notes: list[str]) -> DemoState:
    return DemoState("embedded mock", "http://127.0.0.1:1/metrics", 0.0, 60.0, ("sudden",), 100.0, notes)


def _screen(st: DemoState) -> str:
    console = Console(record=True, width=120, force_terminal=True)
    console.print(render(st))
    return re.sub(r"[\s│]+", " ", console.export_text())  # a wrapped note reads as one line


def test_each_note_is_on_the_screen_once() -> None:
    notes = [MOCK_NOTE, "the mock cannot create topics (no controller): auto-created with 4 partitions each"]
    st = _state(notes)
    printed = " ".join(note_lines(notes, headless=False))  # before the live view starts
    screen = printed + " " + _screen(st)
    for note in notes:
        assert screen.count(note) == 1, note
    # Without the live view the notes are printed, once each.
    assert note_lines(notes, headless=True) == [f"streamon demo: note: {n}" for n in notes]


def test_alert_table_says_which_events_it_shows() -> None:
    st = _state([])
    for i in range(13):
        st.add_alert({"status": "firing", "fingerprint": f"f{i}", "alertname": f"Alert{i}", "labels": {}})
    screen = _screen(st)
    assert "Alerts (13 firing): showing the 10 most recent of 13 alert events" in screen
    shown = [i for i in range(13) if f"Alert{i} " in screen]
    assert shown == list(range(13 - ALERT_ROWS, 13))  # the newest ten
    st.add_alert({"status": "resolved", "fingerprint": "f0", "alertname": "Alert0", "labels": {}})
    assert alerts_title(st) == "Alerts (12 firing): showing the 10 most recent of 14 alert events"
    few = _state([])
    few.add_alert({"status": "firing", "fingerprint": "x", "alertname": "A", "labels": {}})
    assert alerts_title(few) == "Alerts (1 firing): 1 alert event"
