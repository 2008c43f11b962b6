"""Pipeline throughput against the libraries underneath, measured side by side in one run.

1. Train step: `ltr_pipeline.train.train` against a bare `lightgbm.train` with the same parameters on the same
   1M-row dataset (100k queries x 10 candidates, 8 features), 200 rounds, 2 threads.
2. File ingest: the file source (JSON parsing, contract validation, window, dedupe) against `polars.read_ndjson`
   (parsing only) on the same ~1M simulated events.

    .venv/bin/python -m bench.pipeline_throughput [--runs 3] [--queries 100000] [--events 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np

from ltr_pipeline.config import DEFAULT_LABEL_GRADES, Settings
from ltr_pipeline.dataset import QuerySet
from ltr_pipeline.events.file import FileEventSource
from ltr_pipeline.logs import configure_logging
from ltr_pipeline.scoring import WeightedSumScorer, default_weights
from ltr_pipeline.simulate import SimConfig, make_marketplace, simulate_day, true_relevance, write_day
from ltr_pipeline.train import lgb_params, train

NAMES = list("ASTGQURC")


def dataset(queries: int, k: int = 10) -> QuerySet:
    rng = np.random.default_rng(0)
    x = rng.random((queries * k, len(NAMES)))
    utility = true_relevance({n: x[:, j] for j, n in enumerate(NAMES)}) + rng.normal(0, 0.6, len(x))
    y = np.digitize(utility, [2.6, 3.2, 3.8]).astype(np.int64)
    return QuerySet(x, y, np.full(queries, k, dtype=np.int64), np.arange(queries, dtype=np.int64), [None] * len(x),
                    np.zeros(len(x), dtype=np.int64), NAMES, y > 0)


def bench_train(runs: int, queries: int) -> None:
    settings = Settings(num_boost_round=200, valid_fraction=0)
    qs = dataset(queries)
    no_valid = qs.take(np.array([], dtype=np.int64))
    params = lgb_params(settings)
    times: dict[str, list[float]] = {"lightgbm.train": [], "pipeline train step": []}
    for run in range(runs):
        for name in (list(times) if run % 2 == 0 else list(reversed(times))):
            started = time.perf_counter()
            if name == "lightgbm.train":
                booster = lgb.train(params, lgb.Dataset(qs.features, qs.labels, group=qs.qsizes), 200)
                booster.model_to_string()
            else:
                train(qs, no_valid, settings)
            times[name].append(time.perf_counter() - started)
    base = times["lightgbm.train"]
    print(f"train: {qs.rows:,} rows, {queries:,} queries, 200 rounds, {settings.num_threads} threads")
    for name, values in times.items():
        ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
        print(f"  {name:22s} median {statistics.median(values):6.2f} s   time ratio {ratio:.3f}   "
              f"runs {', '.join(f'{v:.2f}' for v in values)}")


def bench_ingest(runs: int, events: int) -> None:
    import polars as pl

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = SimConfig(cases_per_day=max(1, events // 13))
        day = date(2026, 11, 20)
        generated = simulate_day(make_marketplace(config), day, config,
                                 WeightedSumScorer(default_weights(NAMES), NAMES), None)
        path = write_day(generated, root, day)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        rates: dict[str, list[float]] = {"polars.read_ndjson": [], "file source (validated)": []}
        for run in range(runs):
            for name in (list(rates) if run % 2 == 0 else list(reversed(rates))):
                started = time.perf_counter()
                if name.startswith("polars"):
                    count = pl.read_ndjson(path).height
                else:
                    count = FileEventSource(root).read(start, start + timedelta(days=1),
                                                       DEFAULT_LABEL_GRADES.keys(), NAMES).frame.height
                rates[name].append(count / (time.perf_counter() - started))
        base = rates["polars.read_ndjson"]
        print(f"ingest: {len(generated):,} events, {path.stat().st_size / 1e6:.0f} MB")
        for name, values in rates.items():
            ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
            print(f"  {name:26s} median {statistics.median(values):>11,.0f} events/s   throughput ratio {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["train", "ingest"], help="Run one of the two.")
    args = parser.parse_args()
    configure_logging(stream=None)
    if args.only != "ingest":
        bench_train(args.runs, args.queries)
    if args.only != "train":
        bench_ingest(args.runs, args.events)


if __name__ == "__main__":
    main()
