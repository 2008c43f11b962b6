"""LightGBM's training time on a quiet machine and beside CPU hogs, with libgomp's default spin count and with the
GOMP_SPINCOUNT that `import ltr_pipeline` sets (its __init__.py says why).

    python -m bench.busy_training [--hogs 2] [--repeats 3] [--rows 30000]

Each figure is a fresh child process (the spin count is read when LightGBM loads) training a 100-round lambdarank
model three times on a synthetic window; the median of `--repeats` children. The hogs are `while True: pass`
processes, one per core unless told.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

CHILD = """
import time, numpy as np, lightgbm as lgb
rng = np.random.default_rng(0)
rows = {rows}
X, y = rng.normal(size=(rows, 8)), rng.integers(0, 4, rows)
began = time.perf_counter()
for _ in range(3):
    lgb.train({{"objective": "lambdarank", "num_threads": {threads}, "verbose": -1}},
              lgb.Dataset(X, y, group=[10] * (rows // 10)), 100)
print(time.perf_counter() - began)
"""

VARIANTS = {"2 threads, libgomp's default spin count": (2, None), "2 threads, GOMP_SPINCOUNT=1000": (2, "1000"),
            "1 thread": (1, None)}


def seconds(rows: int, threads: int, spincount: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"} | ({"GOMP_SPINCOUNT": spincount}
                                                                          if spincount else {})
    done = subprocess.run([sys.executable, "-c", CHILD.format(rows=rows, threads=threads)], env=env, check=True,
                          capture_output=True, text=True)
    return float(done.stdout)


def table(rows: int, repeats: int) -> dict[str, float]:
    return {name: statistics.median(seconds(rows, *variant) for _ in range(repeats))
            for name, variant in VARIANTS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=30_000)
    args = parser.parse_args()
    quiet = table(args.rows, args.repeats)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
    try:
        busy = table(args.rows, args.repeats)
    finally:
        for hog in hogs:
            hog.kill()
    print(f"| training 3 x 100 rounds, {args.rows:,} rows | quiet | beside {args.hogs} CPU hogs |\n|---|---:|---:|")
    for name in VARIANTS:
        print(f"| {name} | {quiet[name]:.2f} s | {busy[name]:.2f} s |")


if __name__ == "__main__":
    main()
