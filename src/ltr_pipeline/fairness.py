"""Fairness-aware re-ranking that balances exposure over time (amortised fairness, after Biega et al. 2018 and
Singh & Joachims 2018).

The fairness gap compares groups' mean exposure per appearance across many queries, so it cannot be closed one query
at a time: when one group's candidates always score a little higher, any per-query rule puts them first every time.
`ExposureBalancer` keeps each group's running exposure (weights 1/log2(1 + rank) for the top 5, as the gap is
measured) and, for each new query, raises the scores of candidates from groups that are behind:

    adjusted = score + strength * BOOST * spread * (max_mean - mean_g) / max_mean

where `spread` is the query's score range and `mean_g` the group's mean exposure so far. strength 0 is the model's
own order; higher strengths trade ranking quality for a smaller gap (measured in bench/fairness_tradeoff.py).
Candidates without a group are never boosted. Evaluation replays the holdout's queries in time order through a fresh
balancer, and the service keeps one (per process) across its requests, so the gate judges what is served.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ltr_pipeline.measures import Groups, exposure_weights, offsets, rank_order

BOOST = 10.0


class ExposureBalancer:
    def __init__(self, strength: float, decay: float = 1.0) -> None:
        """`decay` < 1 makes old queries count less (the service uses it to follow drift)."""
        self.strength, self.decay = strength, decay
        self.exposure: dict[str, float] = {}
        self.appearances: dict[str, float] = {}
        self._lock = threading.Lock()

    def order(self, scores: npt.ArrayLike, groups: Groups) -> npt.NDArray[np.int64]:
        """Indices of one query's candidates, best first; records the exposure they get."""
        s = np.asarray(scores, dtype=np.float64)
        if self.strength <= 0 or all(g is None for g in groups):
            return rank_order(s)
        with self._lock:
            means = {g: self.exposure[g] / n for g, n in self.appearances.items() if n > 0}
            top = max(means.values(), default=0.0)
            spread = float(np.ptp(s)) if len(s) > 1 else 0.0
            if top > 0 and spread > 0:
                deficit = np.array([(top - means.get(g, top)) / top if g is not None else 0.0 for g in groups])
                s = s + self.strength * BOOST * spread * deficit
            order = rank_order(s)
            weights = exposure_weights(len(order))
            for g in self.exposure:
                self.exposure[g] *= self.decay
                self.appearances[g] *= self.decay
            for weight, idx in zip(weights, order.tolist(), strict=True):
                g = groups[idx]
                if g is not None:
                    self.exposure[g] = self.exposure.get(g, 0.0) + float(weight)
                    self.appearances[g] = self.appearances.get(g, 0.0) + 1.0
            return order


def rerank_scores(
    scores: npt.ArrayLike, groups: Groups, qsizes: Sequence[int] | npt.NDArray[np.int64],
    strength: float,
) -> npt.NDArray[np.float64]:
    """Scores whose order within each query is what a fresh balancer serves, replaying the queries in order."""
    s = np.asarray(scores, dtype=np.float64)
    if strength <= 0:
        return s
    balancer = ExposureBalancer(strength)
    out = np.empty_like(s)
    bounds = offsets(qsizes)
    for i in range(len(bounds) - 1):
        lo, hi = bounds[i], bounds[i + 1]
        order = balancer.order(s[lo:hi], groups[lo:hi])
        out[lo + order] = np.arange(hi - lo, 0, -1, dtype=np.float64)  # the first gets the highest
    return out
