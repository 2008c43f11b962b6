"""Background work at idle CPU priority: reloads, compiles and shadow scoring must never take a core from a request.

On Linux the scheduling policy belongs to a thread, so the service's background threads (and the compiler's child
process) call `idle_priority()` first and from then on run only on CPU time nothing else wants. Measured with
`bench/reload_under_load.py` (BENCHMARKS.md): loading a new version at normal priority on 2 cores slowed the requests
that arrived meanwhile.
"""

from __future__ import annotations

import os


def idle_priority() -> bool:
    """Move the calling thread to SCHED_IDLE. False where that is not possible (not Linux, or refused)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        return False
    return True
