"""One daily cycle: extract -> preprocess -> train -> evaluate -> gate -> publish or keep the champion.

Each step is a function of its own that leaves its result in the run folder (`runs.Run`), so the Airflow tasks can
call them one by one and pass nothing but the run date; `run_daily` chains the same functions and hands results over
in memory as well. Whatever the decision, the folder keeps every step's output (runs.py lists them).
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from datetime import UTC, date, datetime

import lightgbm
import numpy as np
import structlog

from ltr_pipeline import __version__
from ltr_pipeline.config import Settings
from ltr_pipeline.counterfactual.propensity import estimate_propensities
from ltr_pipeline.dataset import Split, business_metrics, interleaving_verdicts, share_count
from ltr_pipeline.engine import LocalEngine, make_engine
from ltr_pipeline.errors import DataError, LtrError, RegistryError
from ltr_pipeline.evaluate import evaluate_all
from ltr_pipeline.events import make_source
from ltr_pipeline.events.base import EventSource, IngestResult, write_quarantine
from ltr_pipeline.gate import Thresholds, evaluate_gate
from ltr_pipeline.guard import feature_reference
from ltr_pipeline.interleaving import CHALLENGER, combine
from ltr_pipeline.logs import also_log_to
from ltr_pipeline.pages import run_page
from ltr_pipeline.record import (
    SCHEMA_VERSION,
    BusinessRow,
    DataSummary,
    EvalReport,
    GateResult,
    IngestSummary,
    InterleavingVerdict,
    Promotion,
    Propensities,
    PublishOutcome,
    RunFailure,
    RunMetadata,
    RunReport,
    SourceInfo,
    SplitSummary,
    TrainSummary,
    convert,
    to_builtins,
)
from ltr_pipeline.registry import ARTIFACTS, MODEL_FILE, ModelRegistry, sha256
from ltr_pipeline.runs import Run
from ltr_pipeline.scoring import LgbmScorer, Scorer, WeightedSumScorer, default_weights
from ltr_pipeline.train import TrainedModel, train

log = structlog.get_logger(__name__)

__all__ = ["Run", "evaluate", "extract", "gate", "preprocess", "promote", "publish", "record_failure", "report",
           "retrain", "run_daily", "train_model"]


# --- the steps -----------------------------------------------------------------------------------------------

def extract(run: Run, source: EventSource | None = None) -> IngestResult:
    """The events of the training window ending at the run date; refused records go to quarantine.jsonl."""
    settings = run.settings
    start, end = run.window()
    source = source or make_source(settings)
    run.dir.mkdir(parents=True, exist_ok=True)
    run.path("events.parquet").unlink(missing_ok=True)
    # Written as read, file by file: the window's events are never held whole (BENCHMARKS.md, "Bounded memory").
    result = source.read(start, end, settings.label_grades.keys(), settings.feature_names,
                         into=run.path("events.parquet"))
    run.path("quarantine.jsonl").unlink(missing_ok=True)
    if result.quarantined:
        write_quarantine(result.quarantined, run.path("quarantine.jsonl"))
        log.warning("extract.quarantined", count=len(result.quarantined))
    parts = share_count(result.events, settings.share_events)
    run.save("business.json", business_metrics(result.events, settings.label_grades, parts))
    run.save("interleaving.json", interleaving_verdicts(result.events, settings.label_grades,
                                                        settings.interleave_min_cases, parts))
    info = convert({"name": result.source, "window_start": start.isoformat(), "window_end": end.isoformat(),
                    **result.detail}, SourceInfo)
    counts = result.counts()  # a scan of events.parquet: once
    run.save("ingest.json", IngestSummary(source=info, counts=counts))
    log.info("extract.done", source=result.source, **to_builtins(counts))
    return result


def promote(run: Run, enabled: bool | None = None, registry: ModelRegistry | None = None) -> Promotion:
    """Settle the interleaving of the live model and its challenger over the window: when clients preferred the
    challenger (the 95% interval of its share of decided cases above one half) and promotion is on (`enabled`, else
    LTR_INTERLEAVE_PROMOTION), make it live through the registry, audited as 'promote'. Saved as promotion.json."""
    settings = run.settings
    enabled = settings.interleave_promotion if enabled is None else enabled
    registry = registry or ModelRegistry.from_settings(settings)
    live = registry.live_version()
    pair = [v for v in run.load("interleaving.json", list[InterleavingVerdict])
            if v.live_version == live and v.challenger_version]
    pooled = combine(pair, settings.interleave_min_cases) if pair else None
    promoted = None
    if enabled and pooled is not None and pooled.preferred == CHALLENGER and pooled.challenger_version:
        promoted = registry.promote(
            pooled.challenger_version, reason=f"clients preferred it in interleaving with {live}",
            wins=pooled.wins, losses=pooled.losses, ties=pooled.ties, share=pooled.share, low=pooled.low,
            high=pooled.high, cases=pooled.cases)
        log.info("run.promoted", version=promoted, previous=live, share=pooled.share, cases=pooled.cases)
    outcome = Promotion(enabled=enabled, verdict=pooled, promoted_version=promoted)
    run.save("promotion.json", outcome)
    return outcome


def preprocess(run: Run) -> Split:
    """Events -> labelled query groups -> the time split, saved as dataset.npz (+ shards.json, dataset.json). The
    events are scanned from the extract step's events.parquet a share of the cases at a time, never read whole: here
    with LTR_ENGINE=local, on the Dask workers with dask. An hourly run trains here, so it is built here too."""
    settings = run.settings
    events = run.path("events.parquet")
    ingested = run.load("ingest.json", IngestSummary)  # extract counted events.parquet: no second scan
    if ingested.counts.recommendations == 0:
        source = ingested.source
        raise DataError(f"no impressions between {source.window_start} and {source.window_end} from the "
                        f"{source.name} source: simulate or ingest events first")
    engine = LocalEngine() if run.kind == "hourly" else make_engine(settings)
    split, stats = engine.build(events, settings, run.window()[1], run.holdout, run.dir)
    run.save_split(split)
    run.save("propensity.json", estimate(split, settings))
    (train_rows, train_queries), (valid_rows, valid_queries), (holdout_rows, holdout_queries) = (
        split.size(part) for part in ("train", "valid", "holdout"))
    run.save("dataset.json", SplitSummary(
        dataset=stats, train_rows=train_rows, valid_rows=valid_rows, holdout_rows=holdout_rows,
        train_queries=train_queries, valid_queries=valid_queries, holdout_queries=holdout_queries,
    ))
    return split


def estimate(split: Split, settings: Settings) -> Propensities | None:
    """The examination curve, estimated from the training and validation days (never the holdout it judges); with
    LTR_ENGINE=dask, from one share of their cases (Split)."""
    seen = [split.train, split.valid]
    with structlog.contextvars.bound_contextvars(step="propensities"):
        found = estimate_propensities(
            np.concatenate([q.positions for q in seen]), np.concatenate([q.labels for q in seen]) > 0,
            np.concatenate([q.features for q in seen]), np.concatenate([q.qsizes for q in seen]),
            acted=np.concatenate([q.acted for q in seen]), max_position=settings.propensity_max_position,
            threads=settings.num_threads, seed=settings.seed)
    if found is None:
        log.warning("propensities.insufficient", hint="too few clicks: no debiasing this run")
    else:
        log.info("propensities.estimated", examination=[round(v, 3) for v in found.examination])
    return found


def train_model(run: Run, split: Split | None = None, init_model: str | None = None) -> TrainedModel:
    """Train on the run's split; an hourly run continues the live model (`init_model`, its text)."""
    split = split or run.load_split()
    propensities = run.load("propensity.json", Propensities | None)  # type: ignore[arg-type]
    # An hourly run continues the live model on a few hours of events: always here, whatever LTR_ENGINE says.
    model = train(split.train, split.valid, run.settings, init_model=init_model, propensities=propensities) \
        if init_model else make_engine(run.settings).fit(split, run.settings, propensities, run.dir)
    for name, data in model.files().items():
        run.path(name).write_bytes(data)
    run.save("train.json", TrainSummary(params=model.params, best_iteration=model.best_iteration,
                                        features=model.feature_names, weights=model.weights,
                                        reference=feature_reference(split.train.features, model.feature_names)))
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
    split = split or run.load_split()
    registry = registry or ModelRegistry.from_settings(settings)
    champion, champion_version = load_champion(registry, settings)
    report = evaluate_all(
        new=LgbmScorer(run.path(MODEL_FILE).read_text(), settings.feature_names),
        legacy=WeightedSumScorer(default_weights(settings.feature_names), settings.feature_names),
        holdout=split.holdout,
        fairness_min_group=settings.fairness_min_group,
        champion=champion,
        champion_version=champion_version,
        fair_strength=settings.fair_rerank_strength,
        propensities=run.load("propensity.json", Propensities | None),  # type: ignore[arg-type]
        seed=settings.seed,
    )
    run.save("evaluation.json", report)
    return report


def gate(run: Run, thresholds: Thresholds | None = None) -> GateResult:
    dataset = run.load("dataset.json", SplitSummary)
    result = evaluate_gate(
        run.load("evaluation.json", EvalReport), samples=dataset.samples,
        thresholds=thresholds or Thresholds.from_settings(run.settings),
        has_groups=dataset.dataset.grouped_rows > 0,
    )
    run.save("gate.json", result)
    (log.info if result.passed else log.warning)("gate.done", passed=result.passed, reasons=result.reasons)
    return result


def metadata(run: Run) -> RunMetadata:
    """What a published version records about itself: everything the run knew."""
    ingest, split = run.load("ingest.json", IngestSummary), run.load("dataset.json", SplitSummary)
    trained = run.load("train.json", TrainSummary)
    return RunMetadata(
        run_date=run.label, kind=run.kind, source=ingest.source,
        data=DataSummary(ingest=ingest.counts, **vars(split)),
        params=trained.params, best_iteration=trained.best_iteration, features=trained.features,
        weights=trained.weights, reference=trained.reference,
        metrics=run.load("evaluation.json", EvalReport), gate=run.load("gate.json", GateResult),
        business=run.load("business.json", list[BusinessRow]),
        interleaving=run.load("interleaving.json", list[InterleavingVerdict]),
        software={"ltr_pipeline": __version__, "lightgbm": lightgbm.__version__, "python": platform.python_version()},
    )


def _already_published(run: Run, registry: ModelRegistry, files: dict[str, bytes]) -> str | None:
    """The version this run already published, if it holds this very model (a retried task publishes once)."""
    try:
        version = run.load("publish.json", PublishOutcome).published_version
        if version and registry.show(version)["sha256"][MODEL_FILE] == sha256(files[MODEL_FILE]):
            log.info("run.already_published", version=version)
            return version
    except LtrError:
        pass
    return None


def _publish_files(run: Run, registry: ModelRegistry, now: datetime | None) -> tuple[str, str | None, str | None]:
    """(decision, published version, error) of publishing the run's model, which the gate passed."""
    files = {name: run.path(name).read_bytes() for name in ARTIFACTS}
    try:
        version = _already_published(run, registry, files) or \
            registry.publish(files, to_builtins(metadata(run)), now=now)
    except RegistryError as exc:  # the pointer moves last, so whatever was live before is still live
        log.error("run.publish_failed", error=str(exc))
        return "publish_failed", None, str(exc)
    log.info("run.published", version=version)
    return "published", version, None


def publish(run: Run, now: datetime | None = None, registry: ModelRegistry | None = None) -> PublishOutcome:
    """Publish the run's model if the gate passed; otherwise keep the champion. Saved as publish.json."""
    registry = registry or ModelRegistry.from_settings(run.settings)
    verdict = run.load("gate.json", GateResult)
    decision, version, error = "rejected", None, None
    if verdict.passed:
        decision, version, error = _publish_files(run, registry, now)
    else:
        log.warning("run.rejected", reasons=verdict.reasons)
    try:
        live = registry.live_version()
    except RegistryError as exc:
        live = None
        log.error("run.registry_unreadable", error=str(exc))
    outcome = PublishOutcome(decision=decision, published_version=version, publish_error=error, live_version=live,
                             mirror_errors=registry.store.mirror_errors, registry=registry.uri)
    run.save("publish.json", outcome)
    return outcome


def report(run: Run, started_at: datetime | None = None) -> RunReport:
    """Assemble report.json (and report.html) from the steps' files."""
    meta = metadata(run)
    promotion = run.load("promotion.json", Promotion) if run.path("promotion.json").is_file() else None
    result = RunReport(
        **vars(meta), **vars(run.load("publish.json", PublishOutcome)), promotion=promotion,
        schema_version=SCHEMA_VERSION, quarantined=meta.data.ingest.quarantined, run_dir=str(run.dir),
        started_at=started_at.isoformat() if started_at else None, finished_at=datetime.now(UTC).isoformat(),
    )
    run.save("report.json", result)
    run.path("report.html").write_text(run_page(result))
    return result


def retrain(run: Run, registry: ModelRegistry | None = None, source: EventSource | None = None) -> Split:
    """The hourly run's first steps: extract and preprocess the newest events, continue the live model on them,
    evaluate. Raises VersionNotFound when nothing is live: there is nothing to continue."""
    registry = registry or ModelRegistry.from_settings(run.settings)
    live = registry.load()
    if live.version in registry.bad_versions():
        raise RegistryError(f"the live version {live.version} was marked bad by the guard: not continuing from it")
    extract(run, source)
    split = preprocess(run)
    train_model(run, split, init_model=live.model_text)
    evaluate(run, split, registry)
    return split


def run_daily(
    run_date: date, settings: Settings, now: datetime | None = None, thresholds: Thresholds | None = None,
    source: EventSource | None = None, on_step: Callable[[str], None] = lambda _: None,
    registry: ModelRegistry | None = None,
) -> RunReport:
    """Run one daily cycle for `run_date` and return its report (also written to the run folder)."""
    run = Run(settings, run_date)
    run.dir.mkdir(parents=True, exist_ok=True)
    run.path("failure.json").unlink(missing_ok=True)
    started = datetime.now(UTC)
    step = "extract"

    def at(name: str) -> None:
        nonlocal step
        step = name
        on_step(name)

    with also_log_to(run.path("run.log")), structlog.contextvars.bound_contextvars(run_date=run_date.isoformat()):
        try:
            log.info("run.start", registry=settings.registry)
            registry = registry or ModelRegistry.from_settings(settings)
            at("extract")
            extract(run, source)  # the events are in the run folder now; the table in memory goes
            promote(run, registry=registry)  # yesterday's interleaving first: the day's challenger meets the winner
            at("preprocess")
            split = preprocess(run)
            at("train")
            train_model(run, split)
            at("evaluate")
            evaluate(run, split, registry)
            gate(run, thresholds)
            at("publish")
            publish(run, now, registry)
            return report(run, started)
        except Exception as exc:
            record_failure(run, step, exc)
            raise


def record_failure(run: Run, step: str | None, error: BaseException) -> None:
    """failure.json in the run folder: the run stopped at `step` with `error` (the live model is untouched)."""
    run.dir.mkdir(parents=True, exist_ok=True)
    run.save("failure.json", RunFailure(run_date=run.label, step=step, error=f"{type(error).__name__}: {error}",
                                        at=datetime.now(UTC).isoformat()))
    log.error("run.failed", step=step, error=str(error))
