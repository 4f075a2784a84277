"""Decoding candidates for stage 1, side by side on one batch (docs/benchmarks.md, "Decoding: candidates").

A batch of 2,500 prediction messages like the runtime benchmark's (``events()`` of
bench_runtime.py: 10 features, uuid4 prediction ids) and 2,500 labels for them. Each
candidate turns the batch into what it can give stage 1; the ceiling is ``orjson.loads`` of
each value (a dict, nothing checked). Rounds interleave the candidates; best of N.

- (a) ``Decoder._prediction`` per message: orjson.loads, the hand-written fast path,
  the copy into a Prediction (the decoder before the typed path)
- (b) msgspec: a typed ``msgspec.Struct`` with the schema's constraints, one reused
  ``msgspec.json.Decoder``, per message (decode only, and the whole ``Decoder.predictions``
  = decode + the clock / model checks + the Prediction)
- (c) msgspec, the whole batch at once (``[`` + values joined by ``,`` + ``]`` as
  ``list[Struct]``), decode only; and the same batch with one bad message, which fails the
  batch decode and is then decoded per message
- (a) and (b) over the same messages with one unknown field each, which the typed path
  refuses (msgspec would skip the value without orjson's checks): the cost of its fallback
- (d) pyarrow.json.read_json over the values joined by newlines, into columns; and + rows
  (``Table.to_pylist``, still unchecked dicts)
- (e) polars.read_ndjson, the same; + rows (``DataFrame.to_dicts``)

Then the chosen path where it is used, against the path before it (the same Decoder with
its typed decoders removed: orjson + fast path + fastjsonschema), interleaved:

- stage 1: ``PartitionProcessor.process`` of the 2,500 predictions + 2,500 labels (the
  runtime benchmark's 10-feature model, in-memory join store, a fresh processor per call)
- replay: :func:`replay_files` over JSONL from :mod:`streamon.traffic` (bench_core's row c
  input, configs/monitoring_config.yaml)

    .venv/bin/python benchmarks/bench_decode.py [--rounds 25] [--n 2500] [--replay-n 20000]

pyarrow and polars are only needed here (``pip install pyarrow polars``); a missing one
is skipped.
"""

from __future__ import annotations

import argparse
import copy
import gc
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_runtime import MODEL, events  # noqa: E402

from streamon.core.events import Decoder, Invalid  # noqa: E402


def workload(n: int) -> tuple[list[bytes], list[bytes], float]:
    """``n`` predictions over a minute (a worker batch's span), a label for each, and the wall clock."""
    now = time.time()
    predictions = [value for _key, value in events(n, now - 120.0, 60.0, seed=7, uuids=True)]
    rng = np.random.default_rng(8)
    labels = [
        orjson.dumps({"prediction_id": doc["prediction_id"], "label": int(y), "ts": doc["ts"] + 60.0})
        for doc, y in zip(map(orjson.loads, predictions), rng.random(n) < 0.1, strict=True)
    ]
    return predictions, labels, now


def best(fn: Callable[[], Any], rounds: int) -> float:
    """Best wall time of ``fn`` over ``rounds`` calls (GC paused inside, as in the worker's batches)."""
    times = []
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        gc.enable()
    return min(times)


def candidates(values: list[bytes], kind: str, decoder: Decoder, now: float) -> dict[str, Callable[[], Any]]:
    typed = decoder._typed_prediction if kind == "prediction" else decoder._typed_label
    assert typed is not None
    struct = typed.type
    batch = msgspec.json.Decoder(list[struct])  # type: ignore[valid-type]
    one = decoder._prediction if kind == "prediction" else decoder._label
    many = decoder.predictions if kind == "prediction" else decoder.labels
    bad = [*values[:-1], b'{"prediction_id": 5}']
    # An unknown field (allowed by the schema) is refused by the typed path: the price of the fallback.
    extra = [v[:-1] + b',"source":"web"}' for v in values]

    def batch_or_each(vs: list[bytes]) -> Any:
        try:
            return batch.decode(b"[" + b",".join(vs) + b"]")
        except ValueError:  # one bad message fails the whole batch: per message after
            return many(vs, now)

    table: dict[str, Callable[[], Any]] = {
        "orjson.loads each (ceiling: a dict, unchecked)": lambda: list(map(orjson.loads, values)),
        "(a) the path before: orjson + fast path + dataclass": lambda: [one(v, now) for v in values],
        "(b) msgspec Struct per message, decode only": lambda: list(map(typed.decode, values)),
        "(b) Decoder batch: msgspec per message + checks + dataclass": lambda: many(values, now),
        "(c) msgspec list[Struct] whole batch, decode only": lambda: batch.decode(
            b"[" + b",".join(values) + b"]"
        ),
        "(c) whole batch with 1 bad message (fails, then per message)": lambda: batch_or_each(bad),
        "(a) the path before, every message with an unknown field": lambda: [one(v, now) for v in extra],
        "(b) Decoder batch, every message with an unknown field (falls back)": lambda: many(extra, now),
    }
    try:
        import pyarrow.json as pj

        def arrow() -> Any:
            return pj.read_json(io.BytesIO(b"\n".join(values)))

        table["(d) pyarrow.json.read_json, columns"] = arrow
        table["(d) pyarrow.json.read_json + to_pylist (unchecked dicts)"] = lambda: arrow().to_pylist()
    except ImportError:
        pass
    try:
        import polars as pl

        def frame() -> Any:
            return pl.read_ndjson(io.BytesIO(b"\n".join(values)))

        table["(e) polars.read_ndjson, columns"] = frame
        table["(e) polars.read_ndjson + to_dicts (unchecked dicts)"] = lambda: frame().to_dicts()
    except ImportError:
        pass
    return table


def without_typed(decoder: Decoder) -> Decoder:
    """``decoder`` with its typed path off: what it decoded with before."""
    before = copy.copy(decoder)
    before._typed_prediction = before._typed_label = None
    return before


def bench_use(predictions: list[bytes], labels: list[bytes], now: float, rounds: int, replay_n: int) -> None:
    from bench_runtime import build_profile_file, make_settings, settings_dict

    from streamon.config import load_config
    from streamon.engine import Engine, build_engine
    from streamon.replay import replay_files
    from streamon.traffic import TrafficSpec, generate

    with tempfile.TemporaryDirectory() as tmp:
        profile = Path(tmp) / "profile.json"
        build_profile_file(profile)
        engine = build_engine(make_settings(settings_dict("127.0.0.1:9", profile, ("p", "l"), "dec", 1)))
        typed = engine.decoder()

        def stage1(decoder: Decoder) -> Callable[[], Any]:
            def run() -> Any:
                pp = engine.partition_processor()
                pp.decoder = decoder
                t = time.perf_counter()
                rejected = pp.process(predictions, labels, now)
                elapsed = time.perf_counter() - t
                assert not rejected
                return elapsed

            return run

        preds, labs = generate(TrafficSpec(n=replay_n, rate=10.0))
        p_path, l_path = Path(tmp) / "predictions.jsonl", Path(tmp) / "labels.jsonl"
        p_path.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in preds))
        l_path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in labs))
        replay_engine = build_engine(load_config(ROOT / "configs" / "monitoring_config.yaml"))
        original = Engine.decoder

        def replay(on: bool) -> Callable[[], Any]:
            def run() -> Any:
                t = time.perf_counter()
                if on:
                    result = replay_files(replay_engine, p_path, l_path)
                else:
                    with mock.patch.object(
                        Engine, "decoder", lambda e, check_time=True: without_typed(original(e, check_time))
                    ):
                        result = replay_files(replay_engine, p_path, l_path)
                elapsed = time.perf_counter() - t
                assert result.predictions + result.labels == len(preds) + len(labs)
                return elapsed

            return run

        table = {
            "stage 1 process, path before": stage1(without_typed(typed)),
            "stage 1 process, typed path": stage1(typed),
            "replay_files, path before": replay(False),
            "replay_files, typed path": replay(True),
        }
        seconds = dict.fromkeys(table, float("inf"))
        for _ in range(max(3, rounds // 5)):  # interleaved; the functions time themselves
            for name, fn in table.items():
                gc.collect()
                seconds[name] = min(seconds[name], fn())
    events_n = {"stage": len(predictions) + len(labels), "repla": len(preds) + len(labs)}
    print(f"\nwhere it is used (best of {max(3, rounds // 5)}){'':<29} events/s   x path before")
    names = list(seconds)
    for i, name in enumerate(names):
        before = seconds[names[i - i % 2]]
        n = events_n[name[:5]]
        print(f"  {name:<70} {n / seconds[name]:>10,.0f}   {before / seconds[name]:>13.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--n", type=int, default=2500)
    parser.add_argument("--replay-n", type=int, default=20_000, help="predictions in the replay input")
    args = parser.parse_args()
    predictions, labels, now = workload(args.n)
    decoder = Decoder({MODEL: 0.5})
    # The typed path gives what the path before it gives, on this workload too.
    for values, new, old in (
        (predictions, decoder.predictions, decoder._prediction),
        (labels, decoder.labels, decoder._label),
    ):
        got = new(values, now)
        assert got == [old(v, now) for v in values] and not any(isinstance(e, Invalid) for e in got)
    size = sum(map(len, predictions)) / len(predictions)
    print(f"{args.n} predictions (mean {size:.0f} bytes) and {args.n} labels; best of {args.rounds}")
    for kind, values in (("prediction", predictions), ("label", labels)):
        table = candidates(values, kind, decoder, now)
        seconds = dict.fromkeys(table, float("inf"))
        for _ in range(args.rounds):  # interleaved: each round runs every candidate once
            for name, fn in table.items():
                seconds[name] = min(seconds[name], best(fn, 1))
        ceiling, today = list(seconds.values())[:2]
        print(f"\n{kind}s{'':<64} events/s   x orjson.loads   x (a)")
        for name, t in seconds.items():
            print(f"  {name:<70} {len(values) / t:>10,.0f}   {ceiling / t:>13.2f}   {today / t:>5.2f}")
    bench_use(predictions, labels, now, args.rounds, args.replay_n)


if __name__ == "__main__":
    main()
