"""Every Prometheus metric the service exports, on a registry of its own per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0)


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.predictions = Counter(
            "ltr_predictions", "Ranking requests answered, by the algorithm that ranked them.", ["algorithm"],
            registry=r,
        )
        self.prediction_duration = Histogram(
            "ltr_prediction_duration_seconds", "Time to rank one request (parse, score, encode).",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.fallbacks = Counter(
            "ltr_fallback", "Requests ranked by the legacy weighted sum instead of the model, by reason.", ["reason"],
            registry=r,
        )
        self.reloads = Counter(
            "ltr_reloads", "Model reload attempts, by outcome (loaded, unchanged, failed, absent).", ["outcome"],
            registry=r,
        )
        self.live_version = Gauge(
            "ltr_model_info", "The live model version (value 1 on the live version's label).", ["version"],
            registry=r,
        )
        self.model_loaded_at = Gauge(
            "ltr_model_loaded_timestamp_seconds", "When the live model was loaded (Unix time).", registry=r
        )
        self.events = Counter(
            "ltr_events", "Served events by outcome (sent, spooled, resent).", ["outcome"], registry=r
        )
        self.spooled = Gauge("ltr_events_spooled", "Events waiting in the spool for the broker.", registry=r)
        self.bad_requests = Counter(
            "ltr_bad_requests", "Ranking requests refused as malformed.", registry=r
        )

    def total(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples named `name` whose labels include `labels`."""
        return sum(
            sample.value
            for family in self.registry.collect()
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def snapshot(self) -> dict[str, float | int | None]:
        predictions = int(self.total("ltr_predictions_total"))
        fallbacks = int(self.total("ltr_fallback_total"))
        return {
            "predictions": predictions,
            "fallbacks": fallbacks,
            "fallback_rate": fallbacks / predictions if predictions else None,
            "reload_failures": int(self.total("ltr_reloads_total", outcome="failed")),
            "events_spooled": int(self.total("ltr_events_spooled")),
        }

    def set_live_version(self, version: str | None) -> None:
        self.live_version.clear()
        self.live_version.labels(version=version or "legacy").set(1)
