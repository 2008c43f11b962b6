"""The compiler's child process: `python -m ltr_pipeline.compile_child MODEL.txt OUT.bin idle|normal`.

It lowers its own CPU priority before importing anything: importing lleaves and LLVM costs about as much CPU as a
small compile, and at normal priority that alone slowed the server's requests after each reload. The server starts
it without `preexec_fn`, which would make Python fork the whole server (a stall of several ms).

Before it reports success it loads the object it wrote, as the server will, and predicts a few rows with it: a
compiled object that crashes when run crashes this child, never the server.
"""

import os
import sys
from typing import Any

from ltr_pipeline.errors import ModelLoadError
from ltr_pipeline.priority import background_priority

# Models up to this size compile with LLVM's small code model: constants are read relative to the instruction
# pointer instead of through 64-bit addresses, 12% quicker to predict here (184 vs 210 us for 50 rows of 300 trees,
# BENCHMARKS.md). It needs code and data within 2 GB of each other, which lleaves warns very large forests break;
# 64 MB of model text compiles to about 90 MB.
SMALL_CODE_MODEL_MAX_BYTES = 64 << 20


def options(model_bytes: int) -> dict[str, Any]:
    """lleaves' compile options for a model text of this size; part of the cache key.

    No inlining: 4x quicker to compile (2.4 s instead of 9.4 s for 300 trees here) and no slower to predict.
    """
    return {"finline": False, "fcodemodel": "small" if model_bytes <= SMALL_CODE_MODEL_MAX_BYTES else "large"}


def main(argv: list[str]) -> int:
    model_file, out, priority = argv
    if priority == "idle":
        background_priority("idle")
        os.nice(19)  # as well, for systems without SCHED_IDLE
    import lleaves  # after the priority change, on purpose
    import numpy as np

    lleaves.Model(model_file=model_file).compile(cache=out, **options(os.path.getsize(model_file)))
    loaded = lleaves.Model(model_file=model_file)
    loaded.compile(cache=out)  # the file exists now: this loads it, as the server does
    rows = np.random.default_rng(0).random((16, loaded.num_feature()))
    rows[::2, ::3] = np.nan
    if not np.isfinite(loaded.predict(rows, n_jobs=1)).all():
        # Exit 1 with the traceback on stderr, which `compile_model` puts in its ModelLoadError.
        raise ModelLoadError("the compiled model predicts non-finite scores")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
