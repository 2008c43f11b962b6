"""One daily cycle: extract -> preprocess -> train -> evaluate -> gate -> publish or keep the champion.

Each step is a function of its own that leaves its result in the run folder, $LTR_HOME/runs/<run date>/, so the
Airflow tasks can call them one by one and pass nothing but the run date; `run_daily` chains the same functions and
hands results over in memory as well. Whatever the decision, the folder keeps:

    events.parquet    the window's valid events (deduplicated)     quarantine.jsonl   what was refused, and why
    ingest.json       source, window, counts                        dataset.npz/.json  the split and its statistics
    model.txt, ltr_weights.json, train.json                         evaluation.json    new / champion / legacy
    gate.json         every check                                    publish.json       decision, version or error
    report.json       all of the above in one document               run.log            the run's log lines
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import orjson
import polars as pl
import structlog

from ltr_pipeline import __version__
from ltr_pipeline.config import Settings
from ltr_pipeline.dataset import QuerySet, Split, build_queries, business_metrics, split_by_time, window
from ltr_pipeline.errors import DataError, LtrError, RegistryError
from ltr_pipeline.evaluate import EvalReport, evaluate_all
from ltr_pipeline.events.base import EventSource, FallbackSource, IngestResult, write_quarantine
from ltr_pipeline.gate import GateResult, Thresholds, evaluate_gate
from ltr_pipeline.logs import also_log_to
from ltr_pipeline.registry import ModelRegistry, sha256
from ltr_pipeline.report import run_page
from ltr_pipeline.scoring import LgbmScorer, Scorer, WeightedSumScorer, default_weights
from ltr_pipeline.train import TrainedModel, train, tune

log = structlog.get_logger(__name__)
JSON_OPTS = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True)
class Run:
    """A daily run (a UTC day), or an hourly incremental one (`hour` set: the window ends at that hour)."""

    settings: Settings
    run_date: date
    hour: datetime | None = None

    @classmethod
    def hourly(cls, settings: Settings, hour: datetime) -> Run:
        hour = hour.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return cls(settings, hour.date(), hour)

    @property
    def label(self) -> str:
        return self.hour.strftime("%Y-%m-%dT%H") if self.hour else self.run_date.isoformat()

    @property
    def dir(self) -> Path:
        return self.settings.runs_path / ("hourly/" + self.label if self.hour else self.label)

    def window(self) -> tuple[datetime, datetime]:
        if self.hour is None:
            return window(self.run_date, self.settings.train_days)
        return self.hour - timedelta(hours=self.settings.incremental_hours), self.hour

    @property
    def holdout(self) -> timedelta:
        if self.hour is None:
            return timedelta(days=self.settings.holdout_days)
        return timedelta(hours=self.settings.incremental_holdout_hours)

    def path(self, name: str) -> Path:
        return self.dir / name

    def save(self, name: str, obj: Any) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path(name).write_bytes(orjson.dumps(obj, option=JSON_OPTS))

    def load(self, name: str) -> Any:
        try:
            return orjson.loads(self.path(name).read_bytes())
        except FileNotFoundError:
            raise DataError(f"{self.path(name)} is missing: run the earlier steps for {self.label} first") from None


def make_source(settings: Settings) -> EventSource:
    """LTR_SOURCE: file, kafka, or auto (Kafka, falling back to the event files when the broker is unreachable)."""
    from ltr_pipeline.events.file import FileEventSource

    files = FileEventSource(settings.events_path)
    if settings.source == "file":
        return files
    from ltr_pipeline.events.kafka import KafkaEventSource

    kafka = KafkaEventSource(settings)
    return kafka if settings.source == "kafka" else FallbackSource(kafka, files)


# --- the steps -----------------------------------------------------------------------------------------------

def extract(run: Run, source: EventSource | None = None) -> IngestResult:
    """The events of the training window ending at the run date; refused records go to quarantine.jsonl."""
    settings = run.settings
    start, end = run.window()
    source = source or make_source(settings)
    result = source.read(start, end, settings.label_grades.keys(), settings.feature_names)
    result.detail.update(window_start=start.isoformat(), window_end=end.isoformat())
    run.dir.mkdir(parents=True, exist_ok=True)
    run.path("quarantine.jsonl").unlink(missing_ok=True)
    if result.quarantined:
        write_quarantine(result.quarantined, run.path("quarantine.jsonl"))
        log.warning("extract.quarantined", count=len(result.quarantined))
    result.frame.write_parquet(run.path("events.parquet"))
    run.save("business.json", business_metrics(result.frame, settings.label_grades))
    run.save("ingest.json", {"source": {"name": result.source, **result.detail}, "counts": result.counts()})
    log.info("extract.done", source=result.source, **result.counts())
    return result


_ARRAYS = ("features", "labels", "qsizes", "query_ts", "positions")
_TEXTS = ("case_ids", "lawyer_ids", "groups")


def _save_split(path: Path, split: Split) -> None:
    arrays: dict[str, np.ndarray] = {}
    for part in ("train", "valid", "holdout"):
        qs: QuerySet = getattr(split, part)
        for name in _ARRAYS:
            arrays[f"{part}.{name}"] = getattr(qs, name)
        for name in _TEXTS:  # text as fixed-width unicode: loading never needs pickle
            arrays[f"{part}.{name}"] = np.array([v or "" for v in getattr(qs, name)], dtype=str)
        arrays[f"{part}.feature_names"] = np.array(qs.feature_names, dtype=str)
    np.savez(path, **arrays)  # type: ignore[arg-type]


def _load_split(path: Path) -> Split:
    with np.load(path, allow_pickle=False) as data:
        parts = {}
        for part in ("train", "valid", "holdout"):
            texts = {name: data[f"{part}.{name}"].tolist() for name in _TEXTS}
            parts[part] = QuerySet(
                **{name: data[f"{part}.{name}"] for name in _ARRAYS},
                case_ids=texts["case_ids"], lawyer_ids=texts["lawyer_ids"],
                groups=[g or None for g in texts["groups"]],
                feature_names=data[f"{part}.feature_names"].tolist(),
            )
    return Split(**parts)


def preprocess(run: Run, ingested: IngestResult | None = None) -> Split:
    """Events -> labelled query groups -> the time split, saved as dataset.npz (+ dataset.json)."""
    settings = run.settings
    events = ingested.frame if ingested else pl.read_parquet(run.path("events.parquet"))
    queries, stats = build_queries(events, settings.feature_names, settings.label_grades)
    if queries.rows == 0:
        source = run.load("ingest.json")["source"]
        raise DataError(
            f"no impressions between {source.get('window_start')} and {source.get('window_end')} from the "
            f"{source['name']} source: simulate or ingest events first"
        )
    split = split_by_time(queries, run.window()[1], run.holdout, settings.valid_fraction)
    _save_split(run.path("dataset.npz"), split)
    run.save("dataset.json", {
        "stats": asdict(stats),
        "train_rows": split.train.rows, "valid_rows": split.valid.rows, "holdout_rows": split.holdout.rows,
        "train_queries": split.train.queries, "valid_queries": split.valid.queries,
        "holdout_queries": split.holdout.queries,
    })
    return split


def train_model(run: Run, split: Split | None = None, init_model: str | None = None) -> TrainedModel:
    """Train on the run's split; an hourly run continues the live model (`init_model`, its text)."""
    split = split or _load_split(run.path("dataset.npz"))
    model = train(split.train, split.valid, run.settings, init_model=init_model) if init_model else \
        tune(split.train, split.valid, run.settings)
    for name, data in model.files().items():
        run.path(name).write_bytes(data)
    run.save("train.json", {"params": model.params, "best_iteration": model.best_iteration,
                            "features": model.feature_names, "weights": model.weights})
    return model


def load_champion(registry: ModelRegistry, settings: Settings) -> tuple[Scorer | None, str | None]:
    """The live model as a scorer and its version; (None, None) when there is none or it cannot be loaded."""
    try:
        if registry.live_version() is None:
            return None, None
        bundle = registry.load()
        return LgbmScorer(bundle.model_text, settings.feature_names), bundle.version
    except LtrError as exc:
        log.error("champion.unloadable", error=str(exc))
        return None, None


def evaluate(run: Run, split: Split | None = None, registry: ModelRegistry | None = None) -> EvalReport:
    settings = run.settings
    split = split or _load_split(run.path("dataset.npz"))
    registry = registry or ModelRegistry.from_settings(settings)
    champion, champion_version = load_champion(registry, settings)
    report = evaluate_all(
        new=LgbmScorer(run.path("model.txt").read_text(), settings.feature_names),
        legacy=WeightedSumScorer(default_weights(settings.feature_names), settings.feature_names),
        holdout=split.holdout,
        fairness_min_group=settings.fairness_min_group,
        champion=champion,
        champion_version=champion_version,
        fair_strength=settings.fair_rerank_strength,
    )
    run.save("evaluation.json", report.to_dict())
    return report


def gate(run: Run, thresholds: Thresholds | None = None) -> GateResult:
    report = EvalReport(**run.load("evaluation.json"))
    dataset = run.load("dataset.json")
    result = evaluate_gate(
        report, samples=dataset["train_rows"] + dataset["valid_rows"],
        thresholds=thresholds or Thresholds.from_settings(run.settings),
        has_groups=dataset["stats"]["grouped_rows"] > 0,
    )
    run.save("gate.json", result.to_dict())
    (log.info if result.passed else log.warning)("gate.done", passed=result.passed, reasons=result.reasons)
    return result


def metadata(run: Run) -> dict[str, Any]:
    """What a published version records about itself: everything the run knew."""
    ingest, dataset, trained = run.load("ingest.json"), run.load("dataset.json"), run.load("train.json")
    return {
        "run_date": run.label,
        "kind": "hourly" if run.hour else "daily",
        "source": ingest["source"],
        "data": {"ingest": ingest["counts"], "dataset": dataset.pop("stats"), **dataset},
        **trained,
        "metrics": run.load("evaluation.json"),
        "gate": run.load("gate.json"),
        "business": run.load("business.json"),
        "software": {"ltr_pipeline": __version__, "lightgbm": lightgbm.__version__,
                     "python": platform.python_version()},
    }


def _already_published(run: Run, registry: ModelRegistry, files: dict[str, bytes]) -> str | None:
    """The version this run already published, if it holds this very model (a retried task publishes once)."""
    try:
        version = run.load("publish.json").get("published_version")
        if version and registry.show(version)["sha256"]["model.txt"] == sha256(files["model.txt"]):
            log.info("run.already_published", version=version)
            return str(version)
    except LtrError:
        pass
    return None


def publish(run: Run, now: datetime | None = None, registry: ModelRegistry | None = None) -> dict[str, Any]:
    """Publish the run's model if the gate passed; otherwise keep the champion. Saved as publish.json."""
    registry = registry or ModelRegistry.from_settings(run.settings)
    outcome: dict[str, Any] = {"decision": "rejected", "published_version": None, "publish_error": None}
    verdict = run.load("gate.json")
    if verdict["passed"]:
        files = {name: run.path(name).read_bytes() for name in ("model.txt", "ltr_weights.json")}
        try:
            outcome["published_version"] = _already_published(run, registry, files) or \
                registry.publish(files, metadata(run), now=now)
            outcome["decision"] = "published"
            log.info("run.published", version=outcome["published_version"])
        except RegistryError as exc:
            # The pointer moves last, so whatever was live before is still live.
            outcome.update(decision="publish_failed", publish_error=str(exc))
            log.error("run.publish_failed", error=str(exc))
    else:
        log.warning("run.rejected", reasons=verdict["reasons"])
    try:
        outcome["live_version"] = registry.live_version()
    except RegistryError as exc:
        outcome["live_version"] = None
        log.error("run.registry_unreadable", error=str(exc))
    outcome["mirror_errors"] = getattr(registry.store, "mirror_errors", 0)
    outcome["registry"] = registry.uri
    run.save("publish.json", outcome)
    return outcome


def report(run: Run, started_at: datetime | None = None) -> dict[str, Any]:
    """Assemble report.json from the steps' files."""
    result = {
        **metadata(run),
        **run.load("publish.json"),
        "quarantined": run.load("ingest.json")["counts"]["quarantined"],
        "run_dir": str(run.dir),
        "started_at": started_at.isoformat() if started_at else None,
        "finished_at": datetime.now(UTC).isoformat(),
    }
    run.save("report.json", result)
    run.path("report.html").write_text(run_page(result))
    return result


def retrain(run: Run, registry: ModelRegistry | None = None, source: EventSource | None = None) -> Split:
    """The hourly run's first steps: extract and preprocess the newest events, continue the live model on them,
    evaluate. Raises VersionNotFound when nothing is live: there is nothing to continue."""
    registry = registry or ModelRegistry.from_settings(run.settings)
    live = registry.load()
    split = preprocess(run, extract(run, source))
    train_model(run, split, init_model=live.model_text)
    evaluate(run, split, registry)
    return split


def run_daily(
    run_date: date, settings: Settings, now: datetime | None = None, thresholds: Thresholds | None = None,
    source: EventSource | None = None, on_step: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Run one daily cycle for `run_date` and return its report (also written to the run folder)."""
    run = Run(settings, run_date)
    run.dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    with also_log_to(run.path("run.log")), structlog.contextvars.bound_contextvars(run_date=run_date.isoformat()):
        log.info("run.start", registry=settings.registry)
        registry = ModelRegistry.from_settings(settings)
        on_step("extract")
        ingested = extract(run, source)
        on_step("preprocess")
        split = preprocess(run, ingested)
        on_step("train")
        train_model(run, split)
        on_step("evaluate")
        evaluate(run, split, registry)
        gate(run, thresholds)
        on_step("publish")
        publish(run, now, registry)
        return report(run, started)
