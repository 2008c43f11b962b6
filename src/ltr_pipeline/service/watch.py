"""The guard inside the service (LTR_GUARD_SECONDS > 0): every worker runs `guard.Guard` on its own, with the
latency of the service's ranking requests; the registry's claim (`bad/<version>.json`) lets exactly one of them act
on a bad version. The worker that rolled back reloads at once; the others follow at their next poll."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime

import structlog

from ltr_pipeline.config import Settings
from ltr_pipeline.guard import Guard, GuardReport, histogram_p95
from ltr_pipeline.service.metrics import LATENCY_BUCKETS, ServiceMetrics
from ltr_pipeline.service.reloader import Reloader

log = structlog.get_logger("ltr_pipeline.service.guard")


class ServiceGuard:
    def __init__(self, settings: Settings, reloader: Reloader, metrics: ServiceMetrics) -> None:
        self.settings, self.reloader, self.metrics = settings, reloader, metrics
        self.guard = Guard(settings, reloader.registry, latency=self.latency)
        self._baseline: dict[str, list[float]] = {}

    def latency(self, version: str) -> float | None:
        """p95 (ms) of the ranking requests since this worker's guard first saw `version` live (all workers' requests
        in multiprocess mode); None before LTR_GUARD_MIN_CASES of them."""
        now = self.metrics.latency_buckets()
        base = self._baseline.setdefault(version, now)
        delta = [a - b for a, b in zip(now, base, strict=True)]
        if delta[-1] < self.settings.guard_min_cases:
            return None
        p95 = histogram_p95([*LATENCY_BUCKETS, math.inf], delta)
        return None if p95 is None else p95 * 1000

    def check(self, now: datetime | None = None) -> GuardReport | None:
        """One guard check at `now` (default: the clock), counted in ltr_guard_checks_total; None if it could not
        run (an unreadable registry or event file must not stop the loop)."""
        try:
            report = self.guard.check(now)
        except Exception as exc:
            log.error("guard.check_failed", error=f"{type(exc).__name__}: {exc}")
            self.metrics.guard_checks.labels(outcome="error").inc()
            return None
        verdicts = {c.verdict for c in report.checks}
        outcome = "fail" if "fail" in verdicts else "pass" if verdicts == {"pass"} else "insufficient data"
        self.metrics.guard_checks.labels(outcome=outcome).inc()
        if report.action in ("rolled_back", "flagged"):
            self.metrics.guard_rollbacks.labels(action=report.action).inc()
        if report.action == "rolled_back":
            self.reloader.check(force=True)
        return report

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.guard_seconds)
            await asyncio.to_thread(self.check)
