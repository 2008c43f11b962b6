"""The typed run record: what each step of a run leaves in its folder, and what `report.json`, a published version's
`metadata.json` and the CLI's `--json` serialise. The field names are the JSON keys.

    RunReport                     report.json (schema_version'd)
    ├── RunMetadata               what a published version records about itself (metadata.json)
    │   ├── TrainSummary          train.json: params, best iteration, features, weights
    │   ├── source: SourceInfo    ingest.json, with counts: IngestCounts
    │   ├── data: DataSummary     ingest counts + dataset.json (DatasetStats and the split's sizes)
    │   ├── metrics: EvalReport   evaluation.json: ScorerMetrics of new / champion / legacy, Propensities,
    │   │                         and the debiased Comparison of new and champion
    │   ├── gate: GateResult      gate.json: one Check per threshold
    │   ├── business: BusinessRow business.json: what production did, per day and version
    │   └── interleaving          interleaving.json: InterleavingVerdict per day and pair of versions
    ├── PublishOutcome            publish.json: decision, versions, error
    └── promotion: Promotion      promotion.json: the pooled interleaving verdict, and a challenger made live

`load` reads any of them back; a report.json written before `schema_version` existed loads as version 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import numpy as np
import orjson

from ltr_pipeline.measures import NDCG_AT_5, ndcg_key

SCHEMA_VERSION = 1
T = TypeVar("T")


class ScorerMetrics(msgspec.Struct, frozen=True, kw_only=True):
    """One scorer on one holdout: ranking measures (measures.py conventions), fairness and scoring latency."""

    algorithm: str
    rows: int
    ndcg_at_1: float | None = msgspec.field(default=None, name=ndcg_key(1))
    ndcg_at_3: float | None = msgspec.field(default=None, name=ndcg_key(3))
    ndcg_at_5: float | None = msgspec.field(default=None, name=NDCG_AT_5)
    ndcg_at_10: float | None = msgspec.field(default=None, name=ndcg_key(10))
    hit_at_3: float | None = msgspec.field(default=None, name="hit@3")
    mrr: float | None = None
    queries: int = 0
    queries_without_positive: int = 0
    fairness_gap: float | None = None
    exposure: dict[str, float] = {}
    group_appearances: dict[str, int] = {}
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    fair_rerank_strength: float = 0.0

    def table(self) -> dict[str, Any]:
        """The scalar figures by their report names, in declaration order (for tables)."""
        return {k: v for k, v in msgspec.to_builtins(self).items() if not isinstance(v, dict | str)}


class Propensities(msgspec.Struct, frozen=True, kw_only=True):
    """Examination probability per position, relative to position 1, with 95% intervals (counterfactual/)."""

    method: str
    positions: list[int]  # 1..depth; deeper positions take the last estimate
    examination: list[float]
    low: list[float]
    high: list[float]
    impressions: list[int]
    clicks: list[int]
    declines: int = 0  # feedback without a click: examined for sure (schema 1 records predate it)

    def at(self, positions: Any) -> Any:
        """The estimate for each position in an array of positions (1 = top)."""
        curve = np.asarray(self.examination, dtype=np.float64)
        return curve[np.clip(np.asarray(positions, dtype=np.int64), 1, len(curve)) - 1]


class Comparison(msgspec.Struct, frozen=True, kw_only=True):
    """Two rankers on the same logged queries, debiased by propensities: their estimates of nDCG@5, the paired
    difference (new - old) and its one-sided 95% bounds `low` and `high` (a 90% interval); `queries` that carried a
    graded action (0: nothing to compare)."""

    estimator: str
    queries: int
    new: float | None
    old: float | None
    difference: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True, kw_only=True)
class EvalReport:
    """Challenger (`new`), champion and legacy on the same holdout: the logged metrics of each, and the debiased
    comparison of the challenger with the champion (`debiased`) under the run's propensities."""

    new: ScorerMetrics
    legacy: ScorerMetrics
    champion: ScorerMetrics | None = None
    champion_version: str | None = None
    propensities: Propensities | None = None
    debiased: Comparison | None = None

    def scorers(self) -> dict[str, ScorerMetrics]:
        """The scorers that were evaluated, by role: new, champion (when one was live), legacy."""
        held = {"new": self.new, "champion": self.champion, "legacy": self.legacy}
        return {role: m for role, m in held.items() if m is not None}


@dataclass(frozen=True, kw_only=True)
class Check:
    name: str
    value: float | None
    threshold: float
    comparison: str  # how value must relate to threshold, for people: ">=", "<=", "<"
    verdict: str  # pass | fail | insufficient data
    blocking: bool  # whether this verdict stops publishing


@dataclass(frozen=True, kw_only=True)
class GateResult:
    passed: bool
    checks: list[Check] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)


class Fallback(msgspec.Struct, frozen=True):
    origin: str = msgspec.field(name="from")
    reason: str = ""


class SourceInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Where a run's events came from: the source's name, the window, and each source's own details."""

    name: str
    window_start: str | None = None
    window_end: str | None = None
    fallback: Fallback | None = None
    root: str | None = None  # file source
    files: int | None = None
    kafka: dict[str, Any] | None = None  # Kafka source: what was ingested and committed
    archive: str | None = None


class IngestCounts(msgspec.Struct, frozen=True, kw_only=True):
    events: int
    recommendations: int
    feedback: int
    duplicates: int
    quarantined: int
    seen: int  # lines or messages read, in or out of the window


@dataclass(frozen=True, kw_only=True)
class IngestSummary:
    source: SourceInfo
    counts: IngestCounts


@dataclass(frozen=True, kw_only=True)
class DatasetStats:
    impressions: int
    queries: int
    with_feedback: int
    positives: int
    orphan_feedback: int  # feedback for an impression not in the window
    repeated_impressions: int
    missing_features: dict[str, int]  # rows without each feature, for the features some rows lack
    grouped_rows: int
    label_counts: dict[str, int]


Key = tuple[int, str]
"""A query's place in the window's order: (its case's first impression, in microseconds since the epoch; case_id)."""


class Partition(msgspec.Struct, frozen=True, kw_only=True):
    """A part of the dataset as a parquet file that the Dask workers read (shares.py): the queries of `path` from the
    key `start` (included) to `end` (excluded); None: from the first, or to the last."""

    path: str
    rows: int
    queries: int
    start: Key | None = None
    end: Key | None = None


class Shards(msgspec.Struct, frozen=True, kw_only=True):
    """shards.json: where the training and validation queries of an LTR_ENGINE=dask run live."""

    train: list[Partition]
    valid: list[Partition]


@dataclass(frozen=True, kw_only=True)
class SplitSummary:
    """dataset.json: the dataset's statistics and the size of each part of the split."""

    dataset: DatasetStats
    train_rows: int
    valid_rows: int
    holdout_rows: int
    train_queries: int
    valid_queries: int
    holdout_queries: int

    @property
    def samples(self) -> int:
        """Labelled impressions the model learned from (training and validation): the gate's `samples`."""
        return self.train_rows + self.valid_rows


@dataclass(frozen=True, kw_only=True)
class DataSummary(SplitSummary):
    ingest: IngestCounts


class FeatureReference(msgspec.Struct, frozen=True):
    """One feature's training distribution (guard.py's PSI): decile edges, each bin's share of the present values,
    and the share missing (NaN)."""

    edges: list[float]
    shares: list[float]
    missing: float


@dataclass(frozen=True, kw_only=True)
class TrainSummary:
    params: dict[str, Any]
    best_iteration: int
    features: list[str]
    weights: dict[str, float]
    reference: dict[str, FeatureReference] = field(default_factory=dict)  # training distribution per feature


class BusinessRow(msgspec.Struct, frozen=True, kw_only=True):
    """What production did on a day with a model version: cases shown, Hit@3 and conversion."""

    day: str
    version: str
    cases: int
    hit_at_3: float | None = msgspec.field(default=None, name="hit@3")
    conversion: float | None = None


class InterleavingVerdict(msgspec.Struct, frozen=True, kw_only=True):
    """Team-draft interleaving of the live model and a challenger (interleaving.py): per day and pair of versions,
    the cases that had a graded action, the challenger's wins, losses and ties, its share of the decided cases with
    a 95% interval, and which model clients preferred (live, challenger, neither, or insufficient data)."""

    day: str | None
    live_version: str | None
    challenger_version: str | None
    cases: int
    wins: int
    losses: int
    ties: int
    share: float | None
    low: float
    high: float
    preferred: str


class RunFailure(msgspec.Struct, frozen=True, kw_only=True):
    """failure.json: a run that stopped with an error, at which step and when (the history page lists it)."""

    run_date: str
    step: str | None
    error: str
    at: str


class Promotion(msgspec.Struct, frozen=True, kw_only=True):
    """What the run made of the interleaving between the live model and a challenger, pooled over the window:
    whether promotion was on (LTR_INTERLEAVE_PROMOTION), the verdict, and the version made live, if any."""

    enabled: bool
    verdict: InterleavingVerdict | None
    promoted_version: str | None


@dataclass(frozen=True, kw_only=True)
class PublishOutcome:
    decision: str  # published | rejected | publish_failed
    published_version: str | None = None
    publish_error: str | None = None
    live_version: str | None = None
    mirror_errors: int = 0
    registry: str | None = None


@dataclass(frozen=True, kw_only=True)
class RunMetadata(TrainSummary):
    run_date: str
    kind: str  # daily | hourly
    source: SourceInfo
    data: DataSummary
    metrics: EvalReport
    gate: GateResult
    business: list[BusinessRow] = field(default_factory=list)
    interleaving: list[InterleavingVerdict] = field(default_factory=list)
    software: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RunReport(RunMetadata, PublishOutcome):
    schema_version: int = 0  # 0: written before the record had a version
    promotion: Promotion | None = None  # the interleaving verdict of the day's experiment, and any promotion
    quarantined: int = 0
    run_dir: str | None = None
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def live_metrics(self) -> ScorerMetrics | None:
        """The holdout metrics of the model live after the run: the new one if published, else the champion."""
        return self.metrics.new if self.decision == "published" else self.metrics.champion


def _numpy_to_builtins(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise NotImplementedError(f"cannot serialise {type(obj).__name__}")


def to_builtins(obj: Any) -> Any:
    """Plain JSON-ready values (dicts, lists, numbers, strings) of a record."""
    return msgspec.to_builtins(obj, enc_hook=_numpy_to_builtins)


def dumps(obj: Any) -> bytes:
    """A record as indented JSON."""
    return orjson.dumps(to_builtins(obj), option=orjson.OPT_INDENT_2)


def load(raw: bytes | Path, kind: type[T]) -> T:
    """A record of type `kind` from JSON bytes or a file; raises msgspec.ValidationError when it does not fit."""
    data = raw.read_bytes() if isinstance(raw, Path) else raw
    return msgspec.json.decode(data, type=kind, strict=False)


def convert(obj: Any, kind: type[T]) -> T:
    """A record of type `kind` from decoded JSON values."""
    return msgspec.convert(obj, kind, strict=False)


def headline(metadata: dict[str, Any]) -> float | None:
    """A published version's holdout nDCG@5, from its metadata.json; None when the metadata predates the record."""
    try:
        return convert(metadata, RunMetadata).metrics.new.ndcg_at_5
    except msgspec.ValidationError:
        return None
