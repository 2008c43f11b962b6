"""Interleaved serving: which team showed each candidate of a recent interleaved ranking, so that feedback arriving
at `/ltr/feedback` is credited live (`ltr_interleaving_credit_total`). The pipeline computes the verdict itself, from
the events (dataset.interleaving_verdicts); this memory only feeds the live counters. It keeps one entry per case (a
ranking costs one insert on the hot path; a feedback, a scan of its case's few candidates) and forgets the oldest
cases first once it holds MAX_CASES."""

from __future__ import annotations

import threading
from collections import OrderedDict

MAX_CASES = 20_000


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
