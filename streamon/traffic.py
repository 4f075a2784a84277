"""Fraud-like prediction and label traffic, with drift and degradation on demand.

Models named in ``TrafficSpec.regression`` are regression models instead: a credit-limit
model whose prediction is an amount (``value``) and whose label is the true amount (see
:func:`_regression_events`). Models named in ``TrafficSpec.multiclass`` are multiclass
models: a transaction router whose prediction is a probability per class (``scores``) and
whose label is the true class (see :func:`_multiclass_events`). Binary events are the same
with or without them.

Used by ``streamon simulate``, the demo, the tests and the benchmarks. Seeded, so a
given set of parameters always produces the same events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CATEGORIES = ("grocery", "electronics", "travel", "gaming", "fuel", "restaurants", "fashion", "pharmacy")
BASE_CATEGORY_P = np.array([0.30, 0.12, 0.08, 0.05, 0.15, 0.15, 0.10, 0.05])
SHIFTED_CATEGORY_P = np.array([0.10, 0.30, 0.20, 0.20, 0.05, 0.05, 0.05, 0.05])


@dataclass
class TrafficSpec:
    """What to generate. Times are epoch seconds; ``drift_at`` is an offset from ``start``."""

    n: int = 10_000
    start: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    rate: float = 10.0  # predictions per second of event time
    models: tuple[str, ...] = ("fraud-detector",)
    variants: tuple[str, ...] = ()  # A/B arms, e.g. ("A", "B"); empty = no experiment
    experiment: str = "exp-1"
    fraud_rate: float = 0.03
    label_fraction: float = 1.0  # share of predictions that ever get a label
    label_delay_s: float = 600.0  # mean of an exponential delay
    label_noise: float = 0.0  # share of labels flipped
    drift_at: float | None = None  # offset from start when drift begins
    drift: tuple[str, ...] = ("sudden",)  # sudden | categorical | missing | calibration | degrade
    seed: int = 7
    extra: dict[str, Any] = field(default_factory=dict)
    # Models of ``models`` that are regression models (credit limits, see _regression_events).
    regression: tuple[str, ...] = ()
    # Models of ``models`` that are multiclass models (a transaction router, see
    # _multiclass_events), and the classes of each (default: MULTICLASS_CLASSES).
    multiclass: tuple[str, ...] = ()
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)


def generate(spec: TrafficSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(predictions, labels), each sorted by event time.

    >>> preds, labels = generate(TrafficSpec(n=100, label_fraction=0.5))
    >>> len(preds), 0 < len(labels) < 100, sorted(preds[0]) == sorted(preds[1])
    (100, True, True)
    """
    rng = np.random.default_rng(spec.seed)
    n = spec.n
    ts = spec.start + np.sort(rng.uniform(0, n / spec.rate, n))
    drifted = np.zeros(n, dtype=bool) if spec.drift_at is None else ts >= spec.start + spec.drift_at
    fraud = rng.random(n) < spec.fraud_rate

    amount = rng.lognormal(3.5, 1.0, n) * np.where(fraud, 3.0, 1.0)
    hour = rng.integers(0, 24, n)
    days = rng.exponential(5.0, n)
    cat_base = rng.choice(len(CATEGORIES), n, p=BASE_CATEGORY_P)
    cat_shift = rng.choice(len(CATEGORIES), n, p=SHIFTED_CATEGORY_P)
    if "sudden" in spec.drift:
        amount = np.where(drifted, amount * 2.5 + 40.0, amount)
        days = np.where(drifted, days * 3.0, days)
    category = np.where(drifted & ("categorical" in spec.drift), cat_shift, cat_base)
    missing = drifted & ("missing" in spec.drift) & (rng.random(n) < 0.4)

    good = np.where(fraud, rng.beta(6.0, 2.0, n), rng.beta(1.2, 9.0, n))
    noise = rng.beta(2.0, 2.0, n)
    score = good
    if "degrade" in spec.drift:
        score = np.where(drifted, 0.25 * good + 0.75 * noise, score)
    if "calibration" in spec.drift:
        score = np.where(drifted, np.clip(score * 1.6, 0, 1), score)

    variant = rng.choice(len(spec.variants), n) if spec.variants else None
    model = rng.choice(len(spec.models), n)
    latency = rng.gamma(2.0, 8.0, n)
    labelled = rng.random(n) < spec.label_fraction
    delay = rng.exponential(spec.label_delay_s, n)
    flipped = rng.random(n) < spec.label_noise

    # Drawn from a stream of their own: the binary events stay what they are without them.
    reg = _regression_events(spec, drifted) if spec.regression else None
    multi = {
        name: _multiclass_events(spec, drifted, spec.classes.get(name, MULTICLASS_CLASSES))
        for name in spec.multiclass
    }
    predictions: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    for i in range(n):
        pid = f"p-{spec.seed}-{i:08d}"
        p: dict[str, Any] = {
            "prediction_id": pid,
            "model": spec.models[model[i]],
            "model_version": "1.0.0",
            "ts": round(float(ts[i]), 3),
            "score": round(float(score[i]), 6),
            "entity_id": f"card-{rng.integers(0, 1_000_000)}",
            "latency_ms": round(float(latency[i]), 3),
            "amount": round(float(amount[i]), 2),
            "features": {
                "transaction_amount": None if missing[i] else round(float(amount[i]), 2),
                "merchant_category": CATEGORIES[category[i]],
                "transaction_hour": int(hour[i]),
                "days_since_last_transaction": round(float(days[i]), 3),
            },
        }
        if variant is not None:
            p["variant"] = spec.variants[variant[i]]
            p["experiment"] = spec.experiment
        truth: float = int(fraud[i]) ^ int(flipped[i])
        if reg is not None and p["model"] in spec.regression:
            del p["score"]
            p["value"], truth, p["features"] = reg[0][i], reg[1][i], reg[2][i]
        elif multi and p["model"] in multi:
            events = multi[p["model"]]
            del p["score"]
            p["scores"], truth, p["features"] = events[0][i], events[1][i], events[2][i]  # type: ignore[assignment]
        predictions.append(p)
        if labelled[i]:
            labels.append({"prediction_id": pid, "label": truth, "ts": round(float(ts[i] + delay[i]), 3)})
    labels.sort(key=lambda e: e["ts"])
    return predictions, labels


REGIONS = ("north", "south", "east", "west")


def _regression_events(
    spec: TrafficSpec, drifted: np.ndarray
) -> tuple[list[float], list[float], list[dict[str, Any]]]:
    """(predicted values, true values, features) of ``spec.n`` credit-limit predictions.

    The true limit grows with income and tenure and shrinks with utilisation; the model
    sees the same features and errs by a few hundred. Drift: ``sudden`` raises incomes
    (feature drift; the model follows, so its error does not change), ``categorical`` shifts
    the regions, ``missing`` blanks utilisation, ``degrade`` and ``calibration`` bias the
    prediction upwards (+15%) and widen its error. Labels are never noisy.

    >>> values, truths, features = _regression_events(TrafficSpec(n=3), np.zeros(3, dtype=bool))
    >>> len(values), sorted(features[0])
    (3, ['income', 'region', 'tenure_years', 'utilisation'])
    """
    rng = np.random.default_rng([spec.seed, 0x4E6])
    n = spec.n
    income = rng.lognormal(11.0, 0.4, n)
    utilisation = rng.beta(2.0, 5.0, n)
    tenure = rng.exponential(4.0, n)
    region = rng.choice(len(REGIONS), n, p=[0.4, 0.3, 0.2, 0.1])
    shifted_region = rng.choice(len(REGIONS), n, p=[0.1, 0.2, 0.3, 0.4])
    if "sudden" in spec.drift:
        income = np.where(drifted, income * 1.5, income)
    region = np.where(drifted & ("categorical" in spec.drift), shifted_region, region)
    missing = drifted & ("missing" in spec.drift) & (rng.random(n) < 0.4)
    expected = 0.08 * income * (1.0 - 0.5 * utilisation) + 300.0 * tenure
    truth = expected + rng.normal(0.0, 400.0, n)
    value = expected + rng.normal(0.0, 300.0, n)
    if "degrade" in spec.drift or "calibration" in spec.drift:
        value = np.where(drifted, value * 1.15 + rng.normal(0.0, 600.0, n), value)
    features = [
        {
            "income": round(float(income[i]), 2),
            "utilisation": None if missing[i] else round(float(utilisation[i]), 4),
            "tenure_years": round(float(tenure[i]), 3),
            "region": REGIONS[region[i]],
        }
        for i in range(n)
    ]
    return [round(float(v), 2) for v in value], [round(float(t), 2) for t in truth], features


MULTICLASS_CLASSES = ("approve", "review", "decline")
CHANNELS = ("web", "app", "store")


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _rounded(row: np.ndarray, classes: tuple[str, ...]) -> dict[str, float]:
    """Probabilities to 6 decimals, the largest taking the rounding rest: they still sum to 1."""
    out = {c: round(float(p), 6) for c, p in zip(classes, row, strict=True)}
    top = classes[int(np.argmax(row))]
    out[top] = round(1.0 - math.fsum(v for c, v in out.items() if c != top), 6)
    return out


def _multiclass_events(
    spec: TrafficSpec, drifted: np.ndarray, classes: tuple[str, ...]
) -> tuple[list[dict[str, float]], list[str], list[dict[str, Any]]]:
    """(scores, true classes, features) of ``spec.n`` predictions of a transaction router.

    A latent risk (from ``risk``, ``amount`` and ``channel``) places a transaction along
    the classes in declared order (the first for the safest); the true class is drawn from
    the softmax of its distances to each class, and the model, which sees the same
    features, gives a nearly calibrated softmax (a little noise in its logits). Drift:
    ``sudden`` raises ``risk`` (feature drift; the true classes follow, so the model stays
    right), ``categorical`` shifts the channels, ``missing`` blanks ``amount``, ``degrade``
    and ``calibration`` flatten the scores towards uniform and blur them. Labels are never
    noisy.

    >>> still = np.zeros(2, dtype=bool)
    >>> scores, truths, features = _multiclass_events(TrafficSpec(n=2), still, ("a", "b", "c"))
    >>> sorted(scores[0]), truths[0] in ("a", "b", "c"), sorted(features[0])
    (['a', 'b', 'c'], True, ['amount', 'channel', 'risk'])
    >>> all(abs(math.fsum(s.values()) - 1.0) < 1e-9 for s in scores)
    True
    """
    rng = np.random.default_rng([spec.seed, 0x3C1, len(classes)])
    n, k = spec.n, len(classes)
    risk = rng.beta(2.0, 5.0, n)
    amount = rng.lognormal(4.0, 0.8, n)
    channel = rng.choice(len(CHANNELS), n, p=[0.5, 0.35, 0.15])
    shifted_channel = rng.choice(len(CHANNELS), n, p=[0.15, 0.35, 0.5])
    if "sudden" in spec.drift:
        risk = np.where(drifted, np.minimum(risk * 1.6 + 0.1, 1.0), risk)
    channel = np.where(drifted & ("categorical" in spec.drift), shifted_channel, channel)
    missing = drifted & ("missing" in spec.drift) & (rng.random(n) < 0.4)
    latent = risk + 0.05 * (np.log(amount) - 4.0) + 0.05 * (channel == 0)
    centres = np.linspace(0.25, 0.75, k)  # most transactions nearest the first class
    logits = -80.0 * (latent[:, None] - centres[None, :]) ** 2
    truth = _softmax(logits)
    actual = (rng.random(n)[:, None] > np.cumsum(truth, axis=1)).sum(axis=1).clip(0, k - 1)
    seen = logits + rng.normal(0.0, 0.3, (n, k))
    if "degrade" in spec.drift or "calibration" in spec.drift:
        blurred = (logits + rng.normal(0.0, 3.0, (n, k))) / 4.0
        seen = np.where(drifted[:, None], blurred, seen)
    probs = _softmax(seen)
    features = [
        {
            "risk": round(float(risk[i]), 4),
            "amount": None if missing[i] else round(float(amount[i]), 2),
            "channel": CHANNELS[channel[i]],
        }
        for i in range(n)
    ]
    return [_rounded(row, classes) for row in probs], [classes[a] for a in actual], features
