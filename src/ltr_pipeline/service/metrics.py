"""Every Prometheus metric the service exports.

One worker: the metrics live on a registry of the app's own. Several uvicorn workers: `PROMETHEUS_MULTIPROC_DIR` is
set (`ltr serve --workers N` does it) and prometheus-client keeps every value in a memory-mapped file per process;
`/metrics` then merges all workers' files, so counters and histograms add up whichever worker is scraped. Gauges
that describe one worker (its live version, its load time) carry a `pid` label in that mode.

Business metrics (Hit@3, conversion, cases per day and model version) are the pipeline's: the service exports what
the newest run computed (`runs/<date>/business.json`), read at scrape time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0)
OVERLAP_BUCKETS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # overlap@5 takes these values
TAU_BUCKETS = (-0.5, 0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99, 1.0)  # negative: no _sum sample (OpenMetrics)
COMPILE_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160)
FALLBACK_REASONS = ("no_model", "scoring_error", "non_finite_scores")  # why the legacy sum answered (rank.py)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class BusinessCollector(Collector):
    """Hit@3, conversion and cases per day and model version from the newest run's business.json."""

    def __init__(self, runs_path: Path) -> None:
        self.runs_path = runs_path
        self._cache: tuple[Path, float, list[dict[str, Any]]] | None = None

    def rows(self) -> list[dict[str, Any]]:
        """The newest run's rows; a run that saw no events (it failed) leaves the gauges as the run before set them."""
        runs = sorted(self.runs_path.glob("*/business.json")) if self.runs_path.is_dir() else []
        runs = [p for p in runs if p.stat().st_size > 2]  # "[]": no events that day
        if not runs:
            return []
        path = runs[-1]
        mtime = path.stat().st_mtime
        if self._cache is None or self._cache[:2] != (path, mtime):
            try:
                rows = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                return self._cache[2] if self._cache else []
            self._cache = (path, mtime, rows if isinstance(rows, list) else [])
        return self._cache[2]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            key: GaugeMetricFamily(name, doc, labels=["day", "model_version"])
            for key, name, doc in (
                ("hit@3", "ltr_business_hit_at_3", "Share of cases with a positive action on a top-3 candidate."),
                ("conversion", "ltr_business_conversion", "Share of cases that reached the top grade (signed)."),
                ("cases", "ltr_business_cases", "Cases ranked, per day and the model version that ranked them."),
            )
        }
        for row in self.rows():
            for key, family in families.items():
                if isinstance(row.get(key), int | float):
                    family.add_metric([str(row.get("day")), str(row.get("version"))], float(row[key]))
        yield from families.values()


class ServiceMetrics:
    def __init__(self, runs_path: Path | None = None, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.business = BusinessCollector(runs_path) if runs_path is not None else None
        r = self.registry
        self.predictions = Counter(
            "ltr_predictions", "Ranking requests answered, by algorithm and variant (live, challenger in A/B, or "
            "interleaved).",
            ["algorithm", "variant"], registry=r,
        )
        self.prediction_duration = Histogram(
            "ltr_prediction_duration_seconds", "Time to rank one request (parse, score, encode).",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.fallbacks = Counter(
            "ltr_fallback", "Requests ranked by the legacy weighted sum instead of the model, by reason.", ["reason"],
            registry=r,
        )
        for reason in FALLBACK_REASONS:  # a series at 0 from the start, so that a rate over it exists
            self.fallbacks.labels(reason=reason)
        self._declare_models(r)
        self._declare_challenger(r)
        self.events = Counter(
            "ltr_events", "Served events by outcome (sent, spooled, resent).", ["outcome"], registry=r
        )
        self.spooled = Gauge("ltr_events_spooled", "Events waiting in the spool for the broker.", registry=r,
                             multiprocess_mode="livesum")
        self.bad_requests = Counter(
            "ltr_bad_requests", "Requests refused as malformed or too large (4xx).", registry=r
        )
        if self.business is not None:
            r.register(self.business)
        if not multiprocess_dir():
            ProcessCollector(registry=r)  # process_* (CPU, memory, open files) of this process
        self.guard_checks = Counter(
            "ltr_guard_checks", "Guard checks of the live version, by outcome (pass, fail, insufficient data, error); "
            "a fail is one worker's: the registry lets one guard act.", ["outcome"], registry=r,
        )
        self.guard_rollbacks = Counter(
            "ltr_guard_rollbacks", "Versions this service's guard rolled back or flagged, by action.", ["action"],
            registry=r,
        )
        self._held: dict[str, tuple[str, str, str]] = {}

    def _declare_models(self, r: CollectorRegistry) -> None:
        """Reloads, the models held and their compilation."""
        self.reloads = Counter(
            "ltr_reloads", "Model reload attempts, by outcome (loaded, unchanged, failed, absent, deferred).",
            ["outcome"], registry=r,
        )
        self.model_info = Gauge(
            "ltr_model_info", "The models this worker holds (value 1): role live or challenger, version, and the "
            "scorer backend (lightgbm until the compiled lleaves scorer is ready).", ["role", "version", "backend"],
            registry=r, multiprocess_mode="liveall",
        )
        self.model_loaded_at = Gauge(
            "ltr_model_loaded_timestamp_seconds", "When the live model was loaded (Unix time).", registry=r,
            multiprocess_mode="liveall",
        )
        self.model_published_at = Gauge(
            "ltr_model_published_timestamp_seconds", "When the live model's version was published (Unix time): "
            "how stale the model is, whatever the restarts.", registry=r, multiprocess_mode="liveall",
        )
        self.compiles = Counter(
            "ltr_compiles", "Compilations of a model into the fast scorer, by outcome (swapped, stale, failed).",
            ["outcome"], registry=r,
        )
        self.compile_duration = Histogram(
            "ltr_compile_duration_seconds", "Time from a reload to its compiled scorer serving (cache hits included).",
            buckets=COMPILE_BUCKETS, registry=r,
        )

    def _declare_challenger(self, r: CollectorRegistry) -> None:
        """The challenger: shadow comparisons and interleaving."""
        self.shadow = Counter(
            "ltr_shadow_requests", "Requests the challenger scored in the shadow, by outcome (scored, dropped, "
            "failed).", ["outcome"], registry=r,
        )
        self.shadow_overlap = Histogram(
            "ltr_shadow_overlap_at_5", "Share of the live top 5 that the challenger also puts in its top 5.",
            buckets=OVERLAP_BUCKETS, registry=r,
        )
        self.shadow_tau = Histogram(
            "ltr_shadow_kendall_tau", "Kendall's tau-b between the live and the challenger scores of a request.",
            buckets=TAU_BUCKETS, registry=r,
        )
        self.interleaved = Counter(
            "ltr_interleaved_rankings", "Rankings shown as a team-draft interleaving of the live model and the "
            "challenger.", registry=r,
        )
        self.interleaving_credit = Counter(
            "ltr_interleaving_credit", "Graded feedback on interleaved rankings, by the team that showed the candidate "
            "(live, challenger, or shared: a place both models gave it): the sum of the grades.", ["team"], registry=r,
        )

    def exposition(self) -> CollectorRegistry:
        """What `/metrics` shows: this app's registry, or every worker's files merged in multiprocess mode."""
        if not multiprocess_dir():
            return self.registry
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        ProcessCollector(registry=merged)  # process_* of the worker that answered this scrape
        if self.business is not None:
            merged.register(self.business)
        return merged

    def worker_exited(self) -> None:
        """Drop this worker's per-process gauges from the merged view (multiprocess mode)."""
        if multiprocess_dir():
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())

    def total(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples named `name` whose labels include `labels` (all workers in multiprocess mode)."""
        return sum(
            sample.value
            for family in self.exposition().collect()
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def latency_buckets(self) -> list[float]:
        """Cumulative counts of ltr_prediction_duration_seconds per bucket of LATENCY_BUCKETS and +Inf (all
        workers)."""
        bounds = [*(str(float(b)) for b in LATENCY_BUCKETS), "+Inf"]
        counts = dict.fromkeys(bounds, 0.0)
        for family in self.exposition().collect():
            for sample in family.samples:
                if sample.name == "ltr_prediction_duration_seconds_bucket" and sample.labels.get("le") in counts:
                    counts[sample.labels["le"]] += sample.value
        return [counts[b] for b in bounds]

    def snapshot(self) -> dict[str, float | int | None]:
        predictions = int(self.total("ltr_predictions_total"))
        fallbacks = int(self.total("ltr_fallback_total"))
        unpublished = int(self.total("ltr_fallback_total", reason="no_model"))  # before any model: legacy by design
        with_model = predictions - unpublished
        return {
            "predictions": predictions,
            "fallbacks": fallbacks,
            "fallback_rate": fallbacks / predictions if predictions else None,
            "model_fallback_rate": (fallbacks - unpublished) / with_model if with_model else None,
            "reload_failures": int(self.total("ltr_reloads_total", outcome="failed")),
            "events_spooled": int(self.total("ltr_events_spooled")),
        }

    def set_models(self, models: dict[str, tuple[str | None, str]]) -> None:
        """role -> (version, backend) of what this worker holds now; what it held before drops to 0. (Not
        `clear()`: in multiprocess mode a removed label set would live on in the worker's file.)"""
        for role, (version, backend) in models.items():
            labels = (role, version or "legacy", backend)
            previous = self._held.get(role)
            if previous is not None and previous != labels:
                self.model_info.labels(*previous).set(0)
            self.model_info.labels(*labels).set(1)
            self._held[role] = labels
