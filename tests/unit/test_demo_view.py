"""What the demo's live view shows: each note once, which alert events its table lists, and a
regression model's own table."""

from __future__ import annotations

import re

from rich.console import Console

from streamon.core.stages.evaluate import Sample, Snapshot
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


def test_regression_models_have_their_own_table_and_drift_rows() -> None:
    def sample(name: str, model: str, value: float, **extra: str) -> Sample:
        labels = (("model", model), ("variant", "all"), ("window", "current"), *extra.items())
        return Sample(name, labels, value)

    st = _state([])
    st.snapshot = Snapshot(
        0.0,
        [
            sample("ml_model_accuracy", "fraud-detector", 0.91),
            sample("streamon_predictions_in_window", "fraud-detector", 1000.0),
            sample("streamon_labelled_in_window", "fraud-detector", 800.0),
            sample("ml_model_mae", "credit-limit", 1234.5),
            sample("ml_model_r2", "credit-limit", 0.875),
            sample("ml_model_mean_error", "credit-limit", 512.0),
            sample("streamon_predictions_in_window", "credit-limit", 1000.0),
            sample("streamon_labelled_in_window", "credit-limit", 600.0),
            sample("ml_prediction_drift_psi_score", "credit-limit", 0.4567),
            sample("ml_target_drift_psi_score", "credit-limit", 0.0321),
            sample("ml_data_drift_psi_score", "fraud-detector", 0.15, feature="transaction_amount"),
        ],
    )
    screen = _screen(st)
    assert "Regression models (current window)" in screen
    assert "1,234.5" in screen and "+512.0" in screen and "0.875" in screen
    # The outputs' drift ranks among the features' (prediction first: the largest PSI).
    assert st.top_drift(2) == [
        ("credit-limit", "(prediction)", 0.4567, st.top_drift(2)[0][3]),
        ("fraud-detector", "transaction_amount", 0.15, st.top_drift(2)[1][3]),
    ]
    assert st.coverage() == 0.7  # labelled / predictions over both models
    # The binary table keeps the binary model only.
    perf = screen[screen.index("Performance") : screen.index("Regression models")]
    assert "fraud-detector" in perf and "credit-limit" not in perf


def test_multiclass_models_have_their_own_table_of_averages() -> None:
    def sample(name: str, model: str, value: float, **extra: str) -> Sample:
        labels = (("model", model), ("variant", "all"), ("window", "current"), *extra.items())
        return Sample(name, labels, value)

    st = _state([])
    st.snapshot = Snapshot(
        0.0,
        [
            sample("ml_model_accuracy", "fraud-detector", 0.91),
            sample("ml_model_precision", "fraud-detector", 0.625),
            sample("ml_model_f1_score", "fraud-detector", 0.5),
            sample("ml_model_accuracy", "tx-router", 0.8125),
            sample("ml_model_precision", "tx-router", 0.111, **{"class": "review"}),
            sample("ml_model_precision", "tx-router", 0.222, average="macro"),
            sample("ml_model_f1_score", "tx-router", 0.333, **{"class": "review"}),
            sample("ml_model_f1_score", "tx-router", 0.444, average="weighted"),
            sample("ml_model_f1_score", "tx-router", 0.7071, average="macro"),
            sample("ml_model_log_loss", "tx-router", 0.4321),
            sample("ml_model_top_k_accuracy", "tx-router", 0.9655, k="2"),
            sample("ml_prediction_drift_psi_score", "tx-router", 0.0987),
        ],
    )
    rows = {m: row for m, _v, row in st.perf_rows()}
    assert rows["tx-router"] == {
        "accuracy": 0.8125,
        "macro_f1": 0.7071,
        "log_loss": 0.4321,
        "top2": 0.9655,
        "prediction_psi": 0.0987,
    }
    assert rows["fraud-detector"] == {"accuracy": 0.91, "precision": 0.625}  # its F1 is not shown
    screen = _screen(st)
    assert "Multiclass models (current window)" in screen and "top-2" in screen
    assert "0.707" in screen and "0.432" in screen and "0.966" in screen
    perf = screen[screen.index("Performance") : screen.index("Multiclass models")]
    assert "fraud-detector" in perf and "tx-router" not in perf
