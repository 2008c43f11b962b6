"""Self-contained HTML pages: one per run (runs/<date>/report.html) and the history over all runs, with the seed's
five success criteria marked met or not. The service serves the history at /ltr/dashboard with its live state."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ltr_pipeline.charts import bar_chart, line_chart, page

METRIC_ROWS = ("ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "hit@3", "mrr", "fairness_gap", "latency_p50_ms",
               "latency_p95_ms", "rows", "queries", "queries_without_positive")


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


def _quarantine_sample(run_dir: Path, limit: int = 10) -> list[dict[str, Any]]:
    path = run_dir / "quarantine.jsonl"
    if not path.is_file():
        return []
    with path.open("rb") as fh:
        return [orjson.loads(line) for line in islice(fh, limit)]


def run_page(report: Mapping[str, Any]) -> str:
    """The page of one run: decision, gate, metrics of new / champion / legacy, data, quarantine, weights, exposure."""
    m = report["metrics"]
    columns = [("new", m["new"]), ("champion", m.get("champion")), ("legacy", m["legacy"])]
    present = [(name, values) for name, values in columns if values]
    decision = report.get("decision", "?")
    src = report.get("source", {})
    data = report.get("data", {})
    body = [
        f"<h1>LTR run {escape(str(report['run_date']))} "
        f'<span class="badge {escape(decision)}">{escape(decision)}</span></h1>',
        f'<p class="muted">published: <b>{_fmt(report.get("published_version"))}</b> · live after the run: '
        f"<b>{_fmt(report.get('live_version'))}</b> · registry {_fmt(report.get('registry'))} · source "
        f"{_fmt(src.get('name'))} ({_fmt(src.get('window_start'))} → {_fmt(src.get('window_end'))})</p>",
    ]
    if src.get("fallback"):
        body.append(f'<p class="fail">fell back from {escape(src["fallback"]["from"])}: '
                    f'{escape(src["fallback"]["reason"])}</p>')
    if report.get("publish_error"):
        body.append(f'<p class="fail">publish failed: {escape(report["publish_error"])}</p>')
    gate = report.get("gate", {})
    body.append("<h2>Quality gate</h2>")
    body.append(_table(["check", "value", "needs", "verdict"], [
        [escape(c["name"]), _fmt(c["value"]), escape(f"{c['comparison']} {c['threshold']}"), _verdict(c["verdict"])]
        for c in gate.get("checks", [])
    ], raw=True))
    body.append(f"<h2>New model, champion ({_fmt(m.get('champion_version'))}) and legacy on the same holdout</h2>")
    body.append(_table(["metric", *(n for n, _ in present)],
                       [[row, *(v.get(row) for _, v in present)] for row in METRIC_ROWS]))
    body.append(line_chart("nDCG@k on the holdout", ["@1", "@3", "@5", "@10"],
                           {n: [v.get(f"ndcg@{k}") for k in (1, 3, 5, 10)] for n, v in present}))
    body.append("<h2>Data</h2>")
    counts = {**data.get("ingest", {}), **{k: v for k, v in data.items() if isinstance(v, int)}}
    body.append(_table(["count", "value"], sorted(counts.items())))
    stats = data.get("dataset", {})
    if stats:
        body.append(_table(["dataset", "value"], [[k, orjson.dumps(v).decode() if isinstance(v, dict) else v]
                                                  for k, v in stats.items()]))
    sample = _quarantine_sample(Path(report.get("run_dir", ".")))
    body.append(f"<h2>Quarantined events: {_fmt(report.get('quarantined', 0))}</h2>")
    if sample:
        body.append(_table(["reason", "where"], [[q["reason"], orjson.dumps(q["position"]).decode()]
                                                 for q in sample]))
    business = report.get("business", [])
    body.append("<h2>Production: cases, Hit@3 and conversion per day and model version</h2>")
    body.append(_table(["day", "version", "cases", "hit@3", "conversion"], [
        [b["day"], b["version"], b["cases"], b["hit@3"], b["conversion"]] for b in business[-14:]
    ]) if business else '<p class="empty">no events</p>')
    body.append("<h2>Feature weights (ltr_weights.json)</h2>")
    body.append(bar_chart("gain importance, normalised", report.get("weights", {})))
    body.append("<h2>Exposure per group (new model, holdout)</h2>")
    body.append(bar_chart("mean exposure per appearance", m["new"].get("exposure", {})))
    body.append(_table(["group", "appearances", "exposure (new)", "exposure (legacy)"], [
        [g, n, m["new"].get("exposure", {}).get(g), m["legacy"].get("exposure", {}).get(g)]
        for g, n in m["new"].get("group_appearances", {}).items()
    ]))
    return page(f"LTR run {report['run_date']}", "".join(body))


def load_reports(runs_root: Path) -> list[dict[str, Any]]:
    """Every daily run's report.json, oldest first."""
    reports = []
    for path in sorted(Path(runs_root).glob("*/report.json")):
        try:
            reports.append(orjson.loads(path.read_bytes()))
        except (OSError, orjson.JSONDecodeError):
            continue  # a run that died mid-write shows as a missing day
    return reports


def _live_ndcg(r: Mapping[str, Any]) -> float | None:
    """nDCG@5 on that day's holdout of the model live after the run."""
    m = r["metrics"]
    chosen = m["new"] if r.get("decision") == "published" else m.get("champion")
    return (chosen or {}).get("ndcg@5")


def success_criteria(
    reports: list[dict[str, Any]], audit: list[dict[str, Any]], service: Mapping[str, Any] | None = None,
    latency_max_ms: float = 15.0,
) -> list[dict[str, Any]]:
    """The seed's five success criteria, each with its figure and status: met, not met, or unknown."""
    from datetime import date, timedelta

    days = sorted({date.fromisoformat(r["run_date"]) for r in reports})
    streak = 0
    for i in range(len(days) - 1, -1, -1):
        if i < len(days) - 1 and days[i] != days[i + 1] - timedelta(days=1):
            break
        streak += 1
    rollbacks = [a for a in audit if a.get("action") == "rollback"]
    p95 = [r["metrics"]["new"]["latency_p95_ms"] for r in reports]
    live = [v for v in (_live_ndcg(r) for r in reports) if v is not None]
    slope = float(np.polyfit(np.arange(len(live)), live, 1)[0]) if len(live) >= 3 else None
    per_day: dict[str, int] = {}
    for a in rollbacks:
        per_day[a["at"][:10]] = per_day.get(a["at"][:10], 0) + 1
    rate = service.get("fallback_rate") if service else None

    def status(ok: bool | None) -> str:
        return "unknown" if ok is None else "met" if ok else "not met"

    return [
        {"criterion": "Zero manual intervention for 30+ days",
         "figure": f"{streak} consecutive daily runs, {len(rollbacks)} manual rollback(s)",
         "status": status(streak >= 30 and not rollbacks)},
        {"criterion": f"Latency p95 < {latency_max_ms:g} ms",
         "figure": f"worst run p95 {max(p95):.3f} ms" if p95 else "no runs",
         "status": status(max(p95) < latency_max_ms if p95 else None)},
        {"criterion": "nDCG@5 rising over time",
         "figure": f"trend {slope:+.4f} per day over {len(live)} days" if slope is not None else "fewer than 3 days",
         "status": status(slope >= 0 if slope is not None else None)},
        {"criterion": "< 0.1% of requests fall back to legacy",
         "figure": f"{rate * 100:.3f}% of {service.get('predictions', 0):,.0f} requests" if rate is not None and service
         else "needs the service's metrics (see /ltr/dashboard)",
         "status": status(rate < 0.001 if rate is not None else None)},
        {"criterion": "At most one bad model in production per day",
         "figure": f"most rollbacks in one day: {max(per_day.values(), default=0)}",
         "status": status(max(per_day.values(), default=0) <= 1)},
    ]


def readable_audit(registry: Any) -> list[dict[str, Any]]:
    """The registry's audit log; empty when the registry cannot be read (the page still shows the runs)."""
    from ltr_pipeline.errors import LtrError

    try:
        return list(registry.audit_log())
    except LtrError:
        return []


def write_history(
    settings: Any, service: Mapping[str, Any] | None = None
) -> tuple[Path, list[dict[str, Any]]]:
    """Build $LTR_HOME/history.html from every run and the registry's audit log; returns it and the criteria."""
    from ltr_pipeline.registry import ModelRegistry

    reports = load_reports(settings.runs_path)
    audit = readable_audit(ModelRegistry.from_settings(settings))
    out = Path(settings.home) / "history.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(history_page(reports, audit, service, thresholds_of(settings)))
    return out, success_criteria(reports, audit, service, settings.latency_p95_max_ms)


def thresholds_of(settings: Any) -> dict[str, float]:
    return {"ndcg_min": settings.ndcg_min, "fairness_max": settings.fairness_max,
            "latency_p95_max_ms": settings.latency_p95_max_ms}


def history_page(
    reports: list[dict[str, Any]], audit: list[dict[str, Any]], service: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> str:
    """All runs and versions at a glance, with the success criteria; `service` adds the live state."""
    thresholds = thresholds or {}
    dates = [str(r["run_date"]) for r in reports]
    body = ['<h1>LTR pipeline: history</h1>',
            f'<p class="muted">{len(reports)} daily runs'
            + (f" from {escape(dates[0])} to {escape(dates[-1])}" if dates else "") + "</p>"]
    if service:
        body.append("<h2>Service, live</h2>")
        body.append(_table(["", "value"], [[k.replace("_", " "), v] for k, v in service.items()]))
    body.append("<h2>Success criteria</h2>")
    latency_max = float(thresholds.get("latency_p95_max_ms", 15.0))
    body.append(_table(["criterion", "figure", "status"], [
        [escape(c["criterion"]), escape(c["figure"]),
         f'<span class="{c["status"].replace(" ", "")}">{escape(c["status"])}</span>']
        for c in success_criteria(reports, audit, service, latency_max)
    ], raw=True))
    body.append(line_chart("nDCG@5 per day on that day's holdout", dates, {
        "live": [_live_ndcg(r) for r in reports],
        "challenger": [r["metrics"]["new"]["ndcg@5"] for r in reports],
        "legacy": [r["metrics"]["legacy"]["ndcg@5"] for r in reports],
    }, threshold=thresholds.get("ndcg_min"), threshold_label="gate"))
    body.append(line_chart("Fairness gap (challenger)", dates, {
        "gap": [r["metrics"]["new"]["fairness_gap"] for r in reports]},
        threshold=thresholds.get("fairness_max"), threshold_label="gate"))
    body.append(line_chart("Scoring latency p95 (ms)", dates, {
        "p95": [r["metrics"]["new"]["latency_p95_ms"] for r in reports]},
        threshold=latency_max, threshold_label="gate"))
    body.append("<h2>Gate decisions</h2>")
    body.append(_table(["run date", "decision", "version", "live after", "reasons", "report"], [
        [escape(str(r["run_date"])), f'<span class="badge {escape(r["decision"])}">{escape(r["decision"])}</span>',
         _fmt(r.get("published_version")), _fmt(r.get("live_version")),
         escape("; ".join(r["gate"]["reasons"]) or "all checks passed"),
         f'<a href="runs/{escape(Path(r.get("run_dir", "")).name)}/report.html">page</a>']
        for r in reversed(reports)
    ], raw=True))
    body.append("<h2>Registry audit (publishes, rollbacks, prunes)</h2>")
    body.append(_table(["at", "action", "version", "previous", "reason"], [
        [a.get("at"), a.get("action"), a.get("version"), a.get("previous"), a.get("reason")]
        for a in reversed(audit)
    ]))
    return page("LTR pipeline history", "".join(body))
