"""Peak resident memory of the daily run, this working tree against an earlier commit, side by side in one run.

    python -m bench.run_memory [--baseline c9f7efa] [--days 30] [--cases-per-day 3000] [--repeats 2]

Simulates the window once (`ltr simulate`, ranked by legacy) into a temporary folder, then runs the daily cycle for
its last day (`pipeline.run_daily`, local engine, file events, a fresh home each time) in fresh child processes,
alternating the baseline (a git worktree of `--baseline` on this venv; c9f7efa is the code before issue 18) and the
working tree. Each child reports its peak resident memory (`VmHWM`) as each step starts and at the end; the table
gives the medians, the peak per million events and the ratio of the two.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
from datetime import date
from pathlib import Path
from ltr_pipeline.config import Settings
from ltr_pipeline.logs import configure_logging
from ltr_pipeline.pipeline import run_daily

def peak():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) // 1024 for line in fh if line.startswith("VmHWM"))

configure_logging(stream=None)
steps, began = {}, time.monotonic()
def at(step):
    steps[step] = {"peak_mb": peak(), "at_s": round(time.monotonic() - began, 1)}
home, events, day = sys.argv[1:4]
run_daily(date.fromisoformat(day), Settings(home=Path(home), events_dir=Path(events)), on_step=at)
at("end")
print(json.dumps(steps))
"""


def run(src: Path, home: Path, events: Path, day: str) -> dict[str, dict[str, float]]:
    # Both with the OpenMP spin that `import ltr_pipeline` now sets, so that run times compare too (src/__init__.py).
    env = os.environ | {"PYTHONPATH": str(src), "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT", "1000")}
    done = subprocess.run([sys.executable, "-c", CHILD, str(home), str(events), day], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="c9f7efa")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--cases-per-day", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--start", default="2026-10-01")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ltr-run-memory-") as tmp:
        root = Path(tmp)
        subprocess.run([sys.executable, "-m", "ltr_pipeline.cli", "simulate", "--home", str(root / "sim"),
                        "--days", str(args.days), "--start", args.start, "--cases-per-day",
                        str(args.cases_per_day), "--json"], check=True, capture_output=True)
        events = root / "sim" / "events"
        count = sum(p.read_bytes().count(b"\n") for p in events.rglob("*.jsonl"))
        last = (date.fromisoformat(args.start) + timedelta(days=args.days - 1)).isoformat()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(root / "baseline"),
                        args.baseline], check=True, capture_output=True)
        try:
            variants = {f"baseline {args.baseline}": root / "baseline" / "src", "this tree": ROOT / "src"}
            results: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in variants}
            for i in range(args.repeats):
                for name, src in variants.items():
                    results[name].append(run(src, root / f"home-{i}-{len(results[name])}-{name[:4]}", events, last))
                    print(f"{name}, run {i + 1}: peak {results[name][-1]['end']['peak_mb']} MB", file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(root / "baseline")],
                           check=False, capture_output=True)
    print(f"ltr run on {count:,} events ({args.days} days x {args.cases_per_day} cases), medians of {args.repeats}:")
    print("| code | peak by the start of each step (MB) | run's peak | per million events | run time |")
    print("|---|---|---:|---:|---:|")
    medians = {}
    for name, runs in results.items():
        steps = [s for s in runs[0] if s != "end"]
        by_step = ", ".join(f"{s} {statistics.median(r[s]['peak_mb'] for r in runs):,.0f}" for s in steps[1:])
        medians[name] = statistics.median(r["end"]["peak_mb"] for r in runs)
        seconds = statistics.median(r["end"]["at_s"] for r in runs)
        print(f"| {name} | {by_step} | {medians[name]:,.0f} MB | {medians[name] / count * 1e6:,.0f} MB | "
              f"{seconds:.0f} s |")
    base, new = medians.values()
    print(f"\nthis tree's peak is {base / new:.2f}x lower than the baseline's")


if __name__ == "__main__":
    main()
