"""``streamon ab report``: the A/B analysis of one experiment, from files or from Kafka.

Predictions carry their arm (``variant``) and ``experiment``; labels are joined by
``prediction_id`` (the latest label by event time wins: a second label is a
correction). Per arm: predictions, labelled predictions, confusion counts at the
decision threshold and the business value of every labelled prediction, from the
configured costs by outcome (:func:`~streamon.core.statistics.abmetrics.outcome_values`;
their sum over a window is the
``net_benefit`` of :func:`streamon.core.statistics.business.business_metrics`).

Every treatment arm is compared with the control arm using the tests of
:mod:`streamon.core.statistics.ab` (differences are treatment - control):

- error rate, (FP + FN) / labelled: two-proportion z-test;
- detection rate, TP / (TP + FN) = recall on fraud at the threshold: two-proportion z-test;
- business value per labelled prediction: Welch t-test from :class:`~streamon.core.statistics.ab.Moments`.

Below :data:`~streamon.core.statistics.ab.MIN_SAMPLES` labelled predictions in an arm the status
is ``insufficient_data`` (a test's own status uses that test's sample: for the
detection rate, the labelled frauds) and nothing is significant.

Next to each fixed-horizon test, the always-valid sequential test of the same
difference (:mod:`streamon.core.statistics.sequential`, mSPRT): the experiment is replayed as if it
had been looked at every ``look_every`` seconds of prediction event time (each look sees
the predictions made before it, with their labels), and the report gives the running
minimum of the p-value and the intersection of the confidence sequences over the looks.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamon.core.events import Invalid, Label, Prediction
from streamon.core.statistics.ab import MIN_SAMPLES, Moments, two_proportion_ztest, welch_ttest_from_moments
from streamon.core.statistics.abmetrics import AB_METRICS, metric_inputs, outcome_values, sequential_test
from streamon.core.statistics.business import BusinessCosts
from streamon.core.statistics.sequential import (
    DEFAULT_TAU,
    SequentialResult,
    running,
)
from streamon.engine import Engine
from streamon.errors import InputError
from streamon.replay import read_lines

OUTCOMES = ("true_positive", "false_positive", "true_negative", "false_negative")


def outcome(predicted: int, label: int) -> str:
    """The outcome of a decision ``predicted`` given the true ``label``.

    >>> outcome(1, 0)
    'false_positive'
    """
    if predicted:
        return "true_positive" if label else "false_positive"
    return "false_negative" if label else "true_negative"


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


@dataclass
class Arm:
    """Counts of one arm; ``value`` summarises the business value per labelled prediction."""

    variant: str
    n: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    value: Moments = field(default_factory=Moments)
    # (prediction event time, outcome index in OUTCOMES) of every labelled prediction: the looks.
    labelled_at: list[tuple[float, int]] = field(default_factory=list)

    @property
    def labelled(self) -> int:
        return sum(self.counts.values())

    @property
    def errors(self) -> int:
        return self.counts["false_positive"] + self.counts["false_negative"]

    @property
    def frauds(self) -> int:
        return self.counts["true_positive"] + self.counts["false_negative"]

    def metrics(self) -> dict[str, Any]:
        c = self.counts
        tp, fp, tn, fn = (c[k] for k in OUTCOMES)
        return {
            "variant": self.variant,
            "n": self.n,
            "labelled": self.labelled,
            **{k: c[k] for k in OUTCOMES},
            "accuracy": _ratio(tp + tn, self.labelled),
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "detection_rate": _ratio(tp, tp + fn),
            "error_rate": _ratio(fp + fn, self.labelled),
            "mean_value": self.value.mean,
            "value_std": math.sqrt(self.value.var) if self.value.n >= 2 else math.nan,
            "status": "insufficient_data" if self.labelled < MIN_SAMPLES else "ok",
        }


@dataclass
class ExperimentData:
    experiment: str
    model: str | None
    source: str
    arms: dict[str, Arm] = field(default_factory=dict)
    models: set[str] = field(default_factory=set)
    without_variant: int = 0
    bad: int = 0


def collect(
    predictions: Iterable[Prediction],
    labels: Iterable[Label],
    experiment: str,
    model: str | None,
    costs: BusinessCosts,
    source: str,
) -> ExperimentData:
    """Per-arm counts of ``experiment`` (optionally one ``model``); labels joined by prediction id."""
    latest: dict[str, Label] = {}
    for lab in labels:
        seen = latest.get(lab.prediction_id)
        if seen is None or lab.ts >= seen.ts:
            latest[lab.prediction_id] = lab
    values = outcome_values(costs)
    data = ExperimentData(experiment, model, source)
    per_arm: dict[str, list[float]] = {}
    experiments: set[str] = set()
    for p in predictions:
        experiments.add(p.experiment)
        if p.experiment != experiment or (model is not None and p.model != model):
            continue
        if not p.variant:
            data.without_variant += 1
            continue
        data.models.add(p.model)
        arm = data.arms.get(p.variant)
        if arm is None:
            arm = data.arms[p.variant] = Arm(p.variant)
            per_arm[p.variant] = []
        arm.n += 1
        joined = latest.get(p.prediction_id)
        if joined is None:
            continue
        kind = outcome(p.predicted, int(joined.label))  # a binary model: 0 or 1
        arm.counts[kind] += 1
        arm.labelled_at.append((p.ts, OUTCOMES.index(kind)))
        per_arm[p.variant].append(values[kind])
    for name, vals in per_arm.items():
        data.arms[name].value.update(np.asarray(vals, dtype=np.float64))
    if not data.arms:
        found = ", ".join(sorted(e for e in experiments if e)) or "none"
        which = f" of model {model!r}" if model else ""
        raise InputError(
            f"no predictions{which} with experiment {experiment!r} and a variant in {source} "
            f"(experiments found: {found})"
        )
    return data


def decode_events(raws: Iterable[bytes | None], decode: Any, bad: list[int]) -> Iterator[Any]:
    """The valid events of ``raws`` (blank lines and tombstones skipped, the invalid counted in ``bad``)."""
    for raw in raws:
        if raw is None or not raw.strip():
            continue
        ev = decode(raw)
        if isinstance(ev, Invalid):
            bad[0] += 1
        else:
            yield ev


def collect_from_files(
    engine: Engine, predictions: Path, labels: Path | None, experiment: str, model: str | None = None
) -> ExperimentData:
    """Replay-style input: JSONL files of predictions and labels (field names from the config)."""
    decoder = engine.decoder(check_time=False)
    pred_lines = read_lines(predictions)
    label_lines = read_lines(labels) if labels is not None else []
    bad = [0]
    data = collect(
        decode_events(pred_lines, decoder.prediction, bad),
        list(decode_events(label_lines, decoder.label, bad)),
        experiment,
        model,
        engine.evaluation.costs,
        str(predictions),
    )
    data.bad = bad[0]
    return data


def read_topic(engine: Engine, topic: str) -> list[bytes | None]:
    """Every committed message value of ``topic`` as it stands now."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    from streamon.kafka_client import kafka_client_config
    from streamon.simulate import cluster_address_check, kafka_logger

    k = engine.settings.kafka
    consumer = Consumer(
        {
            **kafka_client_config(engine.settings),  # secrets resolved, auth failures in one line
            "group.id": f"streamon-ab-{uuid.uuid4().hex[:8]}",  # never commits
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "socket.timeout.ms": 5000,
            "logger": kafka_logger(),
        }
    )
    try:
        topics = cluster_address_check(consumer, k.bootstrap_servers)
        if topic not in topics:
            raise InputError(f"topic {topic} not found at {k.bootstrap_servers}")
        todo: dict[int, int] = {}
        for part in range(topics[topic]):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
            if high > low:
                todo[part] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in todo])
        out: list[bytes | None] = []
        while todo:
            msgs = consumer.consume(5000, timeout=2.0)
            if not msgs:
                break
            for m in msgs:
                err = m.error()
                at = m.partition()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF and at is not None:
                        todo.pop(at, None)
                    continue
                offset = m.offset()
                if at is None or offset is None or at not in todo or offset >= todo[at]:
                    continue
                out.append(m.value())
                if offset + 1 >= todo[at]:
                    todo.pop(at)
        return out
    finally:
        consumer.close()


def collect_from_kafka(engine: Engine, experiment: str, model: str | None = None) -> ExperimentData:
    """The config's predictions and labels topics, read from the beginning to their current end."""
    t = engine.settings.kafka.topics
    decoder = engine.decoder(check_time=False)
    bad = [0]
    preds = read_topic(engine, t.predictions)
    labels = read_topic(engine, t.labels)
    data = collect(
        decode_events(preds, decoder.prediction, bad),
        list(decode_events(labels, decoder.label, bad)),
        experiment,
        model,
        engine.evaluation.costs,
        f"{engine.settings.kafka.bootstrap_servers} ({t.predictions}, {t.labels})",
    )
    data.bad = bad[0]
    return data


def _control(arms: dict[str, Arm], wanted: str | None) -> str:
    if wanted is not None:
        if wanted not in arms:
            raise InputError(f"control arm {wanted!r} not found (arms: {', '.join(sorted(arms))})")
        return wanted
    for name in ("A", "control"):
        if name in arms:
            return name
    return sorted(arms)[0]


MAX_LOOKS = 100_000


def look_edges(times: Iterable[float], look_every: float) -> np.ndarray:
    """Ends of the looks: multiples of ``look_every`` after the first event, the last one past the newest.

    A look at edge ``e`` sees the labelled predictions with event time ``< e``.

    >>> look_edges([3600.5, 7300.0], 3600.0).tolist()
    [7200.0, 10800.0]
    """
    ts = np.fromiter(times, dtype=np.float64)
    if ts.size == 0:
        return np.zeros(0)
    first = math.floor(ts.min() / look_every) * look_every
    count = math.floor((ts.max() - first) / look_every) + 1
    if count > MAX_LOOKS:
        raise InputError(
            f"--look-every {look_every:g}s makes {count:,} looks over this experiment (max {MAX_LOOKS:,}); "
            "use a longer interval such as 1h"
        )
    return first + look_every * np.arange(1, count + 1, dtype=np.float64)


def _counts_at(arm: Arm, edges: np.ndarray) -> np.ndarray:
    """Cumulative ``[tp, fp, tn, fn]`` of ``arm`` at every look edge, shape (looks, 4)."""
    out = np.zeros((edges.size, len(OUTCOMES)), dtype=np.int64)
    if arm.labelled_at:
        ts = np.array([t for t, _ in arm.labelled_at], dtype=np.float64)
        kind = np.array([k for _, k in arm.labelled_at], dtype=np.int64)
        for k in range(len(OUTCOMES)):
            out[:, k] = np.searchsorted(np.sort(ts[kind == k]), edges, side="left")
    return out


def sequential_looks(
    ctrl: Arm, arm: Arm, values: dict[str, float], alpha: float, tau: float, look_every: float
) -> dict[str, tuple[SequentialResult | None, SequentialResult | None]]:
    """The mSPRT of each compared metric: (folded over the looks, the last counted look alone).

    The fold is :func:`streamon.core.statistics.sequential.running`; the last look's own interval is
    what the confidence sequence would be without the intersection over earlier looks.
    """
    edges = look_edges((t for a in (ctrl, arm) for t, _ in a.labelled_at), look_every)
    c_a, c_b = _counts_at(ctrl, edges), _counts_at(arm, edges)
    per_metric: dict[str, list[SequentialResult]] = {metric: [] for metric in AB_METRICS}
    for row_a, row_b in zip(c_a, c_b, strict=True):
        for metric, is_rate, args in metric_inputs(row_a, row_b, values):
            per_metric[metric].append(sequential_test(is_rate, args, alpha, tau))
    out: dict[str, tuple[SequentialResult | None, SequentialResult | None]] = {}
    for metric, looks in per_metric.items():
        counted = [r for r in looks if r.status == "ok" and not math.isnan(r.p_value)]
        out[metric] = (running(looks), counted[-1] if counted else None)
    return out


def _proportion_json(res: Any, looks: Any) -> dict[str, Any]:
    """A two-proportion z-test's row of the JSON report, with its sequential result."""
    return {
        "test": "two_proportion_ztest",
        "control": res.rate_a,
        "treatment": res.rate_b,
        "diff": res.diff,
        "statistic": res.z,
        "p_value": res.p_value,
        "ci_low": res.ci_low,
        "ci_high": res.ci_high,
        "effect_size": res.effect_size,
        "effect_size_kind": "cohens_h",
        "significant": res.significant,
        "status": res.status,
        "sequential": _sequential_json(*looks),
        "var_control": res.rate_a * (1 - res.rate_a),
        "var_treatment": res.rate_b * (1 - res.rate_b),
    }


def _sequential_json(r: SequentialResult | None, last: SequentialResult | None = None) -> dict[str, Any]:
    if r is None:
        return {"test": "msprt", "status": "insufficient_data", "looks": 0}
    return {
        "test": "msprt",
        "diff": r.diff,
        "p_value": r.p_value if r.looks else math.nan,
        "cs_low": r.cs_low if r.looks else math.nan,
        "cs_high": r.cs_high if r.looks else math.nan,
        # The last look's own interval, before the intersection with the earlier looks'.
        "last_look_cs_low": last.cs_low if last is not None and r.looks else math.nan,
        "last_look_cs_high": last.cs_high if last is not None and r.looks else math.nan,
        "significant": r.significant and r.looks > 0,
        "status": r.status,
        "looks": r.looks,
    }


# --------------------------------------------------------------------------- decision aids

POWER = 0.8  # of the fixed-horizon sample size
NEGLIGIBLE_EFFECT = 0.01  # |Cohen's h or d| below which the observed effect counts as about zero
UNITS = {
    "error_rate": "labelled predictions",
    "detection_rate": "labelled frauds",
    "business_value": "labelled predictions",
}
METRIC_NAMES = {
    "error_rate": "error rate",
    "detection_rate": "detection rate",
    "business_value": "value/pred",
}
DECISION_METRIC = "business_value"


def fixed_sample_size(
    is_rate: bool, a: float, b: float, var_a: float, var_b: float, alpha: float, power: float = POWER
) -> float:
    """Per-arm sample size of the two-sided fixed-horizon test to detect ``b - a`` with ``power``.

    Rates (``a``, ``b`` the two rates): ``(z_{1-alpha/2} sqrt(2 p (1-p)) + z_power sqrt(a(1-a) +
    b(1-b)))^2 / (b-a)^2`` with ``p = (a+b)/2`` (pooled under the null, as the z-test).
    Means: ``(z_{1-alpha/2} + z_power)^2 (var_a + var_b) / (b-a)^2``. ``inf`` for no difference.

    >>> round(fixed_sample_size(True, 0.05, 0.07, 0, 0, 0.05))
    2212
    >>> round(fixed_sample_size(False, 1.0, 1.5, 1.0, 1.0, 0.05))
    63
    """
    from scipy import stats

    diff = b - a
    if not math.isfinite(diff):
        return math.nan
    if diff == 0:
        return math.inf
    z_a = float(stats.norm.ppf(1 - alpha / 2))
    z_b = float(stats.norm.ppf(power))
    if is_rate:
        p = (a + b) / 2
        root = z_a * math.sqrt(2 * p * (1 - p)) + z_b * math.sqrt(a * (1 - a) + b * (1 - b))
        return root * root / (diff * diff)
    return (z_a + z_b) ** 2 * (var_a + var_b) / (diff * diff)


def _sample_size(key: str, r: dict[str, Any], have: dict[str, int], alpha: float) -> dict[str, Any]:
    """What the fixed-horizon test of one metric would still need, at the observed effect."""
    is_rate = key != "business_value"
    effect = r["effect_size"]
    n = fixed_sample_size(is_rate, r["control"], r["treatment"], r["var_control"], r["var_treatment"], alpha)
    needed = math.ceil(n) if math.isfinite(n) else None
    return {
        "power": POWER,
        "unit": UNITS[key],
        "have": have,
        "needed_per_arm": needed,
        "more": {arm: max(0, needed - k) for arm, k in have.items()} if needed is not None else None,
        # An effect this small is mostly noise: the number above then says little.
        "negligible_effect": isinstance(effect, float) and abs(effect) < NEGLIGIBLE_EFFECT,
    }


def _narrower_note(key: str, fixed: dict[str, Any], seq: dict[str, Any], alpha: float) -> str | None:
    """Why the confidence sequence is narrower than the fixed CI, when it is (None otherwise)."""
    if not seq.get("looks"):
        return None
    cs = seq["cs_high"] - seq["cs_low"]
    ci = fixed["ci_high"] - fixed["ci_low"]
    if not (math.isfinite(cs) and math.isfinite(ci)) or cs >= ci:
        return None
    fmt = ",.2f" if key == "business_value" else ".4f"
    name = METRIC_NAMES[key]
    last_low, last_high = seq["last_look_cs_low"], seq["last_look_cs_high"]
    if math.isfinite(last_high - last_low) and last_high - last_low >= ci:
        cuts = (("lower", seq["cs_low"] > last_low), ("upper", seq["cs_high"] < last_high))
        ends = " and ".join(end for end, cut in cuts if cut)
        why = (
            f"{name}: the confidence sequence is narrower than the fixed CI because it is the intersection "
            f"of the intervals of all {seq['looks']} looks, and earlier looks' intervals cut its {ends} "
            f"end; the last look alone gives [{last_low:{fmt}}, {last_high:{fmt}}], wider than the fixed CI "
            "as at every single look."
        )
        if not seq["cs_low"] <= fixed["diff"] <= seq["cs_high"]:
            return why + (
                f" It excludes the latest estimate {fixed['diff']:+{fmt}}: the looks disagree, which is "
                "unlikely for one constant difference, so the difference changed during the experiment "
                "(e.g. one arm drifted) and the sequence, valid for a constant difference, does not "
                "describe it"
            )
        return why + (
            f" The intersection keeps the {1 - alpha:.0%} coverage: every look's interval covers a constant "
            "difference at all looks at once (under the normal approximation with plug-in variances, least "
            "accurate at the early looks)"
        )
    # At one look the sequence is wider than a z-interval (2 ln(1/alpha) >= z^2); narrower than the
    # Welch interval only when Student's t with few degrees of freedom exceeds its normal factor.
    dof = fixed.get("dof")
    return (
        f"{name}: the confidence sequence uses the normal approximation, the fixed CI Student's t"
        + (f" with {dof:.1f} degrees of freedom" if isinstance(dof, float) and math.isfinite(dof) else "")
        + ", whose quantile is larger here: with so few effective degrees of freedom trust the wider interval"
    )


def recommendation(test: dict[str, Any], alpha: float) -> dict[str, Any]:
    """Ship the treatment, keep the control, or keep collecting: from the always-valid test only.

    The decision metric is the business value per labelled prediction (the configured costs
    weigh every outcome); the fixed-horizon test is not used, as it is valid at one look
    decided in advance and the report may be read at any time. A significant change of the
    detection rate the other way is named as a caveat.
    """
    ctrl, arm = test["control"], test["treatment"]
    value = test[DECISION_METRIC]
    seq = value["sequential"]
    size = value["sample_size"]
    if test["status"] != "ok" or not seq.get("looks"):
        line = (
            f"keep collecting: fewer than {MIN_SAMPLES} labelled predictions in an arm "
            f"({ctrl} vs {arm}), nothing can be decided yet"
        )
        return {"decision": "keep_collecting", "arm": None, "line": line}
    detail = (
        f"value/pred {value['diff']:+,.2f} ({arm} - {ctrl}), always-valid p {_p(seq['p_value'])}, "
        f"{1 - alpha:.0%} confidence sequence [{seq['cs_low']:,.2f}, {seq['cs_high']:,.2f}]"
    )
    if seq["significant"]:
        better = value["diff"] > 0
        decision, chosen = ("ship", arm) if better else ("keep", ctrl)
        det = test["detection_rate"]["sequential"]
        caveat = ""
        if det.get("significant") and (det["diff"] < 0) == better:
            worse = arm if better else ctrl
            caveat = f"; but {worse}'s detection rate is significantly lower ({det['diff']:+.4f})"
        verb = "ship" if better else "keep"
        return {"decision": decision, "arm": chosen, "line": f"{verb} {chosen}: {detail}{caveat}"}
    if size.get("needed_per_arm") is not None:
        more = (
            f"at the observed difference a fixed-horizon test needs {size['needed_per_arm']:,} labelled "
            f"predictions per arm ({POWER:.0%} power), "
            + ", ".join(f"{k:,} more in {a}" for a, k in size["more"].items())
        )
    else:
        more = "no difference observed: no sample size would detect it"
    if size.get("negligible_effect"):
        more += (
            f"; the observed effect is about zero (|d| {abs(value['effect_size']):.3f} < "
            f"{NEGLIGIBLE_EFFECT:g}): the arms may simply perform alike"
        )
    return {
        "decision": "keep_collecting",
        "arm": None,
        "line": f"keep collecting: the always-valid test has not separated {arm} from {ctrl} "
        f"({detail}); {more}",
    }


def analyse(
    data: ExperimentData,
    costs: BusinessCosts,
    control: str | None = None,
    alpha: float = 0.05,
    tau: float = DEFAULT_TAU,
    look_every: float = 3600.0,
) -> dict[str, Any]:
    """The report as a JSON-ready dict (NaN where a number is undefined).

    ``tau`` is the mSPRT mixing scale and ``look_every`` the interval of prediction event
    time between the replayed looks of the sequential tests.
    """
    if not (tau > 0 and math.isfinite(tau)):
        raise InputError(f"--sequential-tau must be a positive number (got {tau:g})")
    if not (look_every > 0 and math.isfinite(look_every)):
        raise InputError(f"--look-every must be a positive duration (got {look_every:g}s)")
    values = outcome_values(costs)
    ctrl_name = _control(data.arms, control)
    ctrl = data.arms[ctrl_name]
    tests = []
    for name in sorted(data.arms):
        if name == ctrl_name:
            continue
        arm = data.arms[name]
        err = two_proportion_ztest(ctrl.errors, ctrl.labelled, arm.errors, arm.labelled, alpha)
        det = two_proportion_ztest(
            ctrl.counts["true_positive"], ctrl.frauds, arm.counts["true_positive"], arm.frauds, alpha
        )
        val = welch_ttest_from_moments(
            ctrl.value.n, ctrl.value.mean, ctrl.value.var, arm.value.n, arm.value.mean, arm.value.var, alpha
        )
        status = "insufficient_data" if min(ctrl.labelled, arm.labelled) < MIN_SAMPLES else "ok"
        seq = sequential_looks(ctrl, arm, values, alpha, tau, look_every)
        test: dict[str, Any] = {
            "control": ctrl_name,
            "treatment": name,
            "status": status,
            "error_rate": _proportion_json(err, seq["error_rate"]),
            "detection_rate": _proportion_json(det, seq["detection_rate"]),
            "business_value": {
                "test": "welch_ttest",
                "control": val.mean_a,
                "treatment": val.mean_b,
                "diff": val.diff,
                "statistic": val.t,
                "dof": val.dof,
                "p_value": val.p_value,
                "ci_low": val.ci_low,
                "ci_high": val.ci_high,
                "effect_size": val.effect_size,
                "effect_size_kind": "cohens_d",
                "significant": val.significant,
                "status": val.status,
                "sequential": _sequential_json(*seq["business_value"]),
                "var_control": ctrl.value.var,
                "var_treatment": arm.value.var,
            },
        }
        have = {
            "error_rate": {ctrl_name: ctrl.labelled, name: arm.labelled},
            "detection_rate": {ctrl_name: ctrl.frauds, name: arm.frauds},
            "business_value": {ctrl_name: ctrl.labelled, name: arm.labelled},
        }
        for key in AB_METRICS:
            r = test[key]
            r["sample_size"] = _sample_size(key, r, have[key], alpha)
            r["narrower_note"] = _narrower_note(key, r, r["sequential"], alpha)
        test["recommendation"] = recommendation(test, alpha)
        tests.append(test)
    low = [a.variant for a in data.arms.values() if a.labelled < MIN_SAMPLES]
    notes = []
    if len(data.arms) < 2:
        notes.append(f"only one arm ({ctrl_name}): nothing to compare")
    if low:
        notes.append(f"fewer than {MIN_SAMPLES} labelled predictions in arm(s) {', '.join(sorted(low))}")
    if data.without_variant:
        notes.append(f"{data.without_variant} predictions of the experiment have no variant (skipped)")
    if data.bad:
        notes.append(f"{data.bad} invalid events skipped")
    return {
        "experiment": data.experiment,
        "model": data.model,
        "models": sorted(data.models),
        "source": data.source,
        "control": ctrl_name,
        "alpha": alpha,
        "sequential": {"method": "msprt", "tau": tau, "look_every_s": look_every},
        "min_labelled_per_arm": MIN_SAMPLES,
        "status": "insufficient_data" if low or len(data.arms) < 2 else "ok",
        "values_per_outcome": outcome_values(costs),
        "arms": [data.arms[name].metrics() for name in sorted(data.arms)],
        "tests": tests,
        "recommendations": [t["recommendation"]["line"] for t in tests],
        "notes": notes,
    }


# --------------------------------------------------------------------------- rendering


def _num(value: Any, fmt: str = ".4f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, fmt)


def _p(value: Any) -> str:
    return "<1e-300" if value == 0 else _num(value, ".4g")


def print_report(report: dict[str, Any]) -> None:
    """The report as rich tables on stdout."""
    from rich.console import Console
    from rich.table import Table

    from streamon.config import format_duration

    console = Console()
    if not console.is_terminal:  # piped: do not squeeze the tables into 80 columns
        console = Console(width=max(console.width, 140))
    status = report["status"]
    colour = "green" if status == "ok" else "yellow"
    models = ", ".join(report["models"])
    console.print(
        f"[bold]A/B report[/bold] experiment [bold]{report['experiment']}[/bold] "
        f"(model {models}; control {report['control']}; alpha {report['alpha']:g}) "
        f"status [{colour}]{status}[/{colour}]"
    )
    arms = Table(title="Arms", title_justify="left")
    for col in ("arm", "n", "labelled", "accuracy", "precision", "recall", "detection rate", "value/pred"):
        arms.add_column(col, justify="left" if col == "arm" else "right")
    for a in report["arms"]:
        name = a["variant"] + (" (control)" if a["variant"] == report["control"] else "")
        if a["status"] != "ok":
            name += " [yellow]insufficient data[/yellow]"
        arms.add_row(
            name,
            f"{a['n']:,}",
            f"{a['labelled']:,}",
            _num(a["accuracy"]),
            _num(a["precision"]),
            _num(a["recall"]),
            _num(a["detection_rate"]),
            _num(a["mean_value"], ",.2f"),
        )
    console.print(arms)
    if report["tests"]:
        tests = Table(title="Treatment vs control (difference = treatment - control)", title_justify="left")
        for col in ("comparison", "metric", "control", "treatment", "diff", "95% CI", "effect", "p-value"):
            tests.add_column(col, justify="left" if col in ("comparison", "metric") else "right")
        tests.add_column("significant")
        labels = {
            "error_rate": "error rate (z)",
            "detection_rate": "detection rate (z)",
            "business_value": "value/pred (Welch t)",
        }
        for t in report["tests"]:
            for key, label in labels.items():
                r = t[key]
                fmt = ",.2f" if key == "business_value" else ".4f"
                sig = (
                    "[yellow]insufficient data[/yellow]"
                    if r["status"] != "ok"
                    else ("[bold green]yes[/bold green]" if r["significant"] else "no")
                )
                h = "h" if r["effect_size_kind"] == "cohens_h" else "d"
                tests.add_row(
                    f"{t['treatment']} vs {t['control']}",
                    label,
                    _num(r["control"], fmt),
                    _num(r["treatment"], fmt),
                    _num(r["diff"], "+" + fmt),
                    f"[{_num(r['ci_low'], fmt)}, {_num(r['ci_high'], fmt)}]",
                    f"{h}={_num(r['effect_size'], '.3f')}",
                    _p(r["p_value"]),
                    sig,
                )
        tests.columns[5].header = f"{1 - report['alpha']:.0%} CI"
        console.print(tests)
        seq = report["sequential"]
        table = Table(
            title=f"Sequential tests, valid under continuous monitoring (mSPRT, tau {seq['tau']:g}, "
            f"a look every {format_duration(seq['look_every_s'])} of event time)",
            title_justify="left",
        )
        for col in ("comparison", "metric", "diff", f"{1 - report['alpha']:.0%} conf. sequence"):
            table.add_column(col, justify="left" if col in ("comparison", "metric") else "right")
        for col in ("looks", "always-valid p", "fixed p"):
            table.add_column(col, justify="right")
        table.add_column("significant")
        for t in report["tests"]:
            for key, label in labels.items():
                fixed, r = t[key], t[key]["sequential"]
                fmt = ",.2f" if key == "business_value" else ".4f"
                sig = (
                    "[yellow]insufficient data[/yellow]"
                    if r["status"] != "ok" or not r["looks"]
                    else ("[bold green]yes[/bold green]" if r["significant"] else "no")
                )
                table.add_row(
                    f"{t['treatment']} vs {t['control']}",
                    label.split(" (")[0],
                    _num(fixed["diff"], "+" + fmt),
                    f"[{_num(r.get('cs_low'), fmt)}, {_num(r.get('cs_high'), fmt)}]",
                    str(r["looks"]),
                    _p(r.get("p_value")),
                    _p(fixed["p_value"]),
                    sig,
                )
        console.print(table)
        for t in report["tests"]:
            for key in AB_METRICS:
                if t[key]["narrower_note"]:
                    console.print(f"why: {t[key]['narrower_note']}", highlight=False)
        for t in report["tests"]:
            for key in AB_METRICS:
                console.print(f"sample size: {t['treatment']} vs {t['control']}: {_size_line(key, t[key])}")
        for t in report["tests"]:
            rec = t["recommendation"]
            colour = {"ship": "bold green", "keep": "bold yellow"}.get(rec["decision"], "bold")
            console.print(f"[{colour}]recommendation[/{colour}]: {rec['line']}", highlight=False)
    for note in report["notes"]:
        console.print(f"note: {note}")


def _size_line(key: str, r: dict[str, Any]) -> str:
    size = r["sample_size"]
    name, unit = METRIC_NAMES[key], size["unit"]
    if size["needed_per_arm"] is None:
        line = f"{name}: no difference observed (or no data), no sample size would detect it"
    else:
        more = ", ".join(f"{k:,} more in {a}" for a, k in size["more"].items())
        line = (
            f"{name}: the fixed-horizon test needs {size['needed_per_arm']:,} {unit} per arm to detect the "
            f"observed difference with {size['power']:.0%} power ({more})"
        )
    if size["negligible_effect"]:
        symbol = "h" if r["effect_size_kind"] == "cohens_h" else "d"
        line += (
            f"; note: the observed effect is about zero (|{symbol}| {abs(r['effect_size']):.3f} < "
            f"{NEGLIGIBLE_EFFECT:g}), so this number mostly reflects noise: the arms may simply perform alike"
        )
    return line
