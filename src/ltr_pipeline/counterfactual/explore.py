"""Exploration: a share of rankings is shown with one adjacent pair swapped at random.

The ranker's order is kept for a share 1 - f of rankings; the rest (f, `LTR_EXPLORE_FRACTION`) swap one adjacent pair
chosen uniformly among the n - 1, so each explored order is shown with probability f / (n - 1). A swap moves a
candidate by one place, so it costs little ranking quality (BENCHMARKS.md measures it) while showing the same
candidates at neighbouring positions, which is what separates position from relevance in the logs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def explore(order: Sequence[int], fraction: float, rng: random.Random) -> tuple[list[int], bool, float]:
    """(order shown, explored?, probability of showing that order) for a ranker's `order` (best first)."""
    shown = list(order)
    n = len(shown)
    if n < 2 or fraction <= 0:
        return shown, False, 1.0
    if rng.random() >= fraction:
        return shown, False, 1.0 - fraction
    i = rng.randrange(n - 1)
    shown[i], shown[i + 1] = shown[i + 1], shown[i]
    return shown, True, fraction / (n - 1)
