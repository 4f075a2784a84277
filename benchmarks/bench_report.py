"""What a report costs: the replay keeping the series a report draws vs the plain replay
(same events, interleaved, best of N), then collecting and rendering the HTML.

    .venv/bin/python benchmarks/bench_report.py [--n 20000] [--repeat 3]

Prints one markdown table; results in docs/benchmarks.md ("Reports").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the report tests' stream (tests/data/report_stream.py)

from streamon.api import Monitor  # noqa: E402
from tests.data.report_stream import NOW, write  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config, preds, labels = write(Path(tmp))
        monitor = Monitor(config).add_prediction_file(preds).add_label_file(labels)
        best = {"plain": float("inf"), "history": float("inf")}
        result = None
        for _ in range(args.repeat):
            for kind in best:  # interleaved: the machine's noise hits both alike
                t = time.perf_counter()
                r = monitor.run(now=NOW, history=kind == "history")
                best[kind] = min(best[kind], time.perf_counter() - t)
                if kind == "history":
                    result = r
        assert result is not None
        render, page = float("inf"), ""
        for _ in range(args.repeat):
            t = time.perf_counter()
            page = result.report("bench").html
            render = min(render, time.perf_counter() - t)
        t = time.perf_counter()
        experiments = monitor.experiment_reports()
        ab = time.perf_counter() - t
        events = result.predictions + result.labels
        print("| what | value |\n|---|---|")
        print(f"| events (predictions + labels) | {events:,} |")
        print(f"| evaluations | {result.evaluations} |")
        print(f"| replay, plain | {best['plain']:.2f} s ({events / best['plain']:,.0f} events/s) |")
        print(f"| replay keeping the report's series | {best['history']:.2f} s |")
        print(f"| ratio history / plain | {best['history'] / best['plain']:.2f} |")
        n_ab = len(experiments)
        print(f"| collect + render the HTML, with the ab report of {n_ab} experiment | {render:.2f} s |")
        print(f"| of which the ab report | {ab:.2f} s |")
        charts = page.count('class="chart"')
        print(f"| HTML size | {len(page) / 1e6:.1f} MB ({charts} charts) |")


if __name__ == "__main__":
    main()
