"""Self-contained HTML pages: one per run (runs/<date>/report.html) and the history over all runs. Rendering only:
report.py loads the runs and works out the success criteria."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

from ltr_pipeline.charts import bar_chart, line_chart, page
from ltr_pipeline.gate import DEBIASED_CHECK, FAIRNESS_CHECK, LATENCY_CHECK, NDCG_CHECK
from ltr_pipeline.measures import NDCG_KS, ndcg_key
from ltr_pipeline.record import RunFailure, RunReport, ScorerMetrics, to_builtins


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.0f}"
    return escape(str(value))


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]], raw: bool = False) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else _fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _verdict(verdict: str) -> str:
    css = {"pass": "pass", "fail": "fail"}.get(verdict, "insufficient")
    return f'<span class="{css}">{escape(verdict)}</span>'


def _badge(decision: str) -> str:
    return f'<span class="badge {escape(decision)}">{escape(decision)}</span>'


def _quarantine_sample(run_dir: Path, limit: int = 10) -> list[dict[str, Any]]:
    path = run_dir / "quarantine.jsonl"
    if not path.is_file():
        return []
    with path.open("rb") as fh:
        return [orjson.loads(line) for line in islice(fh, limit)]


def _run_header(report: RunReport) -> list[str]:
    src = report.source
    body = [
        f"<h1>LTR run {escape(report.run_date)} {_badge(report.decision)}</h1>",
        f'<p class="muted">published: <b>{_fmt(report.published_version)}</b> · live after the run: '
        f"<b>{_fmt(report.live_version)}</b> · registry {_fmt(report.registry)} · source "
        f"{_fmt(src.name)} ({_fmt(src.window_start)} → {_fmt(src.window_end)})</p>",
    ]
    if src.fallback:
        body.append(f'<p class="fail">fell back from {escape(src.fallback.origin)}: {escape(src.fallback.reason)}</p>')
    if report.publish_error:
        body.append(f'<p class="fail">publish failed: {escape(report.publish_error)}</p>')
    return body


def _metrics_section(report: RunReport) -> list[str]:
    scorers = report.metrics.scorers()
    tables = {role: m.table() for role, m in scorers.items()}
    rows = list(next(iter(tables.values())))
    return [
        f"<h2>New model, champion ({_fmt(report.metrics.champion_version)}) and legacy on the same holdout</h2>",
        _table(["metric", *tables], [[row, *(t.get(row) for t in tables.values())] for row in rows]),
        line_chart("nDCG@k on the holdout", [f"@{k}" for k in NDCG_KS],
                   {role: [tables[role].get(ndcg_key(k)) for k in NDCG_KS] for role in tables}),
    ]


def _debiased_section(report: RunReport) -> list[str]:
    """The new model against the champion without the logging ranker's bias, and the propensities it used."""
    m = report.metrics
    body = ["<h2>Debiased comparison with the champion</h2>"]
    d = m.debiased
    if d is None or d.difference is None:
        body.append('<p class="empty">no debiased comparison this run (no champion, or too few clicks to estimate '
                    "propensities)</p>")
    else:
        body.append(_table(["", "new", "champion", "new - champion", "one-sided 95% bounds", "cases"], [
            [f"debiased nDCG@5 ({escape(d.estimator)})", d.new, d.old, d.difference, f"[{d.low:+.4f}, {d.high:+.4f}]",
             d.queries],
            ["logged nDCG@5 (biased towards the champion)", m.new.ndcg_at_5,
             m.champion.ndcg_at_5 if m.champion else None, _logged_difference(report), "-", m.new.queries],
        ]))
    p = m.propensities
    if p is not None:
        body.append(line_chart(f"Examination probability per position, relative to position 1 ({p.method}, "
                               f"{sum(p.clicks)} clicks, {p.declines} declines)",
                               [str(i) for i in p.positions],
                               {"estimate": p.examination, "95% low": p.low, "95% high": p.high}))
    return body


def _interleaving_section(report: RunReport) -> list[str]:
    if not report.interleaving:
        return []
    promotion = report.promotion
    body = ["<h2>Interleaving: the live model and the challenger on the same lists</h2>",
            _table(["day", "live", "challenger", "cases", "wins", "losses", "ties", "challenger share", "95% interval",
                    "preferred"], [
                [v.day, v.live_version, v.challenger_version, v.cases, v.wins, v.losses, v.ties, v.share,
                 f"[{v.low:.3f}, {v.high:.3f}]", v.preferred] for v in report.interleaving])]
    if promotion is not None and promotion.verdict is not None:
        done = f"promoted {promotion.promoted_version}" if promotion.promoted_version else \
            "no promotion" + ("" if promotion.enabled else " (LTR_INTERLEAVE_PROMOTION is off)")
        body.append(f'<p class="muted">over the window: {escape(promotion.verdict.preferred)} preferred; '
                    f"{escape(done)}</p>")
    return body


def _data_section(report: RunReport) -> list[str]:
    data = to_builtins(report.data)
    stats = data.pop("dataset")
    counts = {**data.pop("ingest"), **data}
    body = ["<h2>Data</h2>", _table(["count", "value"], sorted(counts.items())),
            _table(["dataset", "value"], [[k, orjson.dumps(v).decode() if isinstance(v, dict) else v]
                                          for k, v in stats.items()])]
    sample = _quarantine_sample(Path(report.run_dir or "."))
    body.append(f"<h2>Quarantined events: {_fmt(report.quarantined)}</h2>")
    if sample:
        body.append(_table(["reason", "where"], [[q["reason"], orjson.dumps(q["position"]).decode()]
                                                 for q in sample]))
    body.append("<h2>Production: cases, Hit@3 and conversion per day and model version</h2>")
    body.append(_table(["day", "version", "cases", "hit@3", "conversion"], [
        [b.day, b.version, b.cases, b.hit_at_3, b.conversion] for b in report.business[-14:]
    ]) if report.business else '<p class="empty">no events</p>')
    return body


def _exposure_section(new: ScorerMetrics, legacy: ScorerMetrics) -> list[str]:
    return [
        "<h2>Exposure per group (new model, holdout)</h2>",
        bar_chart("mean exposure per appearance", new.exposure),
        _table(["group", "appearances", "exposure (new)", "exposure (legacy)"], [
            [g, n, new.exposure.get(g), legacy.exposure.get(g)] for g, n in new.group_appearances.items()
        ]),
    ]


def run_page(report: RunReport) -> str:
    """The page of one run: decision, gate, metrics of new / champion / legacy, data, quarantine, weights, exposure."""
    body = _run_header(report)
    body.append("<h2>Quality gate</h2>")
    body.append(_table(["check", "value", "needs", "verdict"], [
        [escape(c.name), _fmt(c.value), escape(f"{c.comparison} {c.threshold}"),
         _verdict(c.verdict) + ("" if c.blocking or c.verdict == "pass" else " (shown, not deciding)")]
        for c in report.gate.checks
    ], raw=True))
    body += _metrics_section(report)
    body += _debiased_section(report)
    body += _interleaving_section(report)
    body += _data_section(report)
    body.append("<h2>Feature weights (ltr_weights.json)</h2>")
    body.append(bar_chart("gain importance, normalised", report.weights))
    body += _exposure_section(report.metrics.new, report.metrics.legacy)
    return page(f"LTR run {report.run_date}", "".join(body))


def _gate_line(reports: Sequence[RunReport], check: str) -> list[float | None]:
    """Each run's own threshold for `check`, from that run's gate.json."""
    lines = []
    for r in reports:
        found = r.gate.check(check)
        lines.append(found.threshold if found else None)
    return lines


def _logged_difference(r: RunReport) -> float | None:
    new, champion = r.metrics.new.ndcg_at_5, r.metrics.champion.ndcg_at_5 if r.metrics.champion else None
    return new - champion if new is not None and champion is not None else None


def _actor(entry: Mapping[str, Any]) -> str:
    """Who moved the registry: the guard (automatic rollback), the daily run (publish, promote, prune), a person."""
    if entry.get("action") == "rollback":
        return "guard (automatic)" if entry.get("automatic") else "manual"
    return "pipeline"


def _business(report: RunReport, field: str) -> float | None:
    """A run day's production figure (Hit@3 or conversion), over every version that ranked that day, by cases."""
    rows = [b for b in report.business if b.day == report.run_date and getattr(b, field) is not None]
    cases = sum(b.cases for b in rows)
    return sum(getattr(b, field) * b.cases for b in rows) / cases if cases else None


def _charts(reports: Sequence[RunReport], dates: list[str]) -> list[str]:
    def live(r: RunReport) -> float | None:
        return r.live_metrics.ndcg_at_5 if r.live_metrics else None

    new = [r.metrics.new for r in reports]
    return [
        line_chart("nDCG@5 per day on that day's holdout", dates, {
            "live": [live(r) for r in reports],
            "new model": [m.ndcg_at_5 for m in new],
            "legacy": [r.metrics.legacy.ndcg_at_5 for r in reports],
        }, threshold=_gate_line(reports, NDCG_CHECK), threshold_label="gate"),
        line_chart("New model - champion, nDCG@5 (debiased with its bounds; logged)", dates, {
            "debiased": [r.metrics.debiased.difference if r.metrics.debiased else None for r in reports],
            "lower bound": [r.metrics.debiased.low if r.metrics.debiased else None for r in reports],
            "upper bound": [r.metrics.debiased.high if r.metrics.debiased else None for r in reports],
            "logged": [_logged_difference(r) for r in reports],
        }, threshold=_gate_line(reports, DEBIASED_CHECK),
            threshold_label="gate"),
        *([line_chart("Interleaving: the challenger's share of the decided cases (0.5: no preference)", dates, {
            "share": [r.interleaving[-1].share if r.interleaving else None for r in reports],
            "95% low": [r.interleaving[-1].low if r.interleaving else None for r in reports],
            "95% high": [r.interleaving[-1].high if r.interleaving else None for r in reports],
        }, threshold=0.5, threshold_label="no pref.")] if any(r.interleaving for r in reports) else []),
        line_chart("Production per day: Hit@3 and conversion of the cases shown that day", dates,
                   {"hit@3": [_business(r, "hit_at_3") for r in reports],
                    "conversion": [_business(r, "conversion") for r in reports]}),
        line_chart("Fairness gap (new model)", dates, {"gap": [m.fairness_gap for m in new]},
                   threshold=_gate_line(reports, FAIRNESS_CHECK), threshold_label="gate"),
        line_chart("Scoring latency p95 (ms)", dates, {"p95": [m.latency_p95_ms for m in new]},
                   threshold=_gate_line(reports, LATENCY_CHECK), threshold_label="gate"),
    ]


def history_page(
    reports: list[RunReport], audit: list[dict[str, Any]], criteria: list[dict[str, Any]],
    service: Mapping[str, Any] | None = None, bad: Mapping[str, Mapping[str, Any]] | None = None,
    failures: Sequence[RunFailure] = (),
) -> str:
    """All runs and versions at a glance, with the success criteria; `service` adds the live state, `bad` the
    guard's verdicts, `failures` the runs that stopped with an error."""
    dates = [r.run_date for r in reports]
    body = ['<h1>LTR pipeline: history</h1>',
            f'<p class="muted">{len(reports)} daily runs'
            + (f" from {escape(dates[0])} to {escape(dates[-1])}" if dates else "") + "</p>"]
    if service:
        body.append("<h2>Service, live</h2>")
        body.append(_table(["", "value"], [[k.replace("_", " "), v] for k, v in service.items()]))
    body.append("<h2>Success criteria</h2>")
    body.append(_table(["criterion", "figure", "status"], [
        [escape(c["criterion"]), escape(c["figure"]),
         f'<span class="{c["status"].replace(" ", "")}">{escape(c["status"])}</span>']
        for c in criteria
    ], raw=True))
    body += _charts(reports, dates)
    body.append("<h2>Gate decisions</h2>")
    body.append(_table(["run date", "decision", "version", "live after", "reasons", "report"], [
        [escape(r.run_date), _badge(r.decision), _fmt(r.published_version), _fmt(r.live_version),
         escape("; ".join(r.gate.reasons) or "all checks passed"),
         f'<a href="runs/{escape(Path(r.run_dir or "").name)}/report.html">page</a>']
        for r in reversed(reports)
    ], raw=True))
    if failures:
        body.append(f'<h2 class="fail">Failed runs: {len(failures)}</h2>')
        body.append(_table(["run date", "step", "error", "at"], [
            [f.run_date, f.step, f.error, f.at] for f in reversed(failures)]))
    body.append("<h2>The guard: versions rolled back or flagged in production</h2>")
    body.append(_table(["at", "version", "action", "now live", "cases seen", "reason"], [
        [v.get("at"), version, v.get("action"), v.get("rolled_back_to"), v.get("cases"), v.get("reason")]
        for version, v in sorted((bad or {}).items(), key=lambda item: str(item[1].get("at")), reverse=True)
    ]) if bad else '<p class="empty">none: every version live so far passed the guard\'s checks</p>')
    body.append("<h2>Registry audit (publishes, rollbacks, promotions, prunes)</h2>")
    body.append(_table(["at", "action", "version", "previous", "by", "reason"], [
        [a.get("at"), a.get("action"), a.get("version"), a.get("previous"), _actor(a), a.get("reason")]
        for a in reversed(audit)
    ]))
    return page("LTR pipeline history", "".join(body))
