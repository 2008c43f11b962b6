"""Shadow scoring and A/B assignment for a challenger model.

Shadow: `/ltr/rank` answers with the live model and hands (case, features, live scores) to `ShadowScorer.submit`,
which only puts them on a bounded queue; one background thread scores them with the challenger and records how far
the two agree (overlap@5 of the top five, Kendall's tau-b of the scores) as metrics and one log line per request.
A full queue drops the comparison (counted), never the request.

A/B: `ab_variant` puts a case in the challenger's arm when a hash of its case_id falls below the configured share,
so every request of a case gets the same arm (sticky), on every worker and across restarts.
"""

from __future__ import annotations

import hashlib
import queue
import threading

import numpy as np
import structlog

from ltr_pipeline.measures import kendall_tau, overlap_at_k
from ltr_pipeline.priority import Priority, background_priority
from ltr_pipeline.service.metrics import ServiceMetrics
from ltr_pipeline.service.reloader import LiveModel

log = structlog.get_logger("ltr_pipeline.service.shadow")
QUEUE_SIZE = 1000


def ab_variant(case_id: str, fraction: float) -> str:
    """'challenger' for a stable `fraction` of case ids, else 'live'."""
    if fraction <= 0:
        return "live"
    bucket = int.from_bytes(hashlib.blake2b(case_id.encode(), digest_size=8).digest(), "big") / 2.0**64
    return "challenger" if bucket < fraction else "live"


class ShadowScorer:
    def __init__(self, metrics: ServiceMetrics, priority: Priority = "idle") -> None:
        self.metrics, self.priority = metrics, priority
        self._queue: queue.Queue[tuple[str, LiveModel, str | None, np.ndarray, np.ndarray] | None] = queue.Queue(
            QUEUE_SIZE)
        self._thread = threading.Thread(target=self._run, name="ltr-shadow", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def submit(self, case_id: str, challenger: LiveModel, live_version: str | None, matrix: np.ndarray,
               live_scores: np.ndarray) -> None:
        try:
            self._queue.put_nowait((case_id, challenger, live_version, matrix, live_scores))
        except queue.Full:
            self.metrics.shadow.labels(outcome="dropped").inc()

    def _run(self) -> None:
        background_priority(self.priority)  # shadow scores are never worth a request's CPU time
        while (item := self._queue.get()) is not None:
            case_id, challenger, live_version, matrix, live_scores = item
            try:
                scores = challenger.scorer.score(matrix)  # type: ignore[union-attr]
                if not np.all(np.isfinite(scores)):
                    raise ValueError("the challenger scored non-finite values")
                overlap, tau = overlap_at_k(live_scores, scores, 5), kendall_tau(live_scores, scores)
            except Exception as exc:
                self.metrics.shadow.labels(outcome="failed").inc()
                log.warning("shadow.failed", case_id=case_id, challenger=challenger.version, error=str(exc))
                continue
            self.metrics.shadow.labels(outcome="scored").inc()
            self.metrics.shadow_overlap.observe(overlap)
            if not np.isnan(tau):
                self.metrics.shadow_tau.observe(tau)
            log.info("shadow.compared", case_id=case_id, live_version=live_version, challenger=challenger.version,
                     overlap_at_5=overlap, kendall_tau=round(tau, 4))
