"""The training step at scale: the local engine against LightGBM's Dask interface on a LocalCluster of 2 worker
processes, on the same synthetic window, side by side in one run (issue 18).

For each size (rows = queries x 10 candidates, 8 features, queries spread evenly over 30 days: the last day is the
holdout, the latest 15% of the rest the validation slice) and each engine, a fresh child process generates the
window, trains through `Engine.fit` and scores the holdout. Reported: the wall time of the training step, the peak
resident memory of the client (the child) and of each Dask worker, and both models' nDCG@5 on the same holdout.

    .venv/bin/python -m bench.scale [--rows 1000000 5000000 10000000] [--rounds 100] [--workers 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.pipeline_throughput import NAMES, dataset
from ltr_pipeline.config import Settings
from ltr_pipeline.dataset import Split, split_by_time
from ltr_pipeline.engine import make_engine
from ltr_pipeline.logs import configure_logging
from ltr_pipeline.measures import NDCG_AT_5, ranking_metrics
from ltr_pipeline.scoring import LgbmScorer

K = 10
DAYS = 30
DAY = 86_400
START = 1_790_000_000 // DAY * DAY  # a midnight, UTC


def window(rows: int) -> Split:
    """A 30-day window of `rows` impressions (pipeline_throughput's synthetic queries, spread evenly over the days,
    positions 1 to 10), split as the pipeline splits it."""
    queries = rows // K
    qs = dataset(queries, K)
    qs.query_ts = START + (np.arange(queries) * (DAYS * DAY / queries)).astype(np.int64)  # to the window's end
    qs.positions = np.tile(np.arange(1, K + 1), queries)
    return split_by_time(qs, datetime.fromtimestamp(START + DAYS * DAY, UTC), timedelta(days=1), 0.15)


def peak_mb() -> float:
    """This process's peak resident memory: VmHWM, which a process started by exec does not inherit (ru_maxrss does:
    Dask's spawned workers would report the client's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(engine: str, rows: int, rounds: int, workers: int) -> dict[str, Any]:
    """In this (child) process: one engine on one size."""
    configure_logging(stream=None)
    split = window(rows)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp), num_boost_round=rounds, early_stopping_rounds=rounds, debias="none",
                            engine=engine, dask_workers=workers)
        worker_mb: list[float] = []
        started = time.perf_counter()
        if engine == "dask":
            from distributed import Client, LocalCluster

            with LocalCluster(n_workers=workers, threads_per_worker=max(1, settings.num_threads // workers),
                              processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
                on_cluster = settings.model_copy(update={"dask_scheduler_address": cluster.scheduler_address})
                started = time.perf_counter()
                model = make_engine(on_cluster).fit(split, on_cluster, None, Path(tmp))
                seconds = time.perf_counter() - started
                worker_mb = sorted(client.run(peak_mb).values())
        else:
            model = make_engine(settings).fit(split, settings, None, Path(tmp))
            seconds = time.perf_counter() - started
    scores = LgbmScorer(model.model_text, NAMES).score(split.holdout.features)
    ndcg = ranking_metrics(scores, split.holdout.labels, split.holdout.qsizes, ks=(5,))[NDCG_AT_5]
    return {"engine": engine, "rows": rows, "train_rows": split.train.rows, "seconds": round(seconds, 1),
            "client_peak_mb": round(peak_mb()), "worker_peak_mb": [round(m) for m in worker_mb],
            "best_iteration": model.best_iteration, NDCG_AT_5: ndcg}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000, 10_000_000])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", nargs=2, metavar=("ENGINE", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.rounds, args.workers)))
        return
    results = []
    for rows in args.rows:
        for engine in ("local", "dask"):
            done = subprocess.run([sys.executable, "-m", "bench.scale", "--one", engine, str(rows),
                                   "--rounds", str(args.rounds), "--workers", str(args.workers)],
                                  capture_output=True, text=True, check=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            if not args.json:
                r = results[-1]
                print(f"{r['engine']:>5} {r['rows']:>11,} rows: train {r['seconds']:>7.1f} s, client peak "
                      f"{r['client_peak_mb']:>6,} MB, workers {r['worker_peak_mb']} MB, best iteration "
                      f"{r['best_iteration']}, holdout nDCG@5 {r[NDCG_AT_5]:.4f}", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
