"""Keeps the live model: polls the registry, loads a new version off the request path, verifies, warms up, swaps.

The swap is one attribute assignment: a request reads `reloader.live` once and uses that object to the end, so it
always ranks with one whole model, old or new. A version that fails to load or verify is refused; the old one stays,
and the same pointer is retried after 1, 2, 4... polls.
After a load, a background thread compiles the model (`ltr_pipeline.compiled`) and, once the compiled scorer gives
the booster's scores on a probe, swaps it in the same way. While a compiled model serves, a new version waits for
its own compiled scorer and goes live with it, so no request is answered at the booster's speed; its booster goes
live instead if the compile fails or outlasts `LTR_COMPILE_WAIT_SECONDS` (0: at once), or on an admin reload. The
optional challenger (`LTR_CHALLENGER_VERSION`) is loaded, checked and compiled the same way and retried after 1, 2,
4... polls until it loads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import structlog

from ltr_pipeline import compiled
from ltr_pipeline.config import Settings
from ltr_pipeline.errors import LtrError, ModelLoadError, ObjectNotFound, PointerError
from ltr_pipeline.priority import background_priority
from ltr_pipeline.registry import METADATA_FILE, ModelRegistry
from ltr_pipeline.scoring import LgbmScorer, Scorer, WeightedSumScorer, default_weights
from ltr_pipeline.service.metrics import ServiceMetrics

log = structlog.get_logger("ltr_pipeline.service.reloader")

WARMUP_ROUNDS = 5
Role = Literal["live", "challenger"]
Compiler = Callable[[str, Path], tuple[Path, Path]]


def probe(n_features: int) -> np.ndarray:
    """Rows to warm a scorer up and to compare two scorers on: uniform in [0, 1], some features missing."""
    rows = np.random.default_rng(0).random((64, n_features))
    rows[::7, 0] = np.nan
    rows[3::5, -1] = np.nan
    return rows


class Backoff:
    """Polls to skip while something keeps failing to load: 0, 1, 3, 7... after each failure in a row (retried after
    1, 2, 4... polls), at most `cap`. `key` tells failures apart: another key starts again at once."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.key: str | None = None
        self.failures = self.skip = 0

    def defer(self, key: str | None = None) -> bool:
        """True (and one poll fewer to skip) while `key` is being backed off."""
        if self.key != key or self.skip == 0:
            return False
        self.skip -= 1
        return True

    def failed(self, key: str | None = None) -> int:
        """Record one more failure of `key`; the failures in a row."""
        self.failures = self.failures + 1 if self.key == key else 1
        self.key, self.skip = key, min(2 ** (self.failures - 1) - 1, self.cap)
        return self.failures

    def reset(self) -> None:
        self.key, self.failures, self.skip = None, 0, 0


@dataclass(frozen=True)
class LiveModel:
    version: str | None
    scorer: Scorer | None  # None: no model, the legacy scorer answers
    legacy: Scorer
    pointer_sha: str | None = None
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    published_at: datetime | None = None  # when the version was published (its metadata's created_at)

    @property
    def backend(self) -> str:
        """What scores: `lleaves`, `lightgbm`, or `weighted_sum` when there is no model."""
        return (self.scorer or self.legacy).backend


class Reloader:
    def __init__(self, settings: Settings, registry: ModelRegistry, metrics: ServiceMetrics,
                 compiler: Compiler | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        names = settings.feature_names
        self.live = LiveModel(None, None, WeightedSumScorer(default_weights(names), names))
        self.challenger: LiveModel | None = None
        self.last_reload: dict[str, Any] = {"outcome": "never", "at": None}
        self.last_check: dict[str, Any] = self.last_reload  # every check, an unchanged pointer included
        self._tag: str | None = None
        cap = max(1, int(600 / settings.poll_seconds))  # at most ~10 minutes' worth of polls
        self._live_backoff = Backoff(cap)  # the live pointer, keyed by its storage tag
        self._challenger_backoff = Backoff(cap)
        self._pending: LiveModel | None = None  # a new version waiting for its compiled scorer
        self._lock = threading.Lock()
        level = settings.background_priority
        self._compiler = compiler if compiler is not None else (
            partial(compiled.compile_model, priority=level)
            if settings.compiled_scorer and compiled.available() else None)
        # Polls and loads run in one thread of their own, at idle CPU priority (`ltr_pipeline.priority`).
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ltr-reload", initializer=background_priority,
                                            initargs=(level,))
        self._publish_models()

    @property
    def waiting_version(self) -> str | None:
        """The new version waiting for its compiled scorer to go live, if any."""
        pending = self._pending
        return pending.version if pending is not None else None

    def check(self, force: bool = False) -> dict[str, Any]:
        """Load the registry's live version if it changed. Blocking: call it from a worker thread."""
        with self._lock:
            started = time.perf_counter()
            outcome, error, version = self._follow_pointer(force)
            record = self._record(outcome, error, version, started)
            if self.settings.challenger_version and self.challenger is None:
                self._load_challenger(self.settings.challenger_version, force)
            return record

    def _follow_pointer(self, force: bool) -> tuple[str, str | None, str | None]:
        """Read the live pointer and act on it: (outcome, error, the version it names)."""
        outcome, error, version, tag = "unchanged", None, self.live.version, None
        try:
            changed = self.registry.pointer_if_changed(None if force else self._tag)
            if changed is not None:
                pointer, tag = changed
                version = pointer["version"]
                outcome = self._take(pointer, tag, force)
        except ObjectNotFound:
            outcome = "absent"
        except PointerError as exc:  # the pointer itself is unreadable: backed off the same way
            if not force and self._live_backoff.defer(exc.tag):
                outcome = "deferred"
            else:
                outcome, error, tag = "failed", str(exc), exc.tag
        except LtrError as exc:
            outcome, error = "failed", str(exc)
        except Exception as exc:  # a broken file must never take the service down
            outcome, error = "failed", f"{type(exc).__name__}: {exc}"
        if outcome == "failed" and tag is not None:
            # The same pointer failing again is retried after 1, 2, 4... polls: a transient error clears on the
            # next poll, a damaged version stops being read every poll. A new pointer is tried at once, and a
            # forced reload always tries.
            self._live_backoff.failed(tag)
        return outcome, error, version

    def _take(self, pointer: dict[str, Any], tag: str, force: bool) -> str:
        """A changed pointer: load what it names unless that already serves (or it is being backed off)."""
        if not force and self._live_backoff.defer(tag):
            return "deferred"
        version = pointer["version"]
        sha = pointer.get("sha256", {}).get(METADATA_FILE)
        outcome = "unchanged"
        if version != self.live.version or sha != self.live.pointer_sha or force:
            model, model_text = self._load(version)
            # The compiled model serving now goes on until this one is compiled (or the wait is over).
            wait = self.settings.compile_wait_seconds
            waits = not force and wait > 0 and self._compiler is not None and self.live.backend == "lleaves"
            self._pending = model if waits else None
            if waits:
                timer = threading.Timer(wait, self._stop_waiting, (model, f"not compiled in {wait:g} s"))
                timer.daemon = True
                timer.start()
            else:
                self._go_live(model)
            self._compile_in_background("live", model, model_text)
            outcome = "loaded"
        else:  # back to the version that serves: one still waiting for its compile is dropped
            self._pending = None
        self._tag = tag
        self._live_backoff.reset()
        return outcome

    def _record(self, outcome: str, error: str | None, version: str | None, started: float) -> dict[str, Any]:
        """Count, log and keep (as `last_check`, and as `last_reload` unless nothing changed) what a check did."""
        self.metrics.reloads.labels(outcome=outcome).inc()
        record = {
            "outcome": outcome,
            "at": datetime.now(UTC).isoformat(),
            "attempted_version": version,
            "live_version": self.live.version,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            "error": error,
        }
        self.last_check = record
        if outcome not in ("unchanged", "deferred") or self.last_reload["outcome"] == "never":
            self.last_reload = record
        if outcome == "loaded":
            log.info("model.reloaded", version=version, duration_ms=record["duration_ms"],
                     live=self.live.version, waiting_for_compile=self._pending is not None)
        elif outcome == "failed":
            log.error("model.reload_failed", version=version, error=error, kept=self.live.version)
        return record

    def _load(self, version: str) -> tuple[LiveModel, str]:
        names = self.settings.feature_names
        bundle = self.registry.load(version)
        scorer = LgbmScorer(bundle.model_text, names)
        warm = probe(len(names))
        for _ in range(WARMUP_ROUNDS):
            scores = scorer.score(warm)
        if not np.all(np.isfinite(scores)):
            raise LtrError(f"version {version} scores non-finite values on warm-up: refusing it")
        published = bundle.metadata.get("created_at")
        return LiveModel(version, scorer, WeightedSumScorer(bundle.weights, names), bundle.pointer_sha,
                         published_at=datetime.fromisoformat(published) if isinstance(published, str) else None), \
            bundle.model_text

    def _load_challenger(self, version: str, force: bool) -> None:
        """Retried with the live pointer's backoff while it fails (a forced reload tries at once); the live model is
        untouched either way."""
        if not force and self._challenger_backoff.defer():
            return
        try:
            self.challenger, model_text = self._load(version)
        except Exception as exc:
            log.error("challenger.load_failed", version=version, failures=self._challenger_backoff.failed(),
                      error=f"{type(exc).__name__}: {exc}")
            return
        self._challenger_backoff.reset()
        log.info("challenger.loaded", version=version)
        self._publish_models()
        self._compile_in_background("challenger", self.challenger, model_text)

    def _go_live(self, model: LiveModel) -> None:
        """The metrics first, then the swap: whoever sees the new model live also sees it in the metrics."""
        self.metrics.model_loaded_at.set(model.loaded_at.timestamp())
        if model.published_at is not None:
            self.metrics.model_published_at.set(model.published_at.timestamp())
        self._publish_models(live=model)
        self.live = model

    def _stop_waiting(self, model: LiveModel, why: str) -> None:
        """`model`, if still waiting for its compiled scorer, goes live with its booster."""
        with self._lock:
            if self._pending is model:
                self._pending = None
                self._go_live(model)
                log.warning("model.live_with_booster", version=model.version, why=why)

    def _publish_models(self, live: LiveModel | None = None, challenger: LiveModel | None = None) -> None:
        """The models held, to the metrics; `live` or `challenger`: about to be held (published before the swap)."""
        held = {"live": live or self.live, "challenger": challenger or self.challenger}
        self.metrics.set_models({
            role: (model.version, model.backend)
            for role, model in held.items() if model is not None
        })

    def _compile_in_background(self, role: Role, model: LiveModel, model_text: str) -> None:
        """Compile `model` in a thread (the compiler itself runs in a child process) and swap the compiled scorer
        in if `model` is still what `role` holds; the booster serves until then, and for good if this fails."""
        compiler = self._compiler
        if compiler is None or model.scorer is None:
            return

        def work() -> None:
            background_priority(self.settings.background_priority)
            started = time.perf_counter()
            names = self.settings.feature_names
            try:
                model_file, obj = compiler(model_text, self.settings.compile_cache_path)
                scorer = compiled.CompiledScorer(model_file, obj, names)
                rows = probe(len(names))
                expected, got = model.scorer.score(rows), scorer.score(rows)  # type: ignore[union-attr]
                if not np.allclose(got, expected, rtol=1e-9, atol=1e-12):
                    raise ModelLoadError("compiled scores differ from the booster's on the probe rows")
            except Exception as exc:
                self.metrics.compiles.labels(outcome="failed").inc()
                log.warning("model.compile_failed", role=role, version=model.version,
                            error=f"{type(exc).__name__}: {exc}", serving="lightgbm")
                if role == "live":
                    self._stop_waiting(model, "its compile failed")
                return
            faster = replace(model, scorer=scorer)
            with self._lock:
                if role == "live" and self._pending is model:
                    self._pending, fresh = None, True
                    self._go_live(faster)
                else:
                    fresh = getattr(self, role) is model
                    if fresh and role == "live":
                        self._go_live(faster)
                    elif fresh:
                        self._publish_models(challenger=faster)
                        self.challenger = faster
            seconds = time.perf_counter() - started
            self.metrics.compiles.labels(outcome="swapped" if fresh else "stale").inc()
            self.metrics.compile_duration.observe(seconds)
            log.info("model.compiled", role=role, version=model.version, seconds=round(seconds, 3),
                     swapped=fresh)

        threading.Thread(target=work, name=f"ltr-compile-{role}", daemon=True).start()

    async def poll_forever(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(self.settings.poll_seconds)
                await loop.run_in_executor(self._executor, self.check)
        finally:
            self._executor.shutdown(wait=False)
