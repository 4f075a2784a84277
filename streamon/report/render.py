"""One self-contained HTML file from :class:`~streamon.report.collect.ReportData`.

Charts are plotly figures (plotly.js is embedded once, inline, so the file opens offline
and needs no server). Every section is a ``<section data-section=...>`` and every
number the summary tables show carries its exact value in ``data-value``, which is how
the tests read the report back and compare it with the replay's snapshot.
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from streamon.report.collect import (
    AB,
    ALL,
    BUSINESS,
    CALIBRATION,
    DRIFT,
    ESTIMATED,
    INTEGRITY_PREFIXES,
    PERFORMANCE,
    SUMMARY,
    ModelView,
    Points,
    ReportData,
    alert_rows,
)

_CONFIG = {"displaylogo": False, "responsive": True}
_LAYOUT = {"template": "plotly_white", "height": 340, "margin": {"l": 60, "r": 20, "t": 40, "b": 40}}
_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 16px 24px; color: #1f2933; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #d9e2ec; padding-bottom: 4px; margin-top: 2em; }
h3 { font-size: 1.05em; color: #334e68; margin-top: 1.4em; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92em; }
td, th { border: 1px solid #d9e2ec; padding: 4px 10px; text-align: left; }
th { background: #f0f4f8; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.meta { color: #627d98; } .empty { color: #829ab1; font-style: italic; }
nav a { margin-right: 12px; }
"""


def _t(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _short(name: str) -> str:
    for prefix in (
        "ml_model_estimated_",
        "ml_model_",
        "ml_data_drift_",
        "ml_business_",
        "ml_fraud_",
        "streamon_ab_",
    ):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _fmt(v: float) -> str:
    return "NaN" if math.isnan(v) else f"{v:.4g}"


class _Page:
    """The HTML being built: sections of headings, tables and charts."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.n_charts = 0

    def add(self, text: str) -> None:
        self.parts.append(text)

    def chart(self, fig: go.Figure, height: int | None = None) -> None:
        top = fig.layout.margin.t  # room a figure asked for (subplot titles under its title)
        fig.update_layout(**_LAYOUT)
        if top is not None:
            fig.update_layout(margin={"t": top})
        if height:
            fig.update_layout(height=height)
        self.n_charts += 1
        div = pio.to_html(
            fig, full_html=False, include_plotlyjs=False, config=_CONFIG, div_id=f"chart-{self.n_charts}"
        )
        self.add(f'<div class="chart">{div}</div>')

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
        self.add(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _cell(c: Any) -> str:
    if isinstance(c, tuple):  # (metric name, labels, value): a number the tests read back
        name, labels, value = c
        attrs = (
            f'data-metric="{html.escape(name)}" data-labels="{html.escape(labels)}" data-value="{value!r}"'
        )
        return f'<td class="num" {attrs}>{_fmt(value)}</td>'
    if isinstance(c, float):
        return f'<td class="num">{_fmt(c)}</td>'
    return f"<td>{html.escape(str(c))}</td>"


def _line(pts: Points, name: str, **style: Any) -> go.Scatter:
    """A series over event time."""
    return go.Scatter(x=[_t(t) for t, _ in pts], y=[v for _, v in pts], name=name, **style)


def _band(lo: Points, hi: Points, name: str, **style: Any) -> go.Scatter:
    """The area between two series over event time (an interval), drawn as one closed shape."""
    return go.Scatter(
        x=[_t(t) for t, _ in hi] + [_t(t) for t, _ in lo][::-1],
        y=[v for _, v in hi] + [v for _, v in lo][::-1],
        fill="toself",
        line={"width": 0},
        name=name,
        hoverinfo="skip",
        **style,
    )


def _lines(fig: go.Figure, series: dict[str, Points], row: int | None = None, col: int | None = None) -> None:
    for name, pts in series.items():
        if pts:
            trace = _line(pts, name, mode="lines+markers")
            fig.add_trace(trace, row=row, col=col) if row else fig.add_trace(trace)


def _section(page: _Page, key: str, title: str) -> None:
    page.add(f'</section><section data-section="{key}"><h2>{html.escape(title)}</h2>')


def _summary(page: _Page, v: ModelView) -> None:
    rows = []
    for n in SUMMARY:
        s = v.sample(n, variant=ALL, window="current")
        if s is not None:  # its own labels: a multiclass model's averages say which
            labels = ",".join(f"{k}={x}" for k, x in s.labels)
            shown = _short(n) + (f" ({dict(s.labels)['average']})" if "average" in dict(s.labels) else "")
            rows.append([shown, (n, labels, s.value)])
    page.table(["metric (current window, all variants)", "value"], rows)


def _performance(page: _Page, v: ModelView) -> bool:
    series = {_short(n): v.points(n, variant=ALL, window="current") for n in PERFORMANCE}
    if not any(series.values()):
        return False
    fig = go.Figure()
    _lines(fig, series)
    for metric in PERFORMANCE:
        for alert, op, threshold in v.thresholds.get(metric, []):
            fig.add_hline(
                y=threshold,
                line_dash="dash",
                line_color="#d64545",
                annotation_text=f"{alert}: {_short(metric)} {op} {threshold:g}",
                annotation_position="bottom left",
            )
    fig.update_layout(
        title="Performance over time (current window) with the alert thresholds", yaxis_title="value"
    )
    page.chart(fig, 380)
    return True


def _confusion(page: _Page, v: ModelView) -> bool:
    if v.confusion is None or not sum(v.confusion):
        return False
    tp, fp, tn, fn = v.confusion
    fig = go.Figure(
        go.Heatmap(
            z=[[tn, fp], [fn, tp]],
            x=["predicted 0", "predicted 1"],
            y=["actual 0", "actual 1"],
            text=[[tn, fp], [fn, tp]],
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
        )
    )
    fig.update_layout(
        title="Confusion matrix (current window, at the decision threshold)", height=320, width=480
    )
    page.chart(fig)
    return True


def _calibration(page: _Page, v: ModelView) -> bool:
    where = {"variant": ALL, "window": "current"}
    observed = {int(b): x for b, x in v.last_by("ml_model_calibration_observed_rate", "bin", **where).items()}
    mean = {int(b): x for b, x in v.last_by("ml_model_calibration_mean_score", "bin", **where).items()}
    over_time = {_short(n): v.points(n, variant=ALL, window="current") for n in CALIBRATION}
    if not observed and not any(over_time.values()):
        return False
    if observed:
        bins = sorted(
            b for b in observed if not math.isnan(observed[b]) and not math.isnan(mean.get(b, math.nan))
        )
        fig = go.Figure()
        fig.add_trace(
            go.Scatter(
                x=[0, 1],
                y=[0, 1],
                mode="lines",
                name="perfectly calibrated",
                line={"dash": "dot", "color": "#9fb3c8"},
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[mean[b] for b in bins],
                y=[observed[b] for b in bins],
                mode="lines+markers",
                name="observed",
                text=[f"bin {b}" for b in bins],
            )
        )
        fig.update_layout(
            title="Reliability curve (current window)",
            xaxis_title="mean score in bin",
            yaxis_title="observed positive rate",
        )
        page.chart(fig)
    if any(over_time.values()):
        fig = go.Figure()
        _lines(fig, over_time)
        fig.update_layout(title="Brier score, log loss and expected calibration error over time")
        page.chart(fig)
    return True


def _estimation(page: _Page, v: ModelView) -> bool:
    drawn = False
    for est, realised in ESTIMATED.items():
        e = v.points(est, variant=ALL, window="current", bound="estimate")
        if not e:
            continue
        lo = v.points(est, variant=ALL, window="current", bound="lower")
        hi = v.points(est, variant=ALL, window="current", bound="upper")
        fig = go.Figure()
        if lo and hi:
            fig.add_trace(_band(lo, hi, "band", fillcolor="rgba(72,101,129,0.18)"))
        _lines(fig, {"estimated": e, "realised": v.points(realised, variant=ALL, window="current")})
        fig.update_layout(title=f"Estimated vs realised {_short(realised)} (current window)")
        page.chart(fig)
        drawn = True
    return drawn


def _drift(page: _Page, v: ModelView) -> bool:
    features = sorted(v.keyed("ml_data_drift_psi_score", "feature", variant=ALL, window="current"))
    if not features and not v.distributions:
        return False
    fig = make_subplots(rows=2, cols=2, subplot_titles=[_short(n) for n in DRIFT], shared_xaxes=True)
    for i, name in enumerate(DRIFT):
        per = v.keyed(name, "feature", variant=ALL, window="current")
        for feature, pts in per.items():
            trace = _line(pts, feature, legendgroup=feature, showlegend=i == 0, mode="lines")
            fig.add_trace(trace, row=i // 2 + 1, col=i % 2 + 1)
    fig.update_layout(title="Feature drift over time (current vs reference window)", margin={"t": 80})
    page.chart(fig, 560)
    page.table(
        ["feature (current window, all variants)", *(_short(n) for n in DRIFT)],
        [[f] + [_drift_cell(v, n, f) for n in DRIFT] for f in features],
    )
    for feature, d in sorted(v.distributions.items()):
        fig = go.Figure()
        fig.add_trace(go.Bar(x=d.bins, y=d.reference, name="reference"))
        fig.add_trace(go.Bar(x=d.bins, y=d.current, name="current"))
        psi = v.value("ml_data_drift_psi_score", feature=feature, variant=ALL, window="current")
        fig.update_layout(
            barmode="group",
            title=f"{feature}: reference vs current (PSI {_fmt(psi)})",
            yaxis_title="share of the window",
        )
        page.chart(fig, 300)
    return True


def _drift_cell(v: ModelView, name: str, feature: str) -> Any:
    if not v.has(name, feature=feature, variant=ALL, window="current"):
        return "—"  # e.g. KS of a categorical feature
    labels = f"model={v.model},variant={ALL},window=current,feature={feature}"
    return (name, labels, v.value(name, feature=feature, variant=ALL, window="current"))


def _integrity(page: _Page, v: ModelView) -> bool:
    names = sorted(n for n in v.series if n.startswith(INTEGRITY_PREFIXES))
    if not names:
        return False
    for name in names:
        per = v.keyed(name, "feature", variant=ALL, window="current")
        if not per:
            continue
        fig = go.Figure()
        _lines(fig, per)
        fig.update_layout(title=f"{name} over time (current window)", yaxis_title="rate")
        page.chart(fig, 300)
    return True


def _segments(page: _Page, v: ModelView) -> bool:
    rows = [s for s in v.last if s.name.startswith("streamon_segment_") and ("window", "current") in s.labels]
    if not rows:
        return False
    by_field: dict[str, dict[str, dict[str, float]]] = {}
    for s in rows:
        d = dict(s.labels)
        if "feature" in d:
            continue
        by_field.setdefault(d["segment_field"], {}).setdefault(d["segment"], {})[s.name] = s.value
    for field_name, segs in sorted(by_field.items()):
        names = ("streamon_segment_accuracy", "streamon_segment_recall", "streamon_segment_precision")
        fig = go.Figure()
        for n in names:
            fig.add_trace(
                go.Bar(
                    x=list(segs),
                    y=[segs[k].get(n, math.nan) for k in segs],
                    name=n.removeprefix("streamon_segment_"),
                )
            )
        fig.update_layout(barmode="group", title=f"Performance by segment: {field_name} (current window)")
        page.chart(fig, 320)
        shown = (
            "streamon_segment_predictions_in_window",
            "streamon_segment_labelled_in_window",
            "streamon_segment_positive_rate",
            *names,
        )
        page.table(
            ["segment", *(n.removeprefix("streamon_segment_") for n in shown)],
            [
                [k]
                + [
                    (
                        n,
                        f"model={v.model},window=current,segment_field={field_name},segment={k}",
                        m.get(n, math.nan),
                    )
                    for n in shown
                ]
                for k, m in segs.items()
            ],
        )
    return bool(by_field)


def _business(page: _Page, v: ModelView) -> bool:
    series = {_short(n): v.points(n, variant=ALL, window="current") for n in BUSINESS}
    if not any(series.values()):
        return False
    fig = make_subplots(rows=1, cols=3, subplot_titles=list(series))
    for i, (name, pts) in enumerate(series.items()):
        if pts:
            fig.add_trace(_line(pts, name, mode="lines"), row=1, col=i + 1)
    fig.update_layout(title="Business value over time (current window)", showlegend=False, margin={"t": 80})
    page.chart(fig)
    return True


def _alerts(page: _Page, v: ModelView, end: float) -> bool:
    rows = alert_rows(v.alerts)
    if not rows:
        page.add('<p class="empty">No alert fired.</p>')
        return False
    fig = go.Figure()
    for r in rows:
        label = (
            r["alert"] + " " + ",".join(f"{k}={x}" for k, x in sorted(r["labels"].items()) if k != "model")
        )
        stop = r["end"] or _t(end).replace(" ", "T") + "Z"
        fig.add_trace(
            go.Scatter(
                x=[r["start"], stop],
                y=[label, label],
                mode="lines+markers",
                showlegend=False,
                line={"width": 8, "color": "#d64545" if r["severity"] == "critical" else "#f0b429"},
                hovertext=r["description"],
            )
        )
    fig.update_layout(
        title="Alerts timeline (firing to resolved)",
        height=max(260, 28 * len(rows) + 120),
        yaxis={"automargin": True},
    )
    page.chart(fig)
    page.table(
        ["alert", "severity", "series", "fired", "resolved", "evidence"],
        [
            [
                r["alert"],
                r["severity"],
                ", ".join(f"{k}={x}" for k, x in sorted(r["labels"].items())),
                r["start"],
                r["end"] or "(still firing)",
                f"{r['evidence'].get('metric', '')} = {_fmt(float(r['evidence'].get('value', math.nan)))}",
            ]
            for r in rows
        ],
    )
    return True


def _experiment(page: _Page, v: ModelView, analyses: list[dict[str, Any]]) -> bool:
    drawn = False
    for a in analyses:
        if v.model in a.get("models", []):
            _ab_analysis(page, a)
            drawn = True
    diffs = v.series.get("streamon_ab_difference", {})
    if not diffs:
        return drawn
    metrics = sorted({dict(k)["metric"] for k in diffs})
    variants = sorted({dict(k)["variant"] for k in diffs})
    for metric in metrics:
        fig = make_subplots(
            rows=1, cols=2, subplot_titles=["difference with its confidence sequence", "always-valid p-value"]
        )
        for variant in variants:
            d = v.points("streamon_ab_difference", variant=variant, metric=metric)
            lo = v.points("streamon_ab_confidence_sequence_lower", variant=variant, metric=metric)
            hi = v.points("streamon_ab_confidence_sequence_upper", variant=variant, metric=metric)
            p = v.points("streamon_ab_sequential_p_value", variant=variant, metric=metric)
            if lo and hi:
                fig.add_trace(_band(lo, hi, f"{variant} interval", opacity=0.25), row=1, col=1)
            if d:
                fig.add_trace(_line(d, f"{variant} − control", mode="lines"), row=1, col=1)
            if p:
                fig.add_trace(_line(p, f"{variant} p", mode="lines"), row=1, col=2)
        fig.update_layout(title=f"Experiment on {v.model}: {metric}", margin={"t": 80})
        page.chart(fig, 360)
    rows = []
    for variant in variants:
        for metric in metrics:
            labels = f"model={v.model},variant={variant},metric={metric}"
            rows.append(
                [variant, metric] + [(n, labels, v.value(n, variant=variant, metric=metric)) for n in AB]
            )
    page.table(["arm", "metric", *[_short(n) for n in AB]], rows)
    return True


_AB_METRICS = (
    ("error_rate", "error rate"),
    ("detection_rate", "detection rate"),
    ("business_value", "value/pred"),
)


def _ab_analysis(page: _Page, a: dict[str, Any]) -> None:
    """``streamon ab report``'s result: each arm's metrics, and each treatment's difference from
    the control with its fixed-horizon CI and always-valid confidence sequence."""
    page.add(f"<h3>Experiment {html.escape(a['experiment'])} (control {html.escape(str(a['control']))})</h3>")
    page.table(
        ["arm", "predictions", "labelled", "accuracy", "precision", "recall", "value/pred", "status"],
        [
            [arm["variant"], f"{arm['n']:,}", f"{arm['labelled']:,}", float(arm["accuracy"]),
             float(arm["precision"]), float(arm["recall"]), float(arm["mean_value"]), arm["status"]]
            for arm in a["arms"]
        ],
    )  # fmt: skip
    for t in a["tests"]:
        fig = go.Figure()
        names, diffs, ci, cs = [], [], [], []
        for key, label in _AB_METRICS:
            r = t.get(key) or {}
            seq = r.get("sequential") or {}
            if not r or r.get("status") != "ok":
                continue
            names.append(label)
            diffs.append(r["diff"])
            ci.append((r["ci_low"], r["ci_high"]))
            cs.append((seq.get("cs_low", math.nan), seq.get("cs_high", math.nan)))
        if not names:
            continue
        for what, bounds, offset in (("fixed-horizon CI", ci, -0.12), ("confidence sequence", cs, 0.12)):
            fig.add_trace(
                go.Scatter(
                    x=diffs,
                    y=[i + offset for i in range(len(names))],
                    mode="markers",
                    name=what,
                    error_x={
                        "type": "data",
                        "symmetric": False,
                        "array": [hi - d for d, (_, hi) in zip(diffs, bounds, strict=True)],
                        "arrayminus": [d - lo for d, (lo, _) in zip(diffs, bounds, strict=True)],
                    },
                )
            )
        fig.add_vline(x=0, line_dash="dot", line_color="#9fb3c8")
        fig.update_layout(
            title=f"{t['treatment']} − {t['control']}: differences, {1 - a['alpha']:g} intervals",
            yaxis={"tickvals": list(range(len(names))), "ticktext": names},
            height=300,
        )
        page.chart(fig)
    for line in a.get("recommendations", []):
        page.add(f"<p>{html.escape(line)}</p>")


def render_html(data: ReportData) -> str:
    """The report as one HTML document (plotly.js inline: opens offline)."""
    page = _Page()
    nav = " ".join(f'<a href="#model-{html.escape(v.model)}">{html.escape(v.model)}</a>' for v in data.models)
    counts = (
        f" · {data.predictions:,} predictions · {data.labels:,} labels · {data.bad_events:,} bad events"
        if data.predictions is not None
        else ""  # a worker's report: its stage 2 merges what every worker's stage 1 counted
    )
    page.add(
        f"<h1>{html.escape(data.title)}</h1>"
        f'<p class="meta">As of {_t(data.event_time)} UTC (event time){counts}</p><nav>{nav}</nav><section>'
    )
    for v in data.models:
        page.add(
            f'</section><h2 id="model-{html.escape(v.model)}">Model {html.escape(v.model)}</h2><section>'
        )
        _section(page, f"{v.model}/summary", "Summary")
        _summary(page, v)
        for key, title, draw in (
            ("performance", "Performance over time", _performance),
            ("confusion", "Confusion matrix", _confusion),
            ("calibration", "Calibration", _calibration),
            ("estimation", "Estimated vs realised performance", _estimation),
            ("drift", "Feature drift", _drift),
            ("integrity", "Data integrity", _integrity),
            ("segments", "Segments", _segments),
            ("business", "Business value", _business),
            ("experiment", "Experiment", lambda p, m: _experiment(p, m, data.experiments)),
        ):
            mark = len(page.parts)
            _section(page, f"{v.model}/{key}", title)
            if not draw(page, v):
                del page.parts[mark:]  # nothing to show: no empty section
        _section(page, f"{v.model}/alerts", "Alerts")
        _alerts(page, v, data.event_time)
    page.add("</section>")
    body = "\n".join(page.parts).replace("<section></section>", "")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(data.title)}</title><style>{_STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>{body}</body></html>'
    )
