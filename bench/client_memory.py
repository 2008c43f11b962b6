"""What the client of a daily run holds while the dataset is built, trained on and evaluated: LTR_ENGINE=dask on an
existing cluster (a LocalCluster of worker processes started here, reached by DASK_SCHEDULER_ADDRESS) against the
local engine, on the same simulated window, side by side in one run (issue 18: nothing pulls the window to the client).

    python -m bench.client_memory [--days 30] [--cases-per-day 1500] [--share-events 10000] [--workers 2]

Each engine runs in a fresh child process (`CLIENT`): a warm-up run on the window's first days, so that the libraries
and the allocators' pools are in place, then the day's run. The child resets its peak resident memory as preprocess
starts (`/proc/self/clear_refs`) and reads it as publish starts: what the client added to its resident memory while
the dataset was built, trained on and evaluated. The allocators are told to return freed memory at once
(`PROMPT_RELEASE`), so that the figure is what was held, not what an allocator kept for later. The window's dataset
is given as the bytes the local engine's arrays take (`ROW_BYTES` a row). tests/integration/test_dask.py runs the same.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

CLIENT = """
import json, sys
from datetime import date, timedelta
from pathlib import Path
from ltr_pipeline.config import Settings
from ltr_pipeline.logs import configure_logging
from ltr_pipeline.pipeline import run_daily

def status(key):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(key + ":"))

configure_logging(stream=None)
settings = Settings.model_validate_json(sys.argv[1])
day, days = date.fromisoformat(sys.argv[2]), settings.train_days
warm_up = settings.model_copy(update={"home": settings.home / "warm-up", "train_days": 3})
run_daily(day - timedelta(days=days - 3), warm_up)
seen = {}
def at(step):
    if step == "preprocess":
        seen["start"] = status("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on
    if step == "publish":
        seen["added"] = status("VmHWM") - seen["start"]
report = run_daily(day, settings, on_step=at)
print(json.dumps({**seen, "rows": report.data.dataset.impressions, "events": report.data.ingest.events,
                  "decision": report.decision}))
"""
PROMPT_RELEASE = {"_RJEM_MALLOC_CONF": "dirty_decay_ms:0,muzzy_decay_ms:0",  # polars' jemalloc
                  "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}  # glibc's: numpy's arrays
ROW_BYTES = 8 * 8 + 8 + 8 + 8 + 1  # a row of the local engine's dataset: 8 features, label, position, group, acted


def client_added(settings: Any, day: date) -> dict[str, Any]:
    """Run the daily cycle for `day` with these Settings in a child process: {"added": bytes the client added
    during preprocess, train and evaluate, "rows", "events", "decision"}."""
    done = subprocess.run([sys.executable, "-c", CLIENT, settings.model_dump_json(), day.isoformat()],
                          env=os.environ | PROMPT_RELEASE, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    from distributed import LocalCluster

    from ltr_pipeline.config import Settings
    from ltr_pipeline.scoring import WeightedSumScorer, default_weights
    from ltr_pipeline.simulate import SimConfig, simulate_days

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--cases-per-day", type=int, default=1500)
    parser.add_argument("--share-events", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    start = date(2026, 10, 1)
    with tempfile.TemporaryDirectory(prefix="ltr-client-memory-") as tmp:
        base = Settings(home=Path(tmp), events_dir=Path(tmp) / "events", train_days=args.days, num_threads=1,
                        share_events=args.share_events)
        names = base.feature_names
        simulate_days(SimConfig(cases_per_day=args.cases_per_day), start, args.days, base.events_path,
                      lambda _: (WeightedSumScorer(default_weights(names), names), None))
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster:
            for engine in ("dask", "local"):
                run = base.model_copy(update={"home": Path(tmp) / engine, "engine": engine,
                                              "dask_scheduler_address": cluster.scheduler_address})
                r = client_added(run, start + timedelta(days=args.days - 1))
                print(f"{engine:>5}: {r['events']:,} events, {r['rows']:,} rows (dataset "
                      f"{r['rows'] * ROW_BYTES / 2**20:,.1f} MB): the client added {r['added'] / 2**20:,.1f} MB "
                      f"during preprocess, train and evaluate", flush=True)


if __name__ == "__main__":
    main()
