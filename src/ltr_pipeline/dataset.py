"""Events -> labelled query groups, and the deterministic time-based split.

One query per case; one row per (case, lawyer) impression, ordered by the position it was shown at. A row's label is
the highest grade among its feedback actions (no feedback: 0). Features are read by the configured names; a missing
one is NaN and counted. Queries are ordered by the time their case was first shown, so a split by time is a split by
position in the arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import numpy.typing as npt
import polars as pl

from ltr_pipeline.errors import DataError
from ltr_pipeline.events.frame import feature_column
from ltr_pipeline.interleaving import CHALLENGER, LIVE, verdict
from ltr_pipeline.measures import offsets
from ltr_pipeline.record import BusinessRow, DatasetStats, InterleavingVerdict, convert


@dataclass
class QuerySet:
    features: npt.NDArray[np.float64]  # (rows, n_features)
    labels: npt.NDArray[np.int64]
    qsizes: npt.NDArray[np.int64]
    query_ts: npt.NDArray[np.int64]  # epoch seconds of each query's first impression
    groups: list[str | None]
    positions: npt.NDArray[np.int64]  # where each row was shown (1 = top)
    feature_names: list[str]
    acted: npt.NDArray[np.bool_]  # the client gave any feedback at all, a decline included: examined for sure

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
            groups=[self.groups[r] for r in rows],
            positions=self.positions[rows],
            feature_names=self.feature_names,
            acted=self.acted[rows],
        )


def window(run_date: date, days: int) -> tuple[datetime, datetime]:
    """[start, end) of the `days` UTC days ending with `run_date` (inclusive)."""
    end = datetime.combine(run_date + timedelta(days=1), time(), tzinfo=UTC)
    return end - timedelta(days=days), end


KEYS = ["case_id", "lawyer_id"]


def _impressions(events: pl.LazyFrame) -> pl.LazyFrame:
    """Recommendations, the earliest of each (case, lawyer) kept. Lazy, so that polars sorts and deduplicates only
    the columns the caller goes on to use (BENCHMARKS.md, "Training at scale": most of a run's peak memory was
    these steps on the whole table)."""
    return (events.filter(pl.col("event_type") == "recommendation")
            .sort("ts", maintain_order=True).unique(KEYS, keep="first", maintain_order=True))


def _graded_feedback(events: pl.LazyFrame, grades: Mapping[str, int]) -> pl.LazyFrame:
    return events.filter(pl.col("event_type") == "feedback").with_columns(
        pl.col("action").replace_strict(dict(grades), default=None, return_dtype=pl.Int64).alias("grade")
    )


def build_queries(
    events: pl.DataFrame, feature_names: Sequence[str], grades: Mapping[str, int]
) -> tuple[QuerySet, DatasetStats]:
    """`events`: the validated table of events/frame.py. One query per case, rows in the order they were shown.

    One lazy plan builds the rows with only the columns they need; the few counts that the rows cannot give are
    small plans of their own (one plan holding everything made polars keep whole intermediate tables for reuse)."""
    lazy = events.lazy()
    shown = _impressions(lazy)
    feedback = _graded_feedback(lazy, grades)
    labels = feedback.join(shown.select(KEYS), on=KEYS, how="semi").group_by(KEYS).agg(pl.col("grade").max())
    cases = (shown.group_by("case_id").agg(pl.col("ts").min().alias("case_ts"))
             .sort(["case_ts", "case_id"]).with_row_index("case_rank"))
    columns = [feature_column(n) for n in feature_names]
    rows = (shown.select(*KEYS, "position", "group", *(c for c in columns if c in events.columns))
            .join(labels, on=KEYS, how="left").join(cases, on="case_id")
            .sort(["case_rank", "position", "lawyer_id"])).collect()
    features = rows.select(
        pl.col(c).cast(pl.Float64) if c in rows.columns else pl.lit(None, dtype=pl.Float64).alias(c) for c in columns
    ).to_numpy().astype(np.float64)  # nulls become NaN
    labels_arr = rows.get_column("grade").fill_null(0).to_numpy().astype(np.int64)
    per_query = rows.group_by("case_rank", maintain_order=True).agg(pl.len(), pl.col("case_ts").first())
    qsizes = per_query.get_column("len").to_numpy().astype(np.int64)
    query_ts = per_query.get_column("case_ts").dt.epoch("s").to_numpy().astype(np.int64)
    groups = rows.get_column("group").to_list()
    recommended = lazy.filter(pl.col("event_type") == "recommendation").select(pl.len()).collect().item()
    values, counts = np.unique(labels_arr, return_counts=True)
    stats = DatasetStats(
        impressions=rows.height,
        queries=per_query.height,
        with_feedback=int(rows.get_column("grade").is_not_null().sum()),  # one label per shown pair acted on
        positives=int(np.sum(labels_arr > 0)),
        orphan_feedback=feedback.join(shown.select(KEYS), on=KEYS, how="anti").select(pl.len()).collect().item(),
        repeated_impressions=recommended - rows.height,
        missing_features={n: int(np.isnan(features[:, j]).sum()) for j, n in enumerate(feature_names)
                          if np.isnan(features[:, j]).any()},
        grouped_rows=sum(g is not None for g in groups),
        label_counts={str(v): int(c) for v, c in zip(values, counts, strict=True)},
    )
    positions = rows.get_column("position").to_numpy().astype(np.int64)
    acted = rows.get_column("grade").is_not_null().to_numpy()
    qs = QuerySet(features, labels_arr, qsizes, query_ts, groups, positions, list(feature_names), acted)
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


def business_metrics(events: pl.DataFrame, grades: Mapping[str, int], k: int = 3) -> list[BusinessRow]:
    """What production did, per day and per model version that ranked the cases (legacy when none):
    cases shown, Hit@k (a positive action on a candidate shown in the top k) and conversion (the case got the
    highest-graded action, e.g. a signed contract)."""
    lazy = events.lazy()
    shown = _impressions(lazy).select(*KEYS, "position", pl.col("ts").dt.date().alias("day"),
                                      pl.col("model_version").fill_null("legacy").alias("version"))
    top = max(grades.values(), default=0)
    acted = _graded_feedback(lazy, grades).group_by(KEYS).agg(pl.col("grade").max())
    per_case = (shown.join(acted, on=KEYS, how="left").group_by("case_id").agg(
        pl.col("day").min(), pl.col("version").first(),
        ((pl.col("grade") > 0) & (pl.col("position") <= k)).any().alias("hit"),
        (pl.col("grade") == top).any().alias("converted"),
    ))
    table = (per_case.group_by("day", "version")
             .agg(pl.len().alias("cases"), pl.col("hit").mean().alias(f"hit@{k}"),
                  pl.col("converted").mean().alias("conversion"))
             .sort("day", "version")).collect()
    return [convert({**row, "day": row["day"].isoformat()}, BusinessRow) for row in table.iter_rows(named=True)]


def interleaving_verdicts(events: pl.DataFrame, grades: Mapping[str, int], min_cases: int) -> list[InterleavingVerdict]:
    """Per day and pair of versions, the verdict of the interleaved rankings: each case's graded actions credited to
    the team that showed the candidate (interleaving.py); cases without any graded action are left out."""
    lazy = events.lazy()
    if lazy.filter(pl.col("team").is_not_null()).select(pl.len()).collect().item() == 0:
        return []  # nothing interleaved: spare the deduplication of every impression
    shown = _impressions(lazy).filter(pl.col("team").is_not_null())
    acted = _graded_feedback(lazy, grades).group_by(KEYS).agg(pl.col("grade").max())
    per_case = (shown.join(acted, on=KEYS, how="left")
                .with_columns(pl.col("grade").fill_null(0), pl.col("ts").dt.date().alias("day"))
                .group_by("case_id")
                .agg(pl.col("day").min(), pl.col("model_version").first(), pl.col("challenger_version").first(),
                     pl.col("grade").filter(pl.col("team") == LIVE).sum().alias("live"),
                     pl.col("grade").filter(pl.col("team") == CHALLENGER).sum().alias("challenger"))
                .filter(pl.col("live") + pl.col("challenger") > 0)  # a case nobody acted on says nothing
                .collect())
    out = []
    for (day, live, challenger), cases in per_case.sort("day").group_by(
            ["day", "model_version", "challenger_version"], maintain_order=True):
        credits = zip(cases.get_column("live").to_list(), cases.get_column("challenger").to_list(), strict=True)
        out.append(verdict(credits, live, challenger, day.isoformat(), min_cases))
    return out
