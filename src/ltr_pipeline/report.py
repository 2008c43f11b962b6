"""The runs as a history: every run's report.json, the registry's audit log and the seed's five success criteria,
written to $LTR_HOME/history.html (pages.py renders it). The service serves the same page at /ltr/dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import structlog

from ltr_pipeline.config import Settings
from ltr_pipeline.errors import LtrError
from ltr_pipeline.pages import history_page
from ltr_pipeline.record import RunReport, load
from ltr_pipeline.registry import ModelRegistry

log = structlog.get_logger(__name__)

def load_reports(runs_root: Path) -> list[RunReport]:
    """Every daily run's report.json, oldest first."""
    reports = []
    for path in sorted(Path(runs_root).glob("*/report.json")):
        try:
            reports.append(load(path, RunReport))
        except (OSError, msgspec.DecodeError) as exc:  # a run that died mid-write shows as a missing day
            log.warning("report.unreadable", path=str(path), error=str(exc))
    return reports


def _streak(reports: list[RunReport]) -> int:
    """Consecutive days of runs, up to the latest."""
    days = sorted({date.fromisoformat(r.run_date) for r in reports})
    streak = 0
    for i in range(len(days) - 1, -1, -1):
        if i < len(days) - 1 and days[i] != days[i + 1] - timedelta(days=1):
            break
        streak += 1
    return streak


def _status(ok: bool | None) -> str:
    return "unknown" if ok is None else "met" if ok else "not met"


def success_criteria(
    reports: list[RunReport], audit: list[dict[str, Any]], latency_max_ms: float,
    service: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The seed's five success criteria, each with its figure and status: met, not met, or unknown."""
    streak = _streak(reports)
    rollbacks = [a for a in audit if a.get("action") == "rollback"]
    p95 = [r.metrics.new.latency_p95_ms for r in reports if r.metrics.new.latency_p95_ms is not None]
    live = [m.ndcg_at_5 for m in (r.live_metrics for r in reports) if m is not None and m.ndcg_at_5 is not None]
    slope = float(np.polyfit(np.arange(len(live)), live, 1)[0]) if len(live) >= 3 else None
    per_day: dict[str, int] = {}
    for a in rollbacks:
        per_day[a["at"][:10]] = per_day.get(a["at"][:10], 0) + 1
    rate = service.get("fallback_rate") if service else None
    return [
        {"criterion": "Zero manual intervention for 30+ days",
         "figure": f"{streak} consecutive daily runs, {len(rollbacks)} manual rollback(s)",
         "status": _status(streak >= 30 and not rollbacks)},
        {"criterion": f"Latency p95 < {latency_max_ms:g} ms",
         "figure": f"worst run p95 {max(p95):.3f} ms" if p95 else "no runs",
         "status": _status(max(p95) < latency_max_ms if p95 else None)},
        {"criterion": "nDCG@5 rising over time",
         "figure": f"trend {slope:+.4f} per day over {len(live)} days" if slope is not None else "fewer than 3 days",
         "status": _status(slope >= 0 if slope is not None else None)},
        {"criterion": "< 0.1% of requests fall back to legacy",
         "figure": f"{rate * 100:.3f}% of {service.get('predictions', 0):,.0f} requests" if rate is not None and service
         else "needs the service's metrics (see /ltr/dashboard)",
         "status": _status(rate < 0.001 if rate is not None else None)},
        {"criterion": "At most one bad model in production per day",
         "figure": f"most rollbacks in one day: {max(per_day.values(), default=0)}",
         "status": _status(max(per_day.values(), default=0) <= 1)},
    ]


def readable_audit(registry: ModelRegistry) -> list[dict[str, Any]]:
    """The registry's audit log; empty when the registry cannot be read (the page still shows the runs)."""
    try:
        return list(registry.audit_log())
    except LtrError:
        return []


def history(settings: Settings, registry: ModelRegistry, service: Mapping[str, Any] | None = None,
            ) -> tuple[str, list[dict[str, Any]]]:
    """The history page over every run, and the success criteria it shows."""
    reports = load_reports(settings.runs_path)
    audit = readable_audit(registry)
    criteria = success_criteria(reports, audit, settings.latency_p95_max_ms, service)
    return history_page(reports, audit, criteria, service), criteria


def write_history(settings: Settings, service: Mapping[str, Any] | None = None) -> tuple[Path, list[dict[str, Any]]]:
    """Build $LTR_HOME/history.html from every run and the registry's audit log; returns it and the criteria."""
    html, criteria = history(settings, ModelRegistry.from_settings(settings), service)
    out = Path(settings.home) / "history.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html)
    return out, criteria
