"""Events -> labelled query groups, and the deterministic time-based split.

One query per case; one row per (case, lawyer) impression, ordered by the position it was shown at. A row's label is
the highest grade among its feedback actions (no feedback: 0). Features are read by the configured names; a missing
one is NaN and counted. Queries are ordered by the time their case was first shown, so a split by time is a split by
position in the arrays.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import numpy.typing as npt

from ltr_pipeline.errors import DataError
from ltr_pipeline.events.schema import Event
from ltr_pipeline.metrics import offsets


@dataclass
class QuerySet:
    features: npt.NDArray[np.float64]  # (rows, n_features)
    labels: npt.NDArray[np.int64]
    qsizes: npt.NDArray[np.int64]
    query_ts: npt.NDArray[np.int64]  # epoch seconds of each query's first impression
    case_ids: list[str]
    lawyer_ids: list[str]
    groups: list[str | None]
    positions: npt.NDArray[np.int64]
    feature_names: list[str]

    @property
    def rows(self) -> int:
        return len(self.labels)

    @property
    def queries(self) -> int:
        return len(self.qsizes)

    def take(self, query_idx: npt.NDArray[np.int64]) -> QuerySet:
        """The queries at `query_idx` (kept in that order)."""
        bounds = offsets(self.qsizes)
        rows = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in query_idx]) if len(query_idx) else \
            np.array([], dtype=np.int64)
        return QuerySet(
            features=self.features[rows],
            labels=self.labels[rows],
            qsizes=self.qsizes[query_idx],
            query_ts=self.query_ts[query_idx],
            case_ids=[self.case_ids[i] for i in query_idx],
            lawyer_ids=[self.lawyer_ids[r] for r in rows],
            groups=[self.groups[r] for r in rows],
            positions=self.positions[rows],
            feature_names=self.feature_names,
        )


@dataclass
class DatasetStats:
    impressions: int = 0
    queries: int = 0
    with_feedback: int = 0
    positives: int = 0
    orphan_feedback: int = 0  # feedback for an impression not in the window
    repeated_impressions: int = 0
    missing_features: dict[str, int] = field(default_factory=dict)
    grouped_rows: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)


def window(run_date: date, days: int) -> tuple[datetime, datetime]:
    """[start, end) of the `days` UTC days ending with `run_date` (inclusive)."""
    end = datetime.combine(run_date + timedelta(days=1), time(), tzinfo=UTC)
    return end - timedelta(days=days), end


def build_queries(
    events: Iterable[Event], feature_names: Sequence[str], grades: Mapping[str, int]
) -> tuple[QuerySet, DatasetStats]:
    stats = DatasetStats()
    impressions: dict[tuple[str, str], Event] = {}
    feedback: list[Event] = []
    for event in events:
        if event.event_type == "feedback":
            feedback.append(event)
            continue
        key = (event.case_id, event.lawyer_id)
        kept = impressions.get(key)
        if kept is not None:
            stats.repeated_impressions += 1
            if kept.ts <= event.ts:
                continue
        impressions[key] = event
    label: dict[tuple[str, str], int] = {}
    for event in feedback:
        key = (event.case_id, event.lawyer_id)
        if key not in impressions:
            stats.orphan_feedback += 1
            continue
        grade = grades[event.action or ""]
        label[key] = max(label.get(key, 0), grade)

    by_case: dict[str, list[Event]] = {}
    for event in impressions.values():
        by_case.setdefault(event.case_id, []).append(event)
    cases = sorted(by_case, key=lambda c: (min(e.ts for e in by_case[c]), c))

    names = list(feature_names)
    n_rows = len(impressions)
    features = np.empty((n_rows, len(names)), dtype=np.float64)
    labels = np.zeros(n_rows, dtype=np.int64)
    positions = np.zeros(n_rows, dtype=np.int64)
    qsizes = np.zeros(len(cases), dtype=np.int64)
    query_ts = np.zeros(len(cases), dtype=np.int64)
    lawyer_ids: list[str] = []
    groups: list[str | None] = []
    missing = dict.fromkeys(names, 0)
    row = 0
    for q, case in enumerate(cases):
        shown = sorted(by_case[case], key=lambda e: (e.position or 0, e.lawyer_id))
        qsizes[q] = len(shown)
        query_ts[q] = int(min(e.ts for e in shown).timestamp())
        for event in shown:
            feats = event.features or {}
            for j, name in enumerate(names):
                value = feats.get(name, math.nan)
                if math.isnan(value):
                    missing[name] += 1
                features[row, j] = value
            labels[row] = label.get((case, event.lawyer_id), 0)
            positions[row] = event.position or 0
            lawyer_ids.append(event.lawyer_id)
            groups.append(event.group)
            row += 1

    stats.impressions = n_rows
    stats.queries = len(cases)
    stats.with_feedback = len(label)
    stats.positives = int(np.sum(labels > 0))
    stats.missing_features = {k: v for k, v in missing.items() if v}
    stats.grouped_rows = sum(g is not None for g in groups)
    values, counts = np.unique(labels, return_counts=True)
    stats.label_counts = {str(v): int(c) for v, c in zip(values, counts, strict=True)}
    qs = QuerySet(features, labels, qsizes, query_ts, cases, lawyer_ids, groups, positions, names)
    return qs, stats


@dataclass
class Split:
    train: QuerySet
    valid: QuerySet
    holdout: QuerySet


def split_by_time(qs: QuerySet, window_end: datetime, holdout: timedelta, valid_fraction: float) -> Split:
    """Holdout: queries in the last `holdout` of the window. Validation: the latest share of the rest."""
    cutoff = int((window_end - holdout).timestamp())
    idx = np.arange(qs.queries)
    held = idx[qs.query_ts >= cutoff]
    rest = idx[qs.query_ts < cutoff]
    if len(held) == 0:
        raise DataError(
            f"no impressions in the holdout ({holdout} before {window_end:%Y-%m-%d %H:%M} UTC): "
            "are there events for the run date?"
        )
    if len(rest) < 2:
        raise DataError(f"only {len(rest)} training queries before the holdout: too few to train")
    n_valid = max(1, round(len(rest) * valid_fraction)) if valid_fraction > 0 else 0
    return Split(qs.take(rest[: len(rest) - n_valid]), qs.take(rest[len(rest) - n_valid:]), qs.take(held))
