"""Keeps the live model: polls the registry, loads a new version off the request path, verifies, warms up, swaps.

The swap is one attribute assignment: a request reads `reloader.live` once and uses that object to the end, so it
always ranks with one whole model, old or new. A version that fails to load or verify is refused; the old one stays.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import structlog

from ltr_pipeline.config import Settings
from ltr_pipeline.errors import LtrError, ObjectNotFound
from ltr_pipeline.registry import ModelRegistry
from ltr_pipeline.scoring import LgbmScorer, Scorer, WeightedSumScorer, default_weights
from ltr_pipeline.service.metrics import ServiceMetrics

log = structlog.get_logger("ltr_pipeline.service.reloader")

WARMUP_ROUNDS = 20


@dataclass(frozen=True)
class LiveModel:
    version: str | None
    scorer: Scorer | None  # None: no model, the legacy scorer answers
    legacy: Scorer
    pointer_sha: str | None = None
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class Reloader:
    def __init__(self, settings: Settings, registry: ModelRegistry, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        names = settings.feature_names
        self.live = LiveModel(None, None, WeightedSumScorer(default_weights(names), names))
        self.last_reload: dict[str, Any] = {"outcome": "never", "at": None}
        self._tag: str | None = None
        self._lock = threading.Lock()
        metrics.set_live_version(None)

    def check(self, force: bool = False) -> dict[str, Any]:
        """Load the registry's live version if it changed. Blocking: call it from a worker thread."""
        with self._lock:
            started = time.perf_counter()
            outcome, error, version = "unchanged", None, self.live.version
            try:
                changed = self.registry.pointer_if_changed(None if force else self._tag)
                if changed is not None:
                    pointer, tag = changed
                    version = pointer["version"]
                    sha = pointer.get("sha256", {}).get("metadata.json")
                    if version != self.live.version or sha != self.live.pointer_sha or force:
                        self.live = self._load(version)
                        outcome = "loaded"
                    self._tag = tag
            except ObjectNotFound:
                outcome = "absent"
            except LtrError as exc:
                outcome, error = "failed", str(exc)
            except Exception as exc:  # a broken file must never take the service down
                outcome, error = "failed", f"{type(exc).__name__}: {exc}"
            self.metrics.reloads.labels(outcome=outcome).inc()
            record = {
                "outcome": outcome,
                "at": datetime.now(UTC).isoformat(),
                "attempted_version": version,
                "live_version": self.live.version,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "error": error,
            }
            if outcome != "unchanged" or self.last_reload["outcome"] == "never":
                self.last_reload = record
            if outcome == "loaded":
                log.info("model.reloaded", version=self.live.version, duration_ms=record["duration_ms"])
            elif outcome == "failed":
                log.error("model.reload_failed", version=version, error=error, kept=self.live.version)
            return record

    def _load(self, version: str) -> LiveModel:
        names = self.settings.feature_names
        bundle = self.registry.load(version)
        scorer = LgbmScorer(bundle.model_text, names)
        warm = np.random.default_rng(0).random((10, len(names)))
        for _ in range(WARMUP_ROUNDS):
            scores = scorer.score(warm)
        if not np.all(np.isfinite(scores)):
            raise LtrError(f"version {version} scores non-finite values on warm-up: refusing it")
        live = LiveModel(version, scorer, WeightedSumScorer(bundle.weights, names), bundle.pointer_sha)
        self.metrics.set_live_version(version)
        self.metrics.model_loaded_at.set(live.loaded_at.timestamp())
        return live

    async def poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_seconds)
            await asyncio.to_thread(self.check)
