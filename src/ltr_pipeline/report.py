"""The runs as a history: every run's report.json, the registry's audit log and the seed's five success criteria,
written to $LTR_HOME/history.html (pages.py renders it). The service serves the same page at /ltr/dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import numpy as np
import structlog

from ltr_pipeline.config import Settings
from ltr_pipeline.errors import LtrError
from ltr_pipeline.guard import bad_days
from ltr_pipeline.pages import history_page
from ltr_pipeline.record import RunFailure, RunReport, load
from ltr_pipeline.registry import ModelRegistry

log = structlog.get_logger(__name__)
T = TypeVar("T")


def _load_each(runs_root: Path, name: str, kind: type[T]) -> list[T]:
    """Every daily run's `name` file as a `kind`, oldest first; an unreadable one is logged and left out."""
    found = []
    for path in sorted(Path(runs_root).glob(f"*/{name}")):
        try:
            found.append(load(path, kind))
        except (OSError, msgspec.DecodeError) as exc:  # a run that died mid-write shows as a missing day
            log.warning("report.unreadable", path=str(path), error=str(exc))
    return found


def load_reports(runs_root: Path) -> list[RunReport]:
    """Every daily run's report.json, oldest first."""
    return _load_each(runs_root, "report.json", RunReport)


def load_failures(runs_root: Path) -> list[RunFailure]:
    """The daily runs that stopped with an error (failure.json), oldest first."""
    return _load_each(runs_root, "failure.json", RunFailure)


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


def live_ndcg(reports: list[RunReport]) -> tuple[str, list[float]]:
    """Which measure, and the nDCG@5 of the model live after each run by it: the debiased estimate (IPS over the
    estimated propensities) where at least 3 runs have one, else the logged holdout nDCG@5."""
    debiased = [(d.new if r.decision == "published" else d.old) if d is not None else None
                for r in reports for d in [r.metrics.debiased]]
    found = [v for v in debiased if v is not None]
    if len(found) >= 3:
        return "debiased nDCG@5 of the live model", found
    return "logged nDCG@5 of the live model", [
        m.ndcg_at_5 for m in (r.live_metrics for r in reports) if m is not None and m.ndcg_at_5 is not None]


def success_criteria(
    reports: list[RunReport], audit: list[dict[str, Any]], latency_max_ms: float,
    service: Mapping[str, Any] | None = None, bad: Mapping[str, Mapping[str, Any]] | None = None,
    quality: tuple[str, list[float]] | None = None,
) -> list[dict[str, Any]]:
    """The seed's five success criteria, each with its figure and status: met, not met, or unknown. Manual actions
    are the audit's rollbacks a person made; bad models are the versions the guard rolled back or flagged (`bad`,
    the registry's verdicts), counted on the day of the verdict. `quality`: a better measure of the live model's
    nDCG@5 per day than the runs' own, with its name (the simulator's truth, in `ltr soak`)."""
    streak = _streak(reports)
    manual = [a for a in audit if a.get("action") == "rollback" and not a.get("automatic")]
    automatic = [a for a in audit if a.get("action") == "rollback" and a.get("automatic")]
    p95 = [r.metrics.new.latency_p95_ms for r in reports if r.metrics.new.latency_p95_ms is not None]
    measure, live = quality or live_ndcg(reports)
    slope = float(np.polyfit(np.arange(len(live)), live, 1)[0]) if len(live) >= 3 else None
    per_day = bad_days(bad or {})
    worst = max(per_day.values(), default=0)
    rate = service.get("model_fallback_rate", service.get("fallback_rate")) if service else None
    return [
        {"criterion": "Zero manual intervention for 30+ days",
         "figure": f"{streak} consecutive daily runs, {len(manual)} manual rollback(s), {len(automatic)} automatic",
         "status": _status(streak >= 30 and not manual)},
        {"criterion": f"Latency p95 < {latency_max_ms:g} ms",
         "figure": f"worst run p95 {max(p95):.3f} ms" if p95 else "no runs",
         "status": _status(max(p95) < latency_max_ms if p95 else None)},
        {"criterion": "nDCG@5 rising over time",
         "figure": f"trend {slope:+.4f} per day over {len(live)} days ({measure})"
         if slope is not None else "fewer than 3 days",
         "status": _status(slope >= 0 if slope is not None else None)},
        {"criterion": "< 0.1% of requests fall back to legacy",
         "figure": f"{rate * 100:.3f}% of {service.get('predictions', 0):,.0f} requests (with a model live)"
         if rate is not None and service else "needs the service's metrics (see /ltr/dashboard)",
         "status": _status(rate < 0.001 if rate is not None else None)},
        {"criterion": "At most one bad model in production per day",
         "figure": f"{len(bad or {})} version(s) rolled back or flagged by the guard; most in one day: {worst}",
         "status": _status(worst <= 1)},
    ]


def readable_audit(registry: ModelRegistry) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The registry's audit log and the guard's verdicts; empty when the registry cannot be read (the page still
    shows the runs)."""
    try:
        return list(registry.audit_log()), registry.bad_versions()
    except LtrError:
        return [], {}


def history(settings: Settings, registry: ModelRegistry, service: Mapping[str, Any] | None = None,
            quality: tuple[str, list[float]] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The history page over every run, and the success criteria it shows."""
    reports = load_reports(settings.runs_path)
    audit, bad = readable_audit(registry)
    criteria = success_criteria(reports, audit, settings.latency_p95_max_ms, service, bad, quality)
    return history_page(reports, audit, criteria, service, bad, load_failures(settings.runs_path)), criteria


def write_history(settings: Settings, service: Mapping[str, Any] | None = None,
                  quality: tuple[str, list[float]] | None = None) -> tuple[Path, list[dict[str, Any]]]:
    """Build $LTR_HOME/history.html from every run and the registry's audit log; returns it and the criteria."""
    html, criteria = history(settings, ModelRegistry.from_settings(settings), service, quality)
    out = Path(settings.home) / "history.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html)
    return out, criteria
