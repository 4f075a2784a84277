"""A seeded random schedule of worker SIGKILLs / restarts and broker SIGKILL + restarts while
two workers consume a stream; afterwards the suite's four checks (see conftest.py).

The schedule is drawn from ``STREAMON_FAULT_SEED`` (default fixed) and printed in any
failure, so a failing schedule can be run again as it was.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.integration.faults import helpers as fh

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("STREAMON_FAULT_SEED", "20261203"))
STEPS = 6  # one chunk of the stream is produced before each step
ACTIONS = ("kill_worker", "restart_worker", "crash_broker", "nothing")
# A broker SIGKILL + restart takes 5-20 s here (a JVM start on a busy 2-core machine):
# kafka.stall_timeout must outlast it with room for the clients to reconnect and redo the
# batch, or a worker rightly gives up (exit 4) in an outage it is expected to ride out. The
# clients' reconnect backoff (10 s at most by default) shrinks with the timeouts.
STALL_TIMEOUT_S = 45.0
RECONNECT_FAST = {"reconnect.backoff.max.ms": 1000}


def schedule(rng: random.Random) -> list[tuple[str, str, float, float]]:
    """(action, worker, seconds before it, seconds down); at least one broker crash and one
    worker SIGKILL, whatever the seed."""
    steps = [
        (
            rng.choice(ACTIONS),
            rng.choice(("w1", "w2")),
            round(rng.uniform(0.5, 3.0), 1),
            round(rng.uniform(0, 4), 1),
        )
        for _ in range(STEPS)
    ]
    kinds = {a for a, *_ in steps}
    if "crash_broker" not in kinds:
        steps[rng.randrange(STEPS)] = ("crash_broker", "-", 1.0, round(rng.uniform(0, 4), 1))
    if "kill_worker" not in {a for a, *_ in steps}:
        i = next(i for i, s in enumerate(steps) if s[0] != "crash_broker")
        steps[i] = ("kill_worker", rng.choice(("w1", "w2")), 1.0, round(rng.uniform(0, 3), 1))
    return steps


def test_random_worker_and_broker_faults_lose_and_double_nothing(scenario, broker):
    rng = random.Random(SEED)
    plan = schedule(rng)
    sc = scenario(partitions=2, stall_timeout=STALL_TIMEOUT_S, client=RECONNECT_FAST)
    preds, labels = fh.stream(4000, seed=SEED % 1000)
    sc.worker("w1")
    sc.worker("w2")
    done: list[str] = []
    try:
        for i, (action, name, before, down) in enumerate(plan):
            lo, hi = i * len(preds) // STEPS, (i + 1) * len(preds) // STEPS
            llo, lhi = i * len(labels) // STEPS, (i + 1) * len(labels) // STEPS
            sc.produce(preds[lo:hi], labels[llo:lhi])
            time.sleep(before)  # let the workers get into the chunk
            if action == "kill_worker":
                sc.kill(name)  # SIGKILL, possibly inside a transaction
                time.sleep(down)
                sc.worker(name)  # same --instance-id and state dir
            elif action == "restart_worker":
                sc.terminate(name)
                sc.worker(name)
            elif action == "crash_broker":
                broker.restart(down_s=down)  # SIGKILL, down, back on the same data and port
            done.append(f"{action}({name}, after {before}s, down {down}s)")
        live = sc.wait_consumed(timeout=90)
    except Exception as exc:
        raise AssertionError(f"seed {SEED}, schedule done {done} of {plan}: {exc}") from None
    expected = sc.check(live)
    assert len(live) > 100 and expected.orphans >= 20  # the checks compared something
    # An outage well below kafka.stall_timeout is ridden out: no running worker gave up (one
    # started while the broker was down refuses to start, exit 3, and is restarted). A broker
    # that took longer to come back (an overloaded machine) may rightly stall one: exit 4.
    longest = max(seconds for _, seconds in broker.outages)
    allowed = () if longest < STALL_TIMEOUT_S - 15 else (4,)
    assert all(code in allowed for _, code in sc.running_exits), (
        f"seed {SEED}, schedule {plan}, broker outages {broker.outages}: workers gave up "
        f"{sc.running_exits}\n{sc.tails(40)}"
    )
