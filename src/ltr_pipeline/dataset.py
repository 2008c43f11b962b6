"""Events -> labelled query groups, and the deterministic time-based split.

One query per case; one row per (case, lawyer) impression, ordered by the position it was shown at. A row's label is
the highest grade among its feedback actions (no feedback: 0). Features are read by the configured names; a missing
one is NaN and counted. Queries are ordered by the time their case was first shown, so a split by time is a split by
position in the arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import numpy.typing as npt
import polars as pl

from ltr_pipeline.errors import DataError
from ltr_pipeline.events.frame import feature_column
from ltr_pipeline.interleaving import CHALLENGER, LIVE, verdict
from ltr_pipeline.measures import Groups, offsets
from ltr_pipeline.record import BusinessRow, DatasetStats, InterleavingVerdict, convert


@dataclass
class QuerySet:
    features: npt.NDArray[np.float64]  # (rows, n_features)
    labels: npt.NDArray[np.int64]
    qsizes: npt.NDArray[np.int64]
    query_ts: npt.NDArray[np.int64]  # epoch seconds of each query's first impression
    groups: Groups  # each row's group (None: none); built as shared references (group_refs)
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
            groups=np.asarray(self.groups, dtype=object)[rows],
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


SHARE_EVENTS = 150_000
"""The window is built into queries about this many events at a time: each share holds every event of a part of the
cases (by a hash of case_id, so a case never spans two shares, whatever the days of its events). polars' sorts, joins
and deduplication then hold one share at a time, not the window (BENCHMARKS.md, "Bounded memory"); a small window
is one share."""


def case_partitions(events: pl.LazyFrame, parts: int | None = None) -> Iterator[pl.LazyFrame]:
    """The events in `parts` shares (default: one per SHARE_EVENTS events), each holding every event of its cases."""
    parts = parts or max(1, math.ceil(events.select(pl.len()).collect().item() / SHARE_EVENTS))
    if parts == 1:
        yield events
        return
    share = pl.col("case_id").hash(seed=0) % parts
    for i in range(parts):
        yield events.filter(share == i)


def _share_rows(events: pl.LazyFrame, present: list[str], grades: Mapping[str, int]) -> tuple[pl.DataFrame, int, int]:
    """One share's rows (one per shown (case, lawyer), with its label and its case's first impression), the share's
    recommendation events and its feedback on nothing shown."""
    shown = _impressions(events)
    feedback = _graded_feedback(events, grades)
    labels = feedback.join(shown.select(KEYS), on=KEYS, how="semi").group_by(KEYS).agg(pl.col("grade").max())
    cases = shown.group_by("case_id").agg(pl.col("ts").min().alias("case_ts"))
    rows, recommended, orphans = pl.collect_all([
        shown.select(*KEYS, "position", "group", *present).join(labels, on=KEYS, how="left").join(cases, on="case_id"),
        events.filter(pl.col("event_type") == "recommendation").select(pl.len()),
        feedback.join(shown.select(KEYS), on=KEYS, how="anti").select(pl.len()),
    ])
    return rows, recommended.item(), orphans.item()


def group_codes(column: pl.Series) -> tuple[list[str], npt.NDArray[np.int64]]:
    """(the groups' names, sorted; each row's index into them, -1 for no group)."""
    names = column.drop_nulls().unique().sort().to_list()
    return names, column.rank("dense").fill_null(0).to_numpy().astype(np.int64) - 1


def group_refs(names: Sequence[str], codes: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
    """Each row's group as a reference to one string per group (code -1: None): no Python object per row."""
    return np.array([*names, None], dtype=object)[codes]


def build_queries(
    events: pl.LazyFrame | pl.DataFrame, feature_names: Sequence[str], grades: Mapping[str, int],
    parts: int | None = None,
) -> tuple[QuerySet, DatasetStats]:
    """`events`: the validated table of events/frame.py, best a lazy scan of it. One query per case, rows in the
    order they were shown, queries in the order of their cases' first impressions.

    Built a share of the cases at a time (case_partitions); only the rows' own columns are ever held whole."""
    lazy = events.lazy()
    columns = [feature_column(n) for n in feature_names]
    names = set(lazy.collect_schema().names())
    present = [c for c in columns if c in names]
    shares, recommended, orphans = [], 0, 0
    for share in case_partitions(lazy, parts):
        rows, seen, lost = _share_rows(share, present, grades)
        shares.append(rows)
        recommended, orphans = recommended + seen, orphans + lost
    rows = pl.concat(shares)
    del shares
    # The rows in the order of their cases' first impressions, then of position: each column taken in that order on
    # its own, never a sorted copy of the whole table.
    order = rows.select(pl.arg_sort_by("case_ts", "case_id", "position", "lawyer_id")).to_series().to_numpy()
    rows = rows.drop("lawyer_id")
    features = np.empty((rows.height, len(columns)), dtype=np.float64)
    for j, c in enumerate(columns):  # nulls become NaN
        features[:, j] = rows.get_column(c).cast(pl.Float64).to_numpy()[order] if c in names else np.nan
    grade = rows.get_column("grade").gather(order)
    labels_arr = grade.fill_null(0).to_numpy().astype(np.int64)
    acted = grade.is_not_null().to_numpy()
    positions = rows.get_column("position").to_numpy()[order].astype(np.int64)
    groups = group_refs(*group_codes(rows.get_column("group").gather(order)))
    per_query = rows.select("case_id", "case_ts").gather(order).group_by("case_id", maintain_order=True).agg(
        pl.len(), pl.col("case_ts").first())
    del rows
    qsizes = per_query.get_column("len").to_numpy().astype(np.int64)
    query_ts = per_query.get_column("case_ts").dt.epoch("s").to_numpy().astype(np.int64)
    values, counts = np.unique(labels_arr, return_counts=True)
    stats = DatasetStats(
        impressions=len(labels_arr),
        queries=per_query.height,
        with_feedback=int(acted.sum()),  # one label per shown pair acted on
        positives=int(np.sum(labels_arr > 0)),
        orphan_feedback=orphans,
        repeated_impressions=recommended - len(labels_arr),
        missing_features={n: int(np.isnan(features[:, j]).sum()) for j, n in enumerate(feature_names)
                          if np.isnan(features[:, j]).any()},
        grouped_rows=int(np.count_nonzero(groups != None)),  # noqa: E711 (elementwise)
        label_counts={str(v): int(c) for v, c in zip(values, counts, strict=True)},
    )
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


def business_metrics(events: pl.LazyFrame | pl.DataFrame, grades: Mapping[str, int], k: int = 3) -> list[BusinessRow]:
    """What production did, per day and per model version that ranked the cases (legacy when none):
    cases shown, Hit@k (a positive action on a candidate shown in the top k) and conversion (the case got the
    highest-graded action, e.g. a signed contract). One row per case is built a share of the cases at a time."""
    top = max(grades.values(), default=0)

    def per_case(share: pl.LazyFrame) -> pl.LazyFrame:
        shown = _impressions(share).select(*KEYS, "position", pl.col("ts").dt.date().alias("day"),
                                           pl.col("model_version").fill_null("legacy").alias("version"))
        acted = _graded_feedback(share, grades).group_by(KEYS).agg(pl.col("grade").max())
        return shown.join(acted, on=KEYS, how="left").group_by("case_id").agg(
            pl.col("day").min(), pl.col("version").first(),
            ((pl.col("grade") > 0) & (pl.col("position") <= k)).any().alias("hit"),
            (pl.col("grade") == top).any().alias("converted"),
        )

    table = (_each_share(events, per_case).group_by("day", "version")
             .agg(pl.len().alias("cases"), pl.col("hit").mean().alias(f"hit@{k}"),
                  pl.col("converted").mean().alias("conversion"))
             .sort("day", "version"))
    return [convert({**row, "day": row["day"].isoformat()}, BusinessRow) for row in table.iter_rows(named=True)]


def _each_share(events: pl.LazyFrame | pl.DataFrame, per_case: Callable[[pl.LazyFrame], pl.LazyFrame]
                ) -> pl.DataFrame:
    """`per_case` (one row per case) over each share of the cases, as one table."""
    return pl.concat([per_case(share).collect() for share in case_partitions(events.lazy())])


def interleaving_verdicts(events: pl.LazyFrame | pl.DataFrame, grades: Mapping[str, int], min_cases: int
                          ) -> list[InterleavingVerdict]:
    """Per day and pair of versions, the verdict of the interleaved rankings: each case's graded actions credited to
    the team that showed the candidate (interleaving.py); cases without any graded action are left out."""
    lazy = events.lazy()
    if lazy.filter(pl.col("team").is_not_null()).select(pl.len()).collect().item() == 0:
        return []  # nothing interleaved: spare the deduplication of every impression

    def per_case(share: pl.LazyFrame) -> pl.LazyFrame:
        shown = _impressions(share).filter(pl.col("team").is_not_null())
        acted = _graded_feedback(share, grades).group_by(KEYS).agg(pl.col("grade").max())
        return (shown.join(acted, on=KEYS, how="left")
                .with_columns(pl.col("grade").fill_null(0), pl.col("ts").dt.date().alias("day"))
                .group_by("case_id")
                .agg(pl.col("day").min(), pl.col("model_version").first(), pl.col("challenger_version").first(),
                     pl.col("grade").filter(pl.col("team") == LIVE).sum().alias("live"),
                     pl.col("grade").filter(pl.col("team") == CHALLENGER).sum().alias("challenger"))
                .filter(pl.col("live") + pl.col("challenger") > 0))  # a case nobody acted on says nothing

    out = []
    for (day, live, challenger), cases in _each_share(lazy, per_case).sort("day", "case_id").group_by(
            ["day", "model_version", "challenger_version"], maintain_order=True):
        credits = zip(cases.get_column("live").to_list(), cases.get_column("challenger").to_list(), strict=True)
        out.append(verdict(credits, live, challenger, day.isoformat(), min_cases))
    return out
