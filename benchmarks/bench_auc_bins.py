"""AUC-ROC and AUC-PR from score histograms: error against scikit-learn per grid, size, time.

Run from the repository root::

    .venv/bin/python benchmarks/bench_auc_bins.py           # 5 seeds x 1e4, 1e5, 1e6 labelled, ~40 s
    .venv/bin/python benchmarks/bench_auc_bins.py --quick   # 2 seeds x 1e4, 1e5

For each candidate grid of score bins (equal width on [0, 1]; a fixed step in log-odds
over [-16, 16] with open end bins, so 0 and 1 fall in the end bins; the union of both,
the shipped ``AUC_EDGES``), on seeded streams of labelled scores with 5% positives, it
prints the largest ``|binned - sklearn|`` over seeds and sizes of AUC-ROC
(``roc_auc_score`` on the raw scores) and of AUC-PR (``average_precision_score``), the
latter both with the step rule on the bins (``ties="bin"``: sklearn applied to the
binned scores) and the expected value under a random order inside each bin
(``ties="spread"``, what the service reports). Then, per grid: the bytes the fine
histograms add to a 1-minute ``BucketSummary.to_bytes()`` of 600 labelled predictions,
the dense bytes they add to every labelled bucket a stage-2 window keeps, and the time
of one evaluation of both AUCs on a merged window.

Streams (scores in [0, 1]):

- ``fraud``: log-odds N(-3, 1.2) for negatives, N(-0.9, 1.5) for positives (AUC ~0.86);
- ``fraud-beta``: Beta(1, 6) / Beta(2, 3) (AUC ~0.87);
- ``near-0``: Beta(0.5, 20) / Beta(1, 12), scores crowded near 0 (AUC ~0.79);
- ``separated``: log-odds N(-5, 1.5) / N(4, 1.5) (AUC ~1.0);
- ``float32``: log-odds N(-6, 3) / N(3, 3) rounded to float32 (AUC ~0.98);
- ``exact-0-1``: ``fraud`` with scores below 0.005 set to 0.0 and above 0.995 to 1.0
  (real ties that sklearn counts as such).

Nothing is asserted; tests/unit/test_auc_bins.py holds the tolerance.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from streamon.core.state.summary import (  # noqa: E402
    AUC_EDGES,
    AUC_NEGATIVE_SCORES,
    AUC_POSITIVE_SCORES,
    BucketSummary,
)
from streamon.core.statistics.classification import auc_pr, auc_roc  # noqa: E402

POSITIVE_RATE = 0.05
BUCKET_LABELS = 600  # labelled predictions in one 1-minute bucket
EXISTING = "equal 200 (score_bins)"  # the default score_bins histograms, kept anyway


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _mix(
    rng: np.random.Generator, n: int, neg: Callable[[int], np.ndarray], pos: Callable[[int], np.ndarray]
):
    y = (rng.random(n) < POSITIVE_RATE).astype(np.int64)
    s = np.where(y == 1, pos(n), neg(n))
    return s, y


def stream(kind: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "fraud":
        return _mix(
            rng, n, lambda k: _expit(rng.normal(-3.0, 1.2, k)), lambda k: _expit(rng.normal(-0.9, 1.5, k))
        )
    if kind == "fraud-beta":
        return _mix(rng, n, lambda k: rng.beta(1.0, 6.0, k), lambda k: rng.beta(2.0, 3.0, k))
    if kind == "near-0":
        return _mix(rng, n, lambda k: rng.beta(0.5, 20.0, k), lambda k: rng.beta(1.0, 12.0, k))
    if kind == "separated":
        return _mix(
            rng, n, lambda k: _expit(rng.normal(-5.0, 1.5, k)), lambda k: _expit(rng.normal(4.0, 1.5, k))
        )
    if kind == "float32":
        s, y = _mix(
            rng, n, lambda k: _expit(rng.normal(-6.0, 3.0, k)), lambda k: _expit(rng.normal(3.0, 3.0, k))
        )
        return s.astype(np.float32).astype(np.float64), y
    if kind == "exact-0-1":
        s, y = stream("fraud", n, seed)
        return np.where(s < 0.005, 0.0, np.where(s > 0.995, 1.0, s)), y
    raise ValueError(kind)


STREAMS = ("fraud", "fraud-beta", "near-0", "separated", "float32", "exact-0-1")


def _logit_edges(step: float, limit: float = 16.0) -> np.ndarray:
    return _expit(np.linspace(-limit, limit, round(2 * limit / step) + 1))


def grids() -> dict[str, np.ndarray]:
    """Candidate inner edges (ascending, inside (0, 1)); a score on an edge goes up."""
    return {
        EXISTING: np.arange(1, 200) / 200,
        "equal 2000": np.arange(1, 2000) / 2000,
        "log-odds 0.05": _logit_edges(0.05),
        "log-odds 0.02": _logit_edges(0.02),
        "log-odds 0.01": _logit_edges(0.01),
        "log-odds 0.1 + score 0.002": np.union1d(_logit_edges(0.1), np.arange(1, 500) / 500),
        "log-odds 0.05 + score 0.002": np.union1d(_logit_edges(0.05), np.arange(1, 500) / 500),
        "log-odds 0.05 + score 0.001 (AUC_EDGES)": AUC_EDGES,
    }


def histograms(edges: np.ndarray, s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b = np.searchsorted(edges, s, side="right")
    m = len(edges) + 1
    return np.bincount(b[y == 1], minlength=m), np.bincount(b[y == 0], minlength=m)


def partial_bytes(edges: np.ndarray | None, seed: int = 7) -> int:
    """``to_bytes()`` of a 1-minute bucket of BUCKET_LABELS labelled fraud-like predictions,
    with the fine histograms on ``edges`` (None: without them, the state before)."""
    s, y = stream("fraud", BUCKET_LABELS, seed)
    summary = BucketSummary()
    predicted = (s >= 0.5).astype(np.int64)
    summary.add_predictions(s, predicted, 200)
    summary.add_labels(y, predicted, s, 200)
    del summary.counts[AUC_POSITIVE_SCORES], summary.counts[AUC_NEGATIVE_SCORES]
    if edges is not None:
        pos, neg = histograms(edges, s, y)
        summary.counts[AUC_POSITIVE_SCORES], summary.counts[AUC_NEGATIVE_SCORES] = pos, neg
    return len(summary.to_bytes())


def eval_time_us(pos: np.ndarray, neg: np.ndarray, repeat: int = 7, number: int = 200) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            auc_roc(pos, neg)
            auc_pr(pos, neg, "spread")
        best = min(best, (time.perf_counter() - t0) / number)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, up to 1e5 labelled")
    args = ap.parse_args()
    seeds = range(2) if args.quick else range(5)
    sizes = (10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000)
    g = grids()
    # err[grid][stream] = [roc, ap bin, ap spread, ap spread at >= 1e5]
    err = {name: {k: [0.0, 0.0, 0.0, 0.0] for k in STREAMS} for name in g}
    last: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for kind in STREAMS:
        print(f"stream {kind} ...", file=sys.stderr, flush=True)
        for n in sizes:
            for seed in seeds:
                s, y = stream(kind, n, seed)
                roc, avg = roc_auc_score(y, s), average_precision_score(y, s)
                for name, edges in g.items():
                    pos, neg = histograms(edges, s, y)
                    e = err[name][kind]
                    spread = abs(auc_pr(pos, neg, "spread") - avg)
                    e[0] = max(e[0], abs(auc_roc(pos, neg) - roc))
                    e[1] = max(e[1], abs(auc_pr(pos, neg, "bin") - avg))
                    e[2] = max(e[2], spread)
                    if n >= 100_000:
                        e[3] = max(e[3], spread)
                    if kind == "fraud":
                        last[name] = (pos, neg)

    n_runs = f"{len(seeds)} seeds x {', '.join(f'{n:.0e}' for n in sizes)} labelled"
    print(f"\n### Largest |error| vs scikit-learn on the raw scores ({n_runs})\n")
    print('AUC-ROC / AUC-PR step rule (`ties="bin"`) / AUC-PR spread (`ties="spread"`), per stream:\n')
    print("| grid | bins | " + " | ".join(STREAMS) + " |")
    print("|---|---:|" + "---|" * len(STREAMS))
    for name, edges in g.items():
        cells = [f"{e[0]:.1e} / {e[1]:.1e} / {e[2]:.1e}" for e in err[name].values()]
        print(f"| {name} | {len(edges) + 1} | " + " | ".join(cells) + " |")

    print("\n### Worst over all streams, and cost\n")
    print(
        "| grid | bins | AUC-ROC | AUC-PR step | AUC-PR spread | AUC-PR spread, >= 1e5 labelled "
        f"| partial of {BUCKET_LABELS} labels (bytes) | dense per labelled bucket (bytes) "
        "| both AUCs on a merged window (µs) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = partial_bytes(None)
    for name, edges in g.items():
        worst = [max(e[i] for e in err[name].values()) for i in range(4)]
        pos, neg = last[name]
        errors = " | ".join(f"{w:.1e}" for w in worst)
        if name == EXISTING:  # the score_bins histograms already kept
            cost = f"{base} (existing) | (existing)"
        else:
            size = partial_bytes(edges)
            cost = f"{size} (+{size - base}) | {2 * 8 * (len(edges) + 1)}"
        print(f"| {name} | {len(edges) + 1} | {errors} | {cost} | {eval_time_us(pos, neg):.0f} |")
    print(f"\nPartial without fine histograms (the score_bins state alone): {base} bytes.")
    window_memory()


def window_memory() -> None:
    """Count-vector bytes an Aggregator keeps (bench_core's part-d fixture: 10k labelled-at-5%
    events over 48h, 1-minute buckets, 24h current + 7d rolling reference), and the fine
    histograms' share of them."""
    from bench_core import build_aggregator, state_nbytes

    agg = build_aggregator(10_000)
    counts, _, kept = state_nbytes(agg)
    fine = 0
    for state in agg.models.values():
        summaries = list(state.totals.values())
        for w in state.windows.values():
            summaries += [*w._fine.values(), *w._coarse.values(), w.current, w.reference]
        for summary in summaries:
            fine += sum(
                summary.counts[k].nbytes
                for k in (AUC_POSITIVE_SCORES, AUC_NEGATIVE_SCORES)
                if k in summary.counts
            )
    print(
        f"Stage-2 window of one model/variant ({kept} summaries kept, labels in every bucket): "
        f"count vectors {counts / 1e6:.1f} MB, of which fine AUC histograms {fine / 1e6:.1f} MB."
    )


if __name__ == "__main__":
    main()
