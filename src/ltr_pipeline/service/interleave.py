"""Interleaved serving.

`RivalScorer` scores the challenger of an interleaved ranking on a thread of its own while the request's thread
scores the live model. Both forests are native code that releases the GIL, so on two cores the two run at once, and
each core keeps its own forest's code in its own L2 cache: one after the other, a forest's code (about 1.5 MB here)
evicts the other's, and the pair costs 9-18% more than the two alone. Side by side, interleaving adds a fifth (200
candidates) to four fifths (20) of the challenger's scoring time to a ranking, where one after the other it adds all
of it and more (BENCHMARKS.md). When every core is busy the thread does not start in time, and the request scores
the challenger itself once it has scored the live model, as it would without the thread; with one usable core there
is no thread.

`TeamMemory` keeps which team showed each candidate of a recent interleaved ranking, so that feedback arriving at
`/ltr/feedback` is credited live (`ltr_interleaving_credit_total`). The pipeline computes the verdict itself, from
the events (dataset.interleaving_verdicts); this memory only feeds the live counters. It keeps one entry per case (a
ranking costs one insert on the hot path; a feedback, a scan of its case's few candidates) and forgets the oldest
cases first once it holds MAX_CASES."""

from __future__ import annotations

import os
import queue
import threading
from collections import OrderedDict

import numpy as np

from ltr_pipeline.scoring import Scorer

MAX_CASES = 20_000
Outcome = np.ndarray | Exception  # the challenger's scores, or why it has none


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Pending:
    """A challenger's scoring, handed to the thread: whoever claims it first scores it."""

    __slots__ = ("_claimed", "_outcome", "matrix", "scorer")

    def __init__(self, scorer: Scorer, matrix: np.ndarray) -> None:
        self.scorer, self.matrix = scorer, matrix
        self._claimed, self._outcome = threading.Lock(), queue.SimpleQueue[Outcome]()

    def claim(self) -> bool:
        """True for the first caller only: the lock is taken once and never released."""
        return self._claimed.acquire(blocking=False)

    def run(self) -> None:
        self._outcome.put(_score(self.scorer, self.matrix))

    def result(self) -> Outcome:
        """The scores, or why there are none. If the thread has not started on them by now, no core was free to run
        it beside the request: the request scores them itself rather than wait for the thread's turn."""
        return _score(self.scorer, self.matrix) if self.claim() else self._outcome.get()


class RivalScorer:
    """`submit(scorer, matrix)` hands the challenger's scoring to one thread, at the requests' own priority, and
    returns it as `Pending`; the request scores the live model, then takes the `result()`. Until `start` (and after
    `close`, or with one usable core) nothing is handed over, and `result()` scores in line."""

    def __init__(self, parallel: bool | None = None) -> None:
        self.parallel = usable_cores() > 1 if parallel is None else parallel
        self._jobs: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ltr-interleave", daemon=True)
        self._open = False

    def start(self) -> None:
        if self.parallel:
            self._thread.start()
            self._open = True

    def close(self) -> None:
        if self._open:
            self._open = False
            self._jobs.put(None)  # a job put after this one is never claimed by the thread: its request scores it
            self._thread.join(timeout=10)

    def submit(self, scorer: Scorer, matrix: np.ndarray) -> Pending:
        pending = Pending(scorer, matrix)
        if self._open:
            self._jobs.put(pending)
        return pending

    def _run(self) -> None:
        while (pending := self._jobs.get()) is not None:
            if pending.claim():
                pending.run()


def _score(scorer: Scorer, matrix: np.ndarray) -> Outcome:
    try:
        return scorer.score(matrix)
    except Exception as exc:  # handed to the request, which logs it and shows the live order
        return exc


class TeamMemory:
    def __init__(self, capacity: int = MAX_CASES) -> None:
        self.capacity = capacity
        self._cases: OrderedDict[str, tuple[list[str], list[str]]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, case_id: str, lawyer_ids: list[str], teams: list[str]) -> None:
        """`lawyer_ids` in the order shown, `teams` the team of each place."""
        with self._lock:
            self._cases[case_id] = (lawyer_ids, teams)
            if len(self._cases) > self.capacity:
                self._cases.popitem(last=False)

    def team(self, case_id: str, lawyer_id: str) -> str | None:
        with self._lock:
            shown = self._cases.get(case_id)
        if shown is None or lawyer_id not in shown[0]:
            return None
        return shown[1][shown[0].index(lawyer_id)]
