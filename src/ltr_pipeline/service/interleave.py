"""Interleaved serving: which team showed each candidate of a recent interleaved ranking, so that feedback arriving
at `/ltr/feedback` is credited live (`ltr_interleaving_credit_total`). The pipeline computes the verdict itself, from
the events (dataset.interleaving_verdicts); this memory only feeds the live counters, and forgets the oldest
rankings first once it holds MAX_PAIRS candidates."""

from __future__ import annotations

import threading
from collections import OrderedDict

MAX_PAIRS = 100_000


class TeamMemory:
    def __init__(self, capacity: int = MAX_PAIRS) -> None:
        self.capacity = capacity
        self._teams: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, case_id: str, lawyer_ids: list[str], teams: list[str]) -> None:
        """`lawyer_ids` in the order shown, `teams` the team of each place."""
        with self._lock:
            for lawyer, team in zip(lawyer_ids, teams, strict=True):
                self._teams[(case_id, lawyer)] = team
            while len(self._teams) > self.capacity:
                self._teams.popitem(last=False)

    def team(self, case_id: str, lawyer_id: str) -> str | None:
        with self._lock:
            return self._teams.get((case_id, lawyer_id))
