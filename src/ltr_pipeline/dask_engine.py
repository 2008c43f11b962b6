"""LTR_ENGINE=dask: the daily model trained by LightGBM's own Dask interface (`lightgbm.dask`) on a Dask cluster.

- **Data.** The workers build the dataset from the run's events.parquet, a share of the cases each
  (LTR_SHARE_EVENTS events, by a hash of case_id, so a case never spans two shares), into a parquet file per share
  (`shares/<i>.parquet`, shares.py). The client gets back one row per query (its case's first impression and
  case_id) and the statistics, splits the queries by time on that index, and names each part of the split as key
  ranges of the share files (`shards.json`). It gathers the holdout, which it evaluates, and one share's training
  and validation queries, a sample for the propensities and the drift reference: never the window. On a cluster of
  several machines the run folder (`LTR_HOME`) must be where every worker can read it (README, "Beyond one
  machine"). A split built elsewhere (bench.scale) is written as a file per day (`partitions/`, removed after
  training).
- **Training.** `DaskLGBMRanker` (`DaskLGBMRegressor` for the exposure model) with the same parameters as the local
  engine. LTR_DEBIAS=ips and exposure work as locally (labels or `init_score` are made per partition);
  LTR_DEBIAS=position does not exist in LightGBM's Dask interface and is refused.
- **Early stopping.** LightGBM's Dask interface has none (microsoft/LightGBM#3712: workers would stop at different
  rounds and hang). So every round is trained, and the workers score each round's model on their validation
  partitions (nDCG@5, summed per query); the client picks the iteration early stopping would have stopped at,
  with the same patience (LTR_EARLY_STOPPING_ROUNDS), and keeps the model up to it.
- **Cluster.** `DASK_SCHEDULER_ADDRESS` connects to an existing cluster; unset, a `LocalCluster` of
  LTR_DASK_WORKERS worker processes lives for the run, LTR_NUM_THREADS shared among them; each worker trains
  with as many threads as it has.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import structlog

from ltr_pipeline.config import Settings
from ltr_pipeline.dataset import QuerySet, Split, add_stats, share_count, split_points
from ltr_pipeline.engine import Engine
from ltr_pipeline.errors import ConfigError, LtrError
from ltr_pipeline.measures import dcg_by_query, gain
from ltr_pipeline.record import DatasetStats, Key, Partition, Propensities, Shards
from ltr_pipeline.shares import ORDER, read_share, to_queryset, write_queries, write_share
from ltr_pipeline.train import TrainedModel, debiasing, ips_labels, lgb_params, search, trained_model

log = structlog.get_logger(__name__)

DAY = 86_400
K = 5  # early stopping's metric: nDCG@5, as the local engine's
CONNECT_TIMEOUT = "10s"  # to reach DASK_SCHEDULER_ADDRESS


def write_partitions(qs: QuerySet, folder: Path) -> list[Partition]:
    """`qs` as share files, one per UTC day of the queries' first impression (queries are in time order)."""
    folder.mkdir(parents=True, exist_ok=True)
    days, firsts, counts = np.unique(qs.query_ts // DAY, return_index=True, return_counts=True)
    out = []
    for day, q0, q1 in zip(days, firsts.tolist(), (firsts + counts).tolist(), strict=True):  # days are contiguous
        part = qs.slice(q0, q1)
        path = str(folder / f"{np.datetime64(int(day), 'D')}.parquet")
        write_queries(part, path)
        out.append(Partition(path=path, rows=part.rows, queries=part.queries))
    return out


def _read(path: str, start: Key | None, end: Key | None) -> QuerySet:
    """A partition's queries. (The tasks take a Partition's fields: Dask takes a msgspec Struct apart.)"""
    table = read_share(path, start, end)
    return to_queryset(table, [c for c in table.columns if c.startswith("f") and c[1:].isdigit()])


def load_partition(path: str, start: Key | None, end: Key | None, debias: str, propensities: Propensities | None
                   ) -> tuple[Any, Any, Any, Any]:
    """On a worker: (features, labels, query sizes, init_score or None) to train on, debiased as locally."""
    qs = _read(path, start, end)
    if debias == "exposure" and propensities is not None:
        return qs.features, gain(qs.labels), qs.qsizes, np.log(propensities.at(qs.positions))
    if debias == "ips" and propensities is not None:
        return qs.features, ips_labels(qs.labels, qs.positions, propensities), qs.qsizes, None
    return qs.features, qs.labels, qs.qsizes, None


def validation_curve(model_text: str, path: str, start: Key | None, end: Key | None
                     ) -> tuple[npt.NDArray[np.float64], int]:
    """On a worker: the sum over one partition's queries (with a positive label) of nDCG@5 after each iteration,
    and how many queries count."""
    import lightgbm as lgb

    qs = _read(path, start, end)
    features, labels, qsizes = qs.features, qs.labels, qs.qsizes
    booster = lgb.Booster(model_str=model_text)
    ideal = dcg_by_query(labels, labels, qsizes, K)
    counted = ideal > 0
    scores = np.zeros(len(labels))
    sums = np.zeros(booster.current_iteration())
    for i in range(len(sums)):  # each iteration's trees added to the scores so far
        scores += booster.predict(features, start_iteration=i, num_iteration=1, raw_score=True)
        sums[i] = float(np.sum(dcg_by_query(scores, labels, qsizes, K)[counted] / ideal[counted]))
    return sums, int(counted.sum())


def stopping_iteration(ndcg: Sequence[float], patience: int) -> int:
    """The iteration (1-based) LightGBM's early stopping keeps for this validation curve: the best one, once
    `patience` iterations in a row failed to beat it (or the curve ended)."""
    best = 0
    for i, value in enumerate(ndcg):
        if value > ndcg[best]:
            best = i
        elif i - best >= patience:
            break
    return best + 1


@contextmanager
def cluster(settings: Settings) -> Iterator[Any]:
    """A client of the configured cluster, or of a LocalCluster started for the run."""
    try:
        import dask
        import lightgbm as lgb
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("LTR_ENGINE=dask needs Dask: pip install 'ltr-pipeline[dask]'") from None
    lgb.register_logger(logging.getLogger("lightgbm"))  # its Dask messages go to the logs, never to stdout
    if settings.dask_scheduler_address:
        try:
            client = Client(settings.dask_scheduler_address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise LtrError(f"the Dask scheduler at DASK_SCHEDULER_ADDRESS={settings.dask_scheduler_address} "
                           f"cannot be reached: {exc}") from None
        with client:
            yield client
        return
    threads = max(1, settings.num_threads // settings.dask_workers)  # LTR_NUM_THREADS in all, as locally
    # No work stealing: a task stays on the worker that holds its data (`placement`), so each worker trains on the
    # same partitions every run.
    with dask.config.set({"distributed.scheduler.work-stealing": False}), \
            LocalCluster(n_workers=settings.dask_workers, threads_per_worker=threads, processes=True,
                         dashboard_address=None, silence_logs=logging.ERROR) as local, Client(local) as client:
        yield client


class DaskEngine(Engine):
    def build(self, events: Path, settings: Settings, window_end: datetime, holdout: timedelta, workdir: Path
              ) -> tuple[Split, DatasetStats]:
        names = settings.feature_names
        parts = share_count(pl.scan_parquet(events), settings.share_events)
        folder = workdir / "shares"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        paths = [str(folder / f"{i}.parquet") for i in range(parts)]
        with cluster(settings) as client:
            built = client.gather([client.submit(write_share, str(events), i, parts, names, settings.label_grades,
                                                 path, pure=False) for i, path in enumerate(paths)])
            index = pl.concat([queries.with_columns(share=pl.lit(i)) for i, (queries, _) in enumerate(built)]
                              ).sort(ORDER, maintain_order=True)
            valid, held = split_points(index.get_column("case_us").to_numpy() // 1_000_000, window_end, holdout,
                                       settings.valid_fraction)
            ranges = _ranges(index, valid, held)
            shards = {role: [Partition(path=paths[share], rows=rows, queries=queries, start=start, end=end)
                             for share, rows, queries in _per_share(index, lo, hi)]
                      for role, (lo, hi, start, end) in ranges.items()}
            queries = index.height
            del index
            held_rows = client.gather([client.submit(read_share, p.path, p.start, p.end, pure=False)
                                       for p in shards["holdout"]])
        split = Split(
            # one share's training and validation queries: a sample of the cases, read here from its file
            train=to_queryset(read_share(paths[0], *ranges["train"][2:]), names),
            valid=to_queryset(read_share(paths[0], *ranges["valid"][2:]), names),
            holdout=to_queryset(pl.concat(held_rows).sort(ORDER, maintain_order=True), names),
            shards=Shards(train=shards["train"], valid=shards["valid"]),
        )
        log.info("dataset.built", engine="dask", shares=parts, queries=queries)
        return split, add_stats([stats for _, stats in built], names)

    def fit(self, split: Split, settings: Settings, propensities: Propensities | None, workdir: Path) -> TrainedModel:
        debias, _ = debiasing(settings, propensities)
        if debias == "position":
            raise ConfigError("LTR_DEBIAS=position is not available with LTR_ENGINE=dask (LightGBM's Dask "
                              "interface has no position field): use exposure, ips or none")
        folder = workdir / "partitions"
        try:
            if split.shards is None:  # a split built in this process
                train = write_partitions(split.train, folder / "train")
                valid = write_partitions(split.valid, folder / "valid")
            else:
                train, valid = split.shards.train, split.shards.valid
            names = list(split.holdout.feature_names)
            with cluster(settings) as client:
                def fit(trial: Settings) -> tuple[TrainedModel, float]:
                    return _fit(client, train, valid, names, trial, propensities)

                model = fit(settings)[0] if settings.tune_trials == 0 or not valid else \
                    search(settings, propensities, fit)
        finally:  # a copy of the window per run would fill the disk: the run's dataset.npz keeps the split
            shutil.rmtree(folder, ignore_errors=True)
        return replace(model, params={**model.params, "partitions": {"train": len(train), "valid": len(valid)}})


def _ranges(index: pl.DataFrame, valid: int, held: int) -> dict[str, tuple[int, int, Key | None, Key | None]]:
    """Each part of the split as (first query, first query after it) in the ordered `index`, and as keys."""
    def key(i: int) -> Key | None:
        return None if i >= index.height else (index.item(i, "case_us"), index.item(i, "case_id"))

    return {"train": (0, valid, None, key(valid)), "valid": (valid, held, key(valid), key(held)),
            "holdout": (held, index.height, key(held), None)}


def _per_share(index: pl.DataFrame, lo: int, hi: int) -> list[tuple[int, int, int]]:
    """(share, rows, queries) of each share with queries between `lo` and `hi` in the ordered `index`."""
    counts = index.slice(lo, hi - lo).group_by("share").agg(pl.col("len").sum(), pl.len().alias("queries"))
    return sorted(counts.select("share", "len", "queries").iter_rows())


def placement(rows: Sequence[int], workers: Sequence[str]) -> list[str]:
    """The worker each partition (of these rows) is loaded on: the largest first, each to the worker with the fewest
    rows so far (the first such, in the order given). The same on every run: left to the scheduler, the placement
    changed from run to run, and with it the bins LightGBM finds on each worker, and the model. (What still varies:
    which worker becomes LightGBM's rank 0, which lightgbm.dask takes from the order of a set, so each feature's bins
    come from one worker's data or another's: two outcomes with two workers, README "Beyond one machine".)"""
    load = dict.fromkeys(workers, 0)
    out = [""] * len(rows)
    for i in sorted(range(len(rows)), key=lambda i: -rows[i]):
        out[i] = min(load, key=load.__getitem__)
        load[out[i]] += rows[i]
    return out


def _arrays(client: Any, parts: list[Partition], n_features: int, debias: str, propensities: Propensities | None
            ) -> Any:
    import operator

    import dask.array as da

    where = placement([p.rows for p in parts], sorted(client.scheduler_info()["workers"]))
    pieces = []
    for p, worker in zip(parts, where, strict=True):
        on = {"workers": [worker], "allow_other_workers": False, "pure": False}
        load = client.submit(load_partition, p.path, p.start, p.end, debias, propensities, **on)
        pieces.append([client.submit(operator.getitem, load, i, **on) for i in range(4)])

    def column(i: int, shape: Callable[[Partition], tuple[int, ...]], dtype: Any) -> Any:
        return da.concatenate([da.from_delayed(f[i], shape(p), dtype) for f, p in zip(pieces, parts, strict=True)])

    x = column(0, lambda p: (p.rows, n_features), np.float64)
    y = column(1, lambda p: (p.rows,), np.float64)
    group = column(2, lambda p: (p.queries,), np.int64)
    init = column(3, lambda p: (p.rows,), np.float64) if debias == "exposure" else None
    return x, y, group, init


def _fit(client: Any, train: list[Partition], valid: list[Partition], names: list[str], settings: Settings,
         propensities: Propensities | None) -> tuple[TrainedModel, float]:
    """One model on the cluster, all rounds, cut where early stopping would have; and its validation nDCG@5."""
    import lightgbm as lgb

    debias, extra = debiasing(settings, propensities)
    params = {**lgb_params(settings), **extra}
    workers = len(client.scheduler_info()["workers"])
    x, y, group, init = _arrays(client, train, len(names), debias, propensities)
    # Each worker trains with as many threads as it has (lightgbm.dask sets num_threads itself).
    trainer = {k: v for k, v in params.items() if k not in ("metric", "eval_at", "num_threads")}
    if debias == "exposure":
        estimator = lgb.DaskLGBMRegressor(client=client, n_estimators=settings.num_boost_round, **trainer)
        estimator.fit(x, y, init_score=init)
    else:
        estimator = lgb.DaskLGBMRanker(client=client, n_estimators=settings.num_boost_round, **trainer)
        estimator.fit(x, y, group=group)
    booster = estimator.to_local().booster_
    best, ndcg = booster.current_iteration(), 0.0
    if valid:
        text = client.scatter(booster.model_to_string(), broadcast=True)
        curves = client.gather([client.submit(validation_curve, text, p.path, p.start, p.end, pure=False)
                                for p in valid])
        counted = sum(c for _, c in curves)
        curve = sum(s for s, _ in curves) / max(1, counted)
        best = stopping_iteration(curve.tolist(), settings.early_stopping_rounds)
        ndcg = float(curve[best - 1])
    log.info("train.done", engine="dask", workers=workers, best_iteration=best,
             rows=sum(p.rows for p in train), queries=sum(p.queries for p in train))
    return trained_model(booster, best, params, names, settings.num_boost_round, settings, debias,
                         engine="dask"), ndcg
