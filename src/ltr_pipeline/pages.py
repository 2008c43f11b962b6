"""Self-contained HTML pages: one per run (runs/<date>/report.html), the history over all runs, and the comparison of
two versions. Rendering only: Jinja2 templates (templates/) with matplotlib's inline SVG charts (charts.py); report.py
loads the runs and works out the success criteria, compare.py compares two versions."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape

from ltr_pipeline.charts import bar_chart, line_chart
from ltr_pipeline.gate import DEBIASED_CHECK, FAIRNESS_CHECK, LATENCY_CHECK, NDCG_CHECK
from ltr_pipeline.measures import NDCG_KS, ndcg_key
from ltr_pipeline.record import RunFailure, RunReport, to_builtins


def num(value: Any, digits: int = 4) -> Any:
    """A figure as the pages show it: "-" for none, `digits` decimals, whole thousands from 100 on."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 100 else f"{value:,.0f}"
    return value


@functools.cache
def _environment() -> Environment:
    env = Environment(loader=PackageLoader("ltr_pipeline", "templates"), autoescape=select_autoescape(["j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = num
    env.filters["basename"] = lambda path: Path(path or "").name
    return env


def render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


def _quarantine_sample(run_dir: Path, limit: int = 10) -> list[list[str]]:
    path = run_dir / "quarantine.jsonl"
    if not path.is_file():
        return []
    with path.open("rb") as fh:
        return [[q["reason"], orjson.dumps(q["position"]).decode()] for q in map(orjson.loads, islice(fh, limit))]


def _logged_difference(r: RunReport) -> float | None:
    new, champion = r.metrics.new.ndcg_at_5, r.metrics.champion.ndcg_at_5 if r.metrics.champion else None
    return new - champion if new is not None and champion is not None else None


def run_page(report: RunReport) -> str:
    """The page of one run: decision, gate, metrics of new / champion / legacy, data, quarantine, weights, exposure."""
    tables = {role: m.table() for role, m in report.metrics.scorers().items()}
    rows = list(next(iter(tables.values())))
    new, legacy = report.metrics.new, report.metrics.legacy
    data = to_builtins(report.data)
    stats = data.pop("dataset")
    p = report.metrics.propensities
    charts = {
        "ndcg": line_chart("nDCG@k on the holdout", [f"@{k}" for k in NDCG_KS],
                           {role: [tables[role].get(ndcg_key(k)) for k in NDCG_KS] for role in tables},
                           y_label="nDCG", x_label="cut-off k"),
        "propensities": p and line_chart(
            f"Examination probability per position, relative to position 1 ({p.method}, {sum(p.clicks)} clicks, "
            f"{p.declines} declines)", [str(i) for i in p.positions],
            {"estimate": p.examination, "95% low": p.low, "95% high": p.high},
            y_label="examination", x_label="position"),
        "weights": bar_chart("gain importance, normalised", report.weights, x_label="share of the total gain"),
        "exposure": bar_chart("mean exposure per appearance", new.exposure, x_label="exposure"),
    }
    return render(
        "run.html.j2", r=report, charts=charts,
        metric_header=["metric", *tables], metric_rows=[[row, *(t.get(row) for t in tables.values())] for row in rows],
        logged_difference=_logged_difference(report),
        interleaving_rows=[[v.day, v.live_version, v.challenger_version, v.cases, v.wins, v.losses, v.ties, v.share,
                            f"[{v.low:.3f}, {v.high:.3f}]", v.preferred] for v in report.interleaving],
        counts=sorted({**data.pop("ingest"), **data}.items()),
        dataset=[[k, orjson.dumps(v).decode() if isinstance(v, dict) else v] for k, v in stats.items()],
        quarantine=_quarantine_sample(Path(report.run_dir or ".")),
        business=[[b.day, b.version, b.cases, b.hit_at_3, b.conversion] for b in report.business[-14:]],
        exposure=[[g, n, new.exposure.get(g), legacy.exposure.get(g)] for g, n in new.group_appearances.items()],
    )


def _gate_line(reports: Sequence[RunReport], check: str) -> list[float | None]:
    """Each run's own threshold for `check`, from that run's gate.json."""
    lines = []
    for r in reports:
        found = r.gate.check(check)
        lines.append(found.threshold if found else None)
    return lines


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
        }, threshold=_gate_line(reports, NDCG_CHECK), threshold_label="gate", y_label="nDCG@5"),
        line_chart("New model - champion, nDCG@5 (debiased with its bounds; logged)", dates, {
            "debiased": [r.metrics.debiased.difference if r.metrics.debiased else None for r in reports],
            "lower bound": [r.metrics.debiased.low if r.metrics.debiased else None for r in reports],
            "upper bound": [r.metrics.debiased.high if r.metrics.debiased else None for r in reports],
            "logged": [_logged_difference(r) for r in reports],
        }, threshold=_gate_line(reports, DEBIASED_CHECK), threshold_label="gate", y_label="difference"),
        *([line_chart("Interleaving: the challenger's share of the decided cases (0.5: no preference)", dates, {
            "share": [r.interleaving[-1].share if r.interleaving else None for r in reports],
            "95% low": [r.interleaving[-1].low if r.interleaving else None for r in reports],
            "95% high": [r.interleaving[-1].high if r.interleaving else None for r in reports],
        }, threshold=0.5, threshold_label="no pref.", y_label="share")] if any(r.interleaving for r in reports)
          else []),
        line_chart("Production per day: Hit@3 and conversion of the cases shown that day", dates,
                   {"hit@3": [_business(r, "hit_at_3") for r in reports],
                    "conversion": [_business(r, "conversion") for r in reports]}, y_label="share of cases"),
        line_chart("Fairness gap (new model)", dates, {"gap": [m.fairness_gap for m in new]},
                   threshold=_gate_line(reports, FAIRNESS_CHECK), threshold_label="gate", y_label="exposure gap"),
        line_chart("Scoring latency p95", dates, {"p95": [m.latency_p95_ms for m in new]},
                   threshold=_gate_line(reports, LATENCY_CHECK), threshold_label="gate", y_label="ms per case"),
    ]


def history_page(
    reports: list[RunReport], audit: list[dict[str, Any]], criteria: list[dict[str, Any]],
    service: Mapping[str, Any] | None = None, bad: Mapping[str, Mapping[str, Any]] | None = None,
    failures: Sequence[RunFailure] = (),
) -> str:
    """All runs and versions at a glance, with the success criteria; `service` adds the live state, `bad` the
    guard's verdicts, `failures` the runs that stopped with an error."""
    dates = [r.run_date for r in reports]
    return render(
        "history.html.j2", reports=reports, dates=dates, criteria=criteria, charts=_charts(reports, dates),
        service=[[k.replace("_", " "), v] for k, v in (service or {}).items()],
        failures=[[f.run_date, f.step, f.error, f.at] for f in reversed(failures)],
        bad=[[v.get("at"), version, v.get("action"), v.get("rolled_back_to"), v.get("cases"), v.get("reason")]
             for version, v in sorted((bad or {}).items(), key=lambda item: str(item[1].get("at")), reverse=True)],
        audit=[[a.get("at"), a.get("action"), a.get("version"), a.get("previous"), _actor(a), a.get("reason")]
               for a in reversed(audit)],
    )
