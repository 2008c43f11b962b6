"""`ltr soak`: many daily cycles with the service live and the guard on, with faults injected on chosen days.

Like `ltr demo` (demo.py): legacy days first, then every day a daily run, the service hot-reloads what was published,
and the next day's cases are ranked by the service. The guard (guard.py) checks the live version every
CHECK_EVERY cases of the day, in simulated time, with the service's own latency histogram. Five faults, spread
evenly over the run:

- broker outage: the day's run reads with LTR_SOURCE=auto from a Kafka broker that is not there (a closed port);
- registry outage during publish: every write to the registry fails during the day's run (reads work: the run
  still judges the champion), as a bucket that refuses writes would;
- malformed events: a batch of broken lines lands in the day's event folder before the run;
- skewed model: the day's run trains and is judged on one feature scaled by SKEW_SCALE (a pipeline bug the offline
  gate cannot see, since training and holdout agree), while the clients send it unscaled;
- service restart: the service stops halfway through a day and a new one starts.

The faults are injected here, around real parts: the run, the registry, the event files and the service are the
ones `ltr run` and `ltr serve` use. At the end the history page shows the five success criteria.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from ltr_pipeline import engine, pipeline
from ltr_pipeline.config import Settings
from ltr_pipeline.demo import BackgroundServer, ServiceScorer, free_port, run_moment, simulate_history, wait_for_version
from ltr_pipeline.errors import RegistryError
from ltr_pipeline.events.schema import Event
from ltr_pipeline.guard import GuardReport
from ltr_pipeline.measures import ndcg_at_k
from ltr_pipeline.record import RunReport
from ltr_pipeline.registry import ModelRegistry
from ltr_pipeline.service.watch import ServiceGuard
from ltr_pipeline.simulate import SimConfig, make_marketplace, simulate_day, write_day
from ltr_pipeline.storage import ArtifactStore, store_for

FAULTS = ("broker outage", "registry outage during publish", "malformed events", "skewed model", "service restart")
BITES_ON_PUBLISH = ("registry outage during publish", "skewed model")  # only exercised when the gate passes
CHECK_EVERY = 25  # cases between two guard checks
SKEW_SCALE = 0.01
MALFORMED_LINES = 200


@dataclass
class SoakDay:
    run_date: date
    fault: str | None
    decision: str
    live_version: str | None
    did: str
    recovery: str
    requests: int
    fallbacks: int
    guard: list[dict[str, Any]] = field(default_factory=list)  # guard reports that acted
    truth_ndcg5: float | None = None  # of the day's rankings as shown, by the simulator's true relevance


def schedule(days: int) -> dict[int, str]:
    """Which daily cycle (1-based) gets which fault: spread evenly."""
    return {max(1, round(days * (i + 1) / (len(FAULTS) + 1))): name for i, name in enumerate(FAULTS)}


class RefusingWrites(ArtifactStore):
    """A store whose every write fails, as a registry bucket does during an outage; reads pass through."""

    def __init__(self, store: ArtifactStore) -> None:
        self.inner, self.uri = store, store.uri

    def _refuse(self) -> RegistryError:
        return RegistryError(f"registry {self.uri} unreachable (injected outage): write refused")

    def write(self, key: str, data: bytes) -> None:
        raise self._refuse()

    def create(self, key: str, data: bytes) -> bool:
        raise self._refuse()

    def delete_prefix(self, prefix: str) -> int:
        raise self._refuse()

    def read(self, key: str) -> bytes:
        return self.inner.read(key)

    def read_if_changed(self, key: str, tag: str | None) -> tuple[bytes, str] | None:
        return self.inner.read_if_changed(key, tag)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)


@contextlib.contextmanager
def skewed(feature: str, scale: float) -> Iterator[None]:
    """The run's dataset with `feature` multiplied by `scale` (training, validation and holdout alike; the local
    engine's)."""
    original = engine.build_queries

    def build(*args: Any, **kwargs: Any) -> Any:
        queries, stats = original(*args, **kwargs)
        queries.features[:, queries.feature_names.index(feature)] *= scale
        return queries, stats

    engine.build_queries = build
    try:
        yield
    finally:
        engine.build_queries = original


def malformed_batch(folder: Path, lines: int) -> Path:
    """Broken events: not JSON, wrong types, missing fields, an impossible timestamp."""
    kinds = [b"{not json", b'{"event_type": "recommendation", "position": "first"}', b'{"event_id": 7}',
             b'{"event_id": "x", "event_type": "feedback", "ts": "9999-12-31T23:00:00Z", "case_id": "c", '
             b'"lawyer_id": "l", "action": "click"}']
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "malformed.jsonl"
    path.write_bytes(b"\n".join(kinds[i % len(kinds)] for i in range(lines)) + b"\n")
    return path


def run_soak(
    settings: Settings, days: int = 30, history_days: int = 21, cases_per_day: int = 300, start: date | None = None,
    faults: bool = True, on_progress: Callable[[str], None] = lambda _: None,
    on_day: Callable[[SoakDay], None] = lambda _: None,
) -> tuple[list[SoakDay], dict[str, Any]]:
    """The soak; returns its days and the service's totals over it (requests, fallbacks by reason)."""
    sim = SimConfig(seed=settings.seed, cases_per_day=cases_per_day)
    start = start or (datetime.now(UTC).date() - timedelta(days=history_days + days))
    market = make_marketplace(sim)
    settings = settings.model_copy(update={"poll_seconds": 0.2, "event_sink": "none"})  # the simulator logs
    plan = schedule(days) if faults else {}
    registry = ModelRegistry.from_settings(settings)
    reasons: Counter[str] = Counter()
    requests = 0
    results: list[SoakDay] = []
    server = BackgroundServer(settings).__enter__()
    client = httpx.Client(base_url=server.url, timeout=10)
    scorer = ServiceScorer(client, settings.feature_names)
    try:
        legacy: list[dict[str, object]] = []
        simulate_history(market, start, history_days, sim, scorer, settings, on_progress, truth=legacy)
        requests += scorer.requests
        reasons.update(scorer.reasons)
        pending_recovery: SoakDay | None = None
        armed: list[str] = []  # faults due and not yet exercised
        for n in range(1, days + 1):
            run_date = start + timedelta(days=history_days + n - 2)
            armed += [plan[n]] if n in plan else []
            fault = armed.pop(0) if armed else None
            on_progress(f"day {n}/{days}: daily run for {run_date}" + (f" ({fault})" if fault else ""))
            report = _run(settings, run_date, fault, registry)
            if fault in BITES_ON_PUBLISH and not report.gate.passed:  # the gate refused the day's model: the
                armed.insert(0, fault)  # fault never met a publish, so it is injected again the next day
                fault = None
            live = wait_for_version(client, registry.live_version())
            day = SoakDay(run_date, fault, report.decision, live, *_what_run_did(report, fault), 0, 0)
            if pending_recovery is not None and report.decision == "published":
                later = (run_date - pending_recovery.run_date).days
                pending_recovery.recovery = f"next run published {report.published_version} ({later} day" + \
                    ("s)" if later > 1 else ")")
                pending_recovery = None
            if fault == "registry outage during publish" and report.decision == "publish_failed":
                pending_recovery = day
            next_day = run_date + timedelta(days=1)
            scorer.requests, scorer.reasons = 0, Counter()
            watch = {"guard": _guard(settings, server)}
            restart_at = cases_per_day // 2 if fault == "service restart" else None

            def after_case(i: int, events: list[Event], day: SoakDay = day, watch: dict[str, ServiceGuard] = watch,
                           restart_at: int | None = restart_at, next_day: date = next_day) -> None:
                nonlocal server, client
                if i == restart_at:
                    began = time.monotonic()
                    server.__exit__()
                    client.close()
                    server = BackgroundServer(settings).__enter__()
                    client = scorer.client = httpx.Client(base_url=server.url, timeout=10)
                    wait_for_version(client, registry.live_version())
                    day.did = f"restarted after case {i}: the new service loaded {_live(server)}"
                    day.recovery = f"{time.monotonic() - began:.1f} s to serve again"
                    watch["guard"] = _guard(settings, server)
                if (i + 1) % CHECK_EVERY:
                    return
                write_day(events, settings.events_path, next_day)
                report = watch["guard"].check(events[-1].ts)
                if report is not None and report.action in ("rolled_back", "flagged"):
                    _record_rollback(day, report, i + 1)
                    wait_for_version(client, report.rolled_back_to or report.version)

            truth: list[dict[str, Any]] = []
            events = simulate_day(market, next_day, sim, scorer, scorer.version, truth=truth, after_case=after_case)
            write_day(events, settings.events_path, next_day)
            day.truth_ndcg5 = truth_ndcg(truth, sim.candidates)
            day.requests, day.fallbacks = scorer.requests, sum(scorer.reasons.values())
            requests += scorer.requests
            reasons.update(scorer.reasons)
            results.append(day)
            on_day(day)
    finally:
        client.close()
        server.__exit__()
    return results, {"requests": requests, "fallbacks": dict(reasons),
                     "legacy_truth_ndcg5": truth_ndcg(legacy, sim.candidates)}


def _guard(settings: Settings, server: BackgroundServer) -> ServiceGuard:
    return ServiceGuard(settings, server.app.state.reloader, server.app.state.metrics)


def _live(server: BackgroundServer) -> str | None:
    return server.app.state.reloader.live.version


def _run(settings: Settings, run_date: date, fault: str | None, registry: ModelRegistry) -> RunReport:
    """The day's run (at 02:15 the next morning), with its fault injected."""
    now = run_moment(run_date)
    if fault == "broker outage":
        dead = settings.model_copy(update={"source": "auto", "kafka_bootstrap_servers": f"127.0.0.1:{free_port()}",
                                           "kafka_timeout_seconds": 3.0})
        return pipeline.run_daily(run_date, dead, now=now)
    if fault == "registry outage during publish":
        return pipeline.run_daily(run_date, settings, now=now,
                                  registry=ModelRegistry(RefusingWrites(store_for(settings))))
    if fault == "malformed events":
        malformed_batch(settings.events_path / run_date.isoformat(), MALFORMED_LINES)
    if fault == "skewed model":
        weights = registry.load().weights if registry.live_version() else {}
        feature = max(weights, key=weights.__getitem__) if weights else settings.feature_names[0]
        with skewed(feature, SKEW_SCALE):
            return pipeline.run_daily(run_date, settings, now=now)
    return pipeline.run_daily(run_date, settings, now=now)


def _what_run_did(report: RunReport, fault: str | None) -> tuple[str, str]:
    """(what the system did, time to recover) as far as the run tells."""
    if fault == "broker outage":
        fell = report.source.fallback
        return (f"read the event files instead ({fell.reason[:60]}); {report.decision}" if fell else
                f"no fallback recorded; {report.decision}", "0 (the run completed)")
    if fault == "registry outage during publish":
        return (f"publish failed, {report.live_version} stayed live" if report.decision == "publish_failed" else
                f"{report.decision}", "pending")
    if fault == "malformed events":
        return f"{report.quarantined} events quarantined; {report.decision}", "0 (the run completed)"
    if fault == "skewed model":
        return f"the offline gate {'passed' if report.gate.passed else 'refused'} it: {report.decision} " \
               f"{report.published_version or ''}", "not rolled back"
    return report.decision, "-"


def _record_rollback(day: SoakDay, report: GuardReport, cases: int) -> None:
    failed = ", ".join(f"{c.name} {c.value:.3g}" for c in report.failed if c.value is not None)
    day.guard.append({"version": report.version, "rolled_back_to": report.rolled_back_to, "cases": cases,
                      "version_cases": report.cases, "failed": failed, "action": report.action})
    day.did += f"; guard {report.action} {report.version} -> {report.rolled_back_to} ({failed})"
    day.recovery = f"{cases} cases of the day ({report.cases} ranked by it)"


def truth_ndcg(truth: list[dict[str, Any]], candidates: int) -> float:
    """Mean nDCG@5 of the cases shown, graded by the simulator's true relevance (rows in shown order per case)."""
    grades = np.array([row["relevance"] for row in truth], dtype=np.float64).reshape(-1, candidates)
    return float(np.mean([ndcg_at_k(case, 5) or 0.0 for case in grades]))


def quality(days: list[SoakDay], totals: dict[str, Any]) -> tuple[str, list[float]]:
    """The criterion's measure of nDCG@5 over time: the simulator's truth of what was shown, the legacy ranking's
    (before the first run) first, then each day's."""
    return ("truth nDCG@5 of what was shown, from the simulator: legacy before the first run, then each day",
            [totals["legacy_truth_ndcg5"], *(d.truth_ndcg5 for d in days if d.truth_ndcg5 is not None)])


def service_state(totals: dict[str, Any]) -> dict[str, Any]:
    """The success criteria's service figures from the soak's totals (every service it started)."""
    requests, reasons = totals["requests"], totals["fallbacks"]
    unpublished = reasons.get("no_model", 0)
    with_model = requests - unpublished
    failures = sum(reasons.values()) - unpublished
    return {"predictions": requests, "fallbacks": sum(reasons.values()), "fallbacks_by_reason": reasons,
            "model_fallback_rate": failures / with_model if with_model else None}
