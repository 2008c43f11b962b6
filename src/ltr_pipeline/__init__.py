"""ltr-pipeline: a self-feeding Learning-to-Rank pipeline."""

import os

__version__ = "0.1.0"

# LightGBM's OpenMP threads (libgomp) busy-wait about 300,000 spins at each barrier before they sleep. When other
# processes keep the cores busy, a spinning thread holds a core its partner needs, and training with 2 threads beside
# two CPU hogs took 5-15x longer than with 1 thread; with 1,000 spins it took as long as on 1 thread, and on a quiet
# machine as long as before (`python -m bench.busy_training`, BENCHMARKS.md). libgomp reads the variable when LightGBM
# loads, so it is set when the package is imported, before anything imports LightGBM. Set it yourself to override.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
