"""The compiler's child process: `python -m ltr_pipeline.compile_child MODEL.txt OUT.bin`.

It lowers its own CPU priority before importing anything: importing lleaves and LLVM costs about as much CPU as a
small compile, and at normal priority that alone slowed the server's requests after each reload. The server starts
it without `preexec_fn`, which would make Python fork the whole server (a stall of several ms).
"""

import os
import sys

from ltr_pipeline.background import idle_priority

# No inlining: 4x quicker to compile (2.4 s instead of 9.4 s for 300 trees here) and no slower to predict at
# 50 candidates (BENCHMARKS.md); part of the cache key.
OPTIONS = {"finline": False}


def main(argv: list[str]) -> int:
    idle_priority()
    os.nice(19)  # as well, for systems without SCHED_IDLE
    import lleaves  # after the priority change, on purpose

    model_file, out = argv
    lleaves.Model(model_file=model_file).compile(cache=out, **OPTIONS)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
