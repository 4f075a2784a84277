"""The fault suite's own checks can fail: the stall rule on scraped /metrics texts."""

from __future__ import annotations

from tests.integration.faults.helpers import StallSampler

NOW = 1_000_000.0


def metrics(last_commit_1: float, lag: float, lag_partials: float = 0.0) -> str:
    return (
        "# TYPE streamon_last_commit_timestamp_seconds gauge\n"
        f'streamon_last_commit_timestamp_seconds{{stage="1"}} {last_commit_1}\n'
        f'streamon_last_commit_timestamp_seconds{{stage="2"}} {NOW - 1}\n'
        "# TYPE streamon_consumer_lag_messages gauge\n"
        f'streamon_consumer_lag_messages{{topic="predictions-x",partition="0"}} {lag}\n'
        f'streamon_consumer_lag_messages{{topic="partials-x",partition="1"}} {lag_partials}\n'
    )


def test_a_lagging_worker_without_a_commit_past_the_stall_timeout_is_a_stall() -> None:
    sampler = StallSampler(stall_timeout=20.0, slack=5.0)
    (stall,) = sampler.stalls("w1", metrics(NOW - 26, lag=7), started=NOW - 100, now=NOW)
    assert (stall.worker, stall.stage, stall.lag, stall.seconds_since_commit) == ("w1", "1", 7.0, 26.0)
    assert [s.stage for s in sampler.stalls("w1", metrics(NOW - 1, 0, lag_partials=3), NOW - 100, NOW)] == []
    assert [
        s.stage for s in sampler.stalls("w1", metrics(NOW - 1, 0, lag_partials=3), NOW - 100, NOW + 30)
    ] == ["2"]


def test_no_stall_without_lag_within_the_timeout_or_soon_after_a_start() -> None:
    sampler = StallSampler(stall_timeout=20.0, slack=5.0)
    assert sampler.stalls("w1", metrics(NOW - 500, lag=0), started=NOW - 600, now=NOW) == []  # idle
    assert sampler.stalls("w1", metrics(NOW - 24, lag=9), started=NOW - 600, now=NOW) == []  # within
    # Never committed (0) but started 10 s ago: restoring, not stalled yet.
    assert sampler.stalls("w1", metrics(0, lag=9), started=NOW - 10, now=NOW) == []
