"""Events -> labelled query groups, and the deterministic time-based split.

One query per case; one row per (case, lawyer) impression, ordered by the position it was shown at. A row's label is
the highest grade among its feedback actions (no feedback: 0). Features are read by the configured names; a missing
one is NaN and counted. Queries are ordered by the time their case was first shown, so a split by time is a split by
position in the arrays.
"""

from __future__ import annotations

import math
from collections import Counter
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
from ltr_pipeline.record import BusinessRow, DatasetStats, InterleavingVerdict, Shards, convert


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

    def slice(self, start: int, stop: int) -> QuerySet:
        """Queries `start` to `stop` - 1, as views of these arrays."""
        bounds = offsets(self.qsizes)
        rows = slice(int(bounds[start]), int(bounds[stop]))
        return QuerySet(self.features[rows], self.labels[rows], self.qsizes[start:stop], self.query_ts[start:stop],
                        np.asarray(self.groups, dtype=object)[rows], self.positions[rows], self.feature_names,
                        self.acted[rows])

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


def share_count(events: pl.LazyFrame, share_events: int) -> int:
    """How many shares the window is built in: one per `share_events` events (LTR_SHARE_EVENTS). Each share holds
    every event of a part of the cases (by a hash of case_id, so a case never spans two shares, whatever the days of
    its events); polars' sorts, joins and deduplication then hold one share at a time, not the window
    (BENCHMARKS.md, "Bounded memory"). A small window is one share."""
    return max(1, math.ceil(events.select(pl.len()).collect().item() / share_events))


def case_share(events: pl.LazyFrame, share: int, parts: int) -> pl.LazyFrame:
    """Every event of the cases in share `share` of `parts`."""
    return events if parts == 1 else events.filter(pl.col("case_id").hash(seed=0) % parts == share)


def case_partitions(events: pl.LazyFrame, parts: int) -> Iterator[pl.LazyFrame]:
    """The events in `parts` shares, each holding every event of its cases."""
    return (case_share(events, i, parts) for i in range(parts))


def share_rows(events: pl.LazyFrame, present: list[str], grades: Mapping[str, int]) -> tuple[pl.DataFrame, int, int]:
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
    events: pl.LazyFrame | pl.DataFrame, feature_names: Sequence[str], grades: Mapping[str, int], parts: int = 1,
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
        rows, seen, lost = share_rows(share, present, grades)
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
    qs = QuerySet(features, labels_arr, qsizes, query_ts, groups, positions, list(feature_names), acted)
    return qs, dataset_stats(qs, recommended, orphans)


def dataset_stats(qs: QuerySet, recommended: int, orphans: int) -> DatasetStats:
    """The statistics of a dataset built from `recommended` recommendation events (repeats included), with `orphans`
    feedback events on nothing shown."""
    values, counts = np.unique(qs.labels, return_counts=True)
    missing = np.isnan(qs.features).sum(axis=0)
    return DatasetStats(
        impressions=qs.rows,
        queries=qs.queries,
        with_feedback=int(qs.acted.sum()),  # one label per shown pair acted on
        positives=int(np.sum(qs.labels > 0)),
        orphan_feedback=orphans,
        repeated_impressions=recommended - qs.rows,
        missing_features={n: int(m) for n, m in zip(qs.feature_names, missing, strict=True) if m},
        grouped_rows=int(np.count_nonzero(qs.groups != None)),  # noqa: E711 (elementwise)
        label_counts={str(v): int(c) for v, c in zip(values, counts, strict=True)},
    )


def add_stats(parts: Sequence[DatasetStats], feature_names: Sequence[str]) -> DatasetStats:
    """The statistics of the dataset made of these parts (shares of the cases)."""
    def total(field: str) -> Counter[str]:
        return sum((Counter(getattr(p, field)) for p in parts), Counter())

    missing, labels = total("missing_features"), total("label_counts")
    return DatasetStats(
        **{f: sum(getattr(p, f) for p in parts) for f in ("impressions", "queries", "with_feedback", "positives",
                                                            "orphan_feedback", "repeated_impressions", "grouped_rows")},
        missing_features={n: missing[n] for n in feature_names if missing[n]},
        label_counts={k: labels[k] for k in sorted(labels, key=int)},
    )


@dataclass
class Split:
    """The time split. With `shards` (LTR_ENGINE=dask), the training and validation queries live in parquet files
    the workers read, and `train` and `valid` hold one share of their cases only: a sample, for the propensities and
    the drift reference."""

    train: QuerySet
    valid: QuerySet
    holdout: QuerySet
    shards: Shards | None = None

    def size(self, part: str) -> tuple[int, int]:
        """(rows, queries) of "train", "valid" or "holdout", whole."""
        if self.shards is not None and part != "holdout":
            partitions = getattr(self.shards, part)
            return sum(p.rows for p in partitions), sum(p.queries for p in partitions)
        qs: QuerySet = getattr(self, part)
        return qs.rows, qs.queries


def split_points(query_ts: npt.NDArray[np.int64], window_end: datetime, holdout: timedelta, valid_fraction: float
                 ) -> tuple[int, int]:
    """(first validation query, first holdout query) of queries in time order (`query_ts`): the holdout is the last
    `holdout` of the window, the validation slice the latest share of the rest."""
    rest = int(np.searchsorted(query_ts, int((window_end - holdout).timestamp())))
    if rest == len(query_ts):
        raise DataError(
            f"no impressions in the holdout ({holdout} before {window_end:%Y-%m-%d %H:%M} UTC): "
            "are there events for the run date?"
        )
    if rest < 2:
        raise DataError(f"only {rest} training queries before the holdout: too few to train")
    n_valid = max(1, round(rest * valid_fraction)) if valid_fraction > 0 else 0
    return rest - n_valid, rest


def split_by_time(qs: QuerySet, window_end: datetime, holdout: timedelta, valid_fraction: float) -> Split:
    """The queries (in time order) split by `split_points`."""
    valid, held = split_points(qs.query_ts, window_end, holdout, valid_fraction)
    idx = np.arange(qs.queries)
    return Split(qs.take(idx[:valid]), qs.take(idx[valid:held]), qs.take(idx[held:]))


def business_metrics(events: pl.LazyFrame | pl.DataFrame, grades: Mapping[str, int], parts: int = 1, k: int = 3
                     ) -> list[BusinessRow]:
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

    table = (_each_share(events, per_case, parts).group_by("day", "version")
             .agg(pl.len().alias("cases"), pl.col("hit").mean().alias(f"hit@{k}"),
                  pl.col("converted").mean().alias("conversion"))
             .sort("day", "version"))
    return [convert({**row, "day": row["day"].isoformat()}, BusinessRow) for row in table.iter_rows(named=True)]


def _each_share(events: pl.LazyFrame | pl.DataFrame, per_case: Callable[[pl.LazyFrame], pl.LazyFrame], parts: int
                ) -> pl.DataFrame:
    """`per_case` (one row per case) over each of `parts` shares of the cases, as one table."""
    return pl.concat([per_case(share).collect() for share in case_partitions(events.lazy(), parts)])


def interleaving_verdicts(events: pl.LazyFrame | pl.DataFrame, grades: Mapping[str, int], min_cases: int,
                          parts: int = 1) -> list[InterleavingVerdict]:
    """Per day and pair of versions, the verdict of the interleaved rankings: each case's graded actions credited to
    the team that showed the candidate (interleaving.py); cases without any graded action on a team's place are left
    out."""
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
                .filter(pl.col("live") + pl.col("challenger") > 0))  # nobody acted, or only on shared places

    out = []
    for (day, live, challenger), cases in _each_share(lazy, per_case, parts).sort("day", "case_id").group_by(
            ["day", "model_version", "challenger_version"], maintain_order=True):
        credits = zip(cases.get_column("live").to_list(), cases.get_column("challenger").to_list(), strict=True)
        out.append(verdict(credits, live, challenger, day.isoformat(), min_cases))
    return out
