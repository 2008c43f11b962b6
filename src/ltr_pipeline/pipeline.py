"""One daily cycle: ingest -> dataset -> train -> evaluate -> gate -> publish or keep the champion.

Each step is a function of its own so the Airflow DAG can call them one by one; `run_daily` chains them. Whatever
the decision, the run keeps what it made under $LTR_HOME/runs/<run date>/: report.json, model.txt,
ltr_weights.json, quarantine.jsonl and run.log.
"""

from __future__ import annotations

import platform
from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import lightgbm
import orjson
import structlog

from ltr_pipeline import __version__
from ltr_pipeline.config import Settings
from ltr_pipeline.dataset import DatasetStats, Split, build_queries, split_by_time, window
from ltr_pipeline.errors import DataError, LtrError, RegistryError
from ltr_pipeline.evaluate import EvalReport, evaluate_all
from ltr_pipeline.events.base import EventSource, FallbackSource, IngestResult, write_quarantine
from ltr_pipeline.gate import GateResult, Thresholds, evaluate_gate
from ltr_pipeline.logs import also_log_to
from ltr_pipeline.registry import ModelRegistry
from ltr_pipeline.scoring import LgbmScorer, Scorer, WeightedSumScorer, default_weights
from ltr_pipeline.train import TrainedModel, train

log = structlog.get_logger(__name__)


def run_dir(settings: Settings, run_date: date) -> Path:
    return settings.runs_path / run_date.isoformat()


def make_source(settings: Settings) -> EventSource:
    """LTR_SOURCE: file, kafka, or auto (Kafka, falling back to the event files when the broker is unreachable)."""
    from ltr_pipeline.events.file import FileEventSource

    files = FileEventSource(settings.events_path)
    if settings.source == "file":
        return files
    from ltr_pipeline.events.kafka import KafkaEventSource

    kafka = KafkaEventSource(settings)
    return kafka if settings.source == "kafka" else FallbackSource(kafka, files)


def ingest(settings: Settings, run_date: date, source: EventSource | None = None) -> IngestResult:
    """The events of the training window ending at `run_date`; bad records go to the run's quarantine file."""
    start, end = window(run_date, settings.train_days)
    source = source or make_source(settings)
    result = source.read(start, end, settings.label_grades.keys())
    result.detail.update(window_start=start.isoformat(), window_end=end.isoformat())
    if result.quarantined:
        write_quarantine(result.quarantined, run_dir(settings, run_date) / "quarantine.jsonl")
        log.warning("ingest.quarantined", count=len(result.quarantined), run_date=str(run_date))
    log.info("ingest.done", source=result.source, **result.counts())
    return result


def prepare(settings: Settings, run_date: date, ingested: IngestResult) -> tuple[Split, DatasetStats]:
    queries, stats = build_queries(ingested.events, settings.feature_names, settings.label_grades)
    if queries.rows == 0:
        raise DataError(
            f"no impressions between {ingested.detail.get('window_start')} and {ingested.detail.get('window_end')} "
            f"from the {ingested.source} source: simulate or ingest events first"
        )
    _, end = window(run_date, settings.train_days)
    return split_by_time(queries, end, settings.holdout_days, settings.valid_fraction), stats


def load_champion(registry: ModelRegistry, settings: Settings) -> tuple[Scorer | None, str | None, str | None]:
    """The live model as a scorer, its version, and why it could not be loaded (if so)."""
    try:
        if registry.live_version() is None:
            return None, None, None
        bundle = registry.load()
        return LgbmScorer(bundle.model_text, settings.feature_names), bundle.version, None
    except LtrError as exc:
        log.error("champion.unloadable", error=str(exc))
        return None, None, str(exc)


def evaluate(model: TrainedModel, split: Split, settings: Settings, registry: ModelRegistry) -> EvalReport:
    champion, champion_version, _ = load_champion(registry, settings)
    return evaluate_all(
        new=LgbmScorer(model.model_text, settings.feature_names),
        legacy=WeightedSumScorer(default_weights(settings.feature_names), settings.feature_names),
        holdout=split.holdout,
        fairness_min_group=settings.fairness_min_group,
        champion=champion,
        champion_version=champion_version,
    )


def metadata_for(
    model: TrainedModel, report: EvalReport, gate: GateResult, stats: DatasetStats, ingested: IngestResult,
    split: Split, run_date: date,
) -> dict[str, Any]:
    return {
        "run_date": run_date.isoformat(),
        "source": {"name": ingested.source, **ingested.detail},
        "data": {
            "ingest": ingested.counts(), "dataset": asdict(stats),
            "train_rows": split.train.rows, "valid_rows": split.valid.rows, "holdout_rows": split.holdout.rows,
            "train_queries": split.train.queries, "holdout_queries": split.holdout.queries,
        },
        "features": model.feature_names,
        "params": model.params,
        "best_iteration": model.best_iteration,
        "weights": model.weights,
        "metrics": report.to_dict(),
        "gate": gate.to_dict(),
        "software": {"ltr_pipeline": __version__, "lightgbm": lightgbm.__version__,
                     "python": platform.python_version()},
    }


def run_daily(
    run_date: date, settings: Settings, now: datetime | None = None, thresholds: Thresholds | None = None,
    source: EventSource | None = None,
) -> dict[str, Any]:
    """Run one daily cycle for `run_date` and return its report (also written to the run folder)."""
    out = run_dir(settings, run_date)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quarantine.jsonl").unlink(missing_ok=True)
    started = datetime.now(UTC)
    with also_log_to(out / "run.log"), structlog.contextvars.bound_contextvars(run_date=run_date.isoformat()):
        log.info("run.start", registry=settings.registry)
        registry = ModelRegistry.from_settings(settings)
        ingested = ingest(settings, run_date, source)
        split, stats = prepare(settings, run_date, ingested)
        model = train(split.train, split.valid, settings)
        for name, data in model.files().items():
            (out / name).write_bytes(data)
        report = evaluate(model, split, settings, registry)
        gate = evaluate_gate(
            report, samples=split.train.rows + split.valid.rows,
            thresholds=thresholds or Thresholds.from_settings(settings), has_groups=stats.grouped_rows > 0,
        )
        meta = metadata_for(model, report, gate, stats, ingested, split, run_date)
        version, decision, publish_error = None, "rejected", None
        if gate.passed:
            try:
                version = registry.publish(model.files(), meta, now=now)
                decision = "published"
                log.info("run.published", version=version)
            except RegistryError as exc:
                # The pointer moves last, so whatever was live before is still live.
                decision, publish_error = "publish_failed", str(exc)
                log.error("run.publish_failed", error=publish_error)
        else:
            log.warning("run.rejected", reasons=gate.reasons, champion=report.champion_version)
        try:
            live_version = registry.live_version()
        except RegistryError as exc:
            live_version = None
            log.error("run.registry_unreadable", error=str(exc))
        result = {
            **meta,
            "started_at": started.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "decision": decision,
            "published_version": version,
            "publish_error": publish_error,
            "mirror_errors": getattr(registry.store, "mirror_errors", 0),
            "live_version": live_version,
            "registry": registry.uri,
            "quarantined": len(ingested.quarantined),
            "run_dir": str(out),
        }
        (out / "report.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        return result
