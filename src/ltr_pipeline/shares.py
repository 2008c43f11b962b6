"""The dataset as parquet files, one per share of the cases, for an engine whose workers build and read them
(LTR_ENGINE=dask, dask_engine.py): the window is never held in one process.

A share file holds one share's rows (dataset.case_share: every event of its cases) as `build_queries` makes them,
in the window's order (first impression of the case, case_id, then position): the features `f0`, `f1`, ..., the
label, whether the client acted, the position, the group, `case_us` (the case's first impression, in microseconds
since the epoch) and `case_id`. The queries of all shares, ordered by (case_us, case_id), are the window's queries
in the order the local engine gives them; a part of the split is a key range of it (record.Partition).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from ltr_pipeline.dataset import QuerySet, case_share, dataset_stats, group_codes, group_refs, share_rows
from ltr_pipeline.events.frame import feature_column
from ltr_pipeline.record import DatasetStats, Key

ORDER = ["case_us", "case_id"]  # the queries' order; a share file's rows are then in the order shown


def write_share(events: str, share: int, parts: int, feature_names: Sequence[str], grades: Mapping[str, int],
                out: str) -> tuple[pl.DataFrame, DatasetStats]:
    """On a worker: build share `share` of `parts` of the events parquet file `events` into the share file `out`.
    Returns its queries (case_us, case_id, len: rows), in order, and its statistics."""
    lazy = case_share(pl.scan_parquet(events), share, parts)
    columns = [feature_column(n) for n in feature_names]
    names = set(lazy.collect_schema().names())
    rows, recommended, orphans = share_rows(lazy, [c for c in columns if c in names], grades)
    table = rows.sort("case_ts", "case_id", "position", "lawyer_id").select(
        *[(pl.col(c).cast(pl.Float64).fill_null(np.nan) if c in names else pl.lit(np.nan, pl.Float64)).alias(f"f{j}")
          for j, c in enumerate(columns)],
        pl.col("grade").fill_null(0).cast(pl.Int64).alias("label"), pl.col("grade").is_not_null().alias("acted"),
        pl.col("position").cast(pl.Int64), pl.col("group").cast(pl.String),
        pl.col("case_ts").dt.epoch("us").alias("case_us"), "case_id",
    )
    del rows
    table.write_parquet(out)
    stats = dataset_stats(to_queryset(table, feature_names), recommended, orphans)
    return table.group_by(ORDER, maintain_order=True).len(), stats


def _at_or_after(key: Key) -> pl.Expr:
    us, case = key
    return (pl.col("case_us") > us) | ((pl.col("case_us") == us) & (pl.col("case_id") >= case))


def read_share(path: str, start: Key | None = None, end: Key | None = None) -> pl.DataFrame:
    """The rows of a share file's queries from the key `start` (included) to `end` (excluded), in order."""
    table = pl.scan_parquet(path)
    if start is not None:
        table = table.filter(_at_or_after(start))
    if end is not None:
        table = table.filter(~_at_or_after(end))
    return table.collect()


def to_queryset(table: pl.DataFrame, feature_names: Sequence[str]) -> QuerySet:
    """Rows of share files (in order) as the QuerySet the local engine would have built for them."""
    per_query = table.group_by(ORDER, maintain_order=True).len()
    return QuerySet(
        features=table.select(f"f{j}" for j in range(len(feature_names))).to_numpy().astype(np.float64)
        .reshape(table.height, len(feature_names)),
        labels=table.get_column("label").to_numpy().astype(np.int64),
        qsizes=per_query.get_column("len").to_numpy().astype(np.int64),
        query_ts=per_query.get_column("case_us").to_numpy() // 1_000_000,
        groups=group_refs(*group_codes(table.get_column("group"))),
        positions=table.get_column("position").to_numpy().astype(np.int64),
        feature_names=list(feature_names),
        acted=table.get_column("acted").to_numpy().astype(bool),
    )


def write_queries(qs: QuerySet, path: str) -> None:
    """A QuerySet built elsewhere as a share file (each query a case of its own, named by its index)."""
    query = np.repeat(np.arange(qs.queries), qs.qsizes)
    pl.DataFrame({
        **{f"f{j}": qs.features[:, j] for j in range(qs.features.shape[1])},
        "label": qs.labels, "acted": qs.acted, "position": qs.positions,
        "group": pl.Series(list(qs.groups), dtype=pl.String),
        "case_us": np.repeat(qs.query_ts, qs.qsizes) * 1_000_000, "case_id": query.astype(str),
    }).write_parquet(path)

