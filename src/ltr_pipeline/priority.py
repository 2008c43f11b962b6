"""Background work at idle CPU priority: reloads, compiles and shadow scoring must never take a core from a request.

On Linux the scheduling policy belongs to a thread, so the service's background threads (and the compiler's child
process) call `background_priority()` first and from then on run only on CPU time nothing else wants. Measured with
`bench/reload_under_load.py` (BENCHMARKS.md): loading a new version at normal priority on 2 cores slowed the requests
that arrived meanwhile.

The price: idle work waits as long as other processes keep every core busy. `LTR_BACKGROUND_PRIORITY=normal` keeps
the caller's priority instead; the test suite uses it, so that it passes beside a CPU hog.
"""

from __future__ import annotations

import os
from typing import Literal

Priority = Literal["idle", "normal"]


def background_priority(level: Priority) -> bool:
    """Move the calling thread to SCHED_IDLE when `level` is "idle". False when the priority was left as it was
    (normal, not Linux, or refused)."""
    if level != "idle":
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        return False
    return True
