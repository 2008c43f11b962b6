"""What a ranker would score on logged queries, without the logging ranker's position bias.

A candidate shown at position p and graded y (gain 2^y - 1) is examined with probability theta_p, so gain / theta_p
is an unbiased estimate of the gain it would bring wherever it was examined (inverse propensity scoring). A ranker's
DCG@k on a query is then estimated by placing those gains where the ranker would put each candidate. The estimate
of nDCG@k is self-normalised: the sum of the ranker's DCG over the queries divided by the sum of the best DCG the
same gains allow, so two rankers compared on the same queries share one denominator and their difference reads in
nDCG@k units.

The comparison of two rankers is paired: both are scored on the same queries with the same gains, and the bounds of
their difference are one-sided 95% bounds from a percentile bootstrap over queries (together, a 90% interval): the
gate's question is one-sided, "is the challenger worse by more than the tolerance?". Queries without a graded action
estimate 0 for every ranker and are left out of the count of queries that inform the comparison.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ltr_pipeline.measures import gain, offsets, rank_order
from ltr_pipeline.record import Comparison, Propensities

BOOTSTRAP = 1000


def ips_gains(labels: npt.ArrayLike, positions: npt.NDArray[np.int64], propensities: Propensities
              ) -> npt.NDArray[np.float64]:
    """Each impression's gain 2^label - 1 divided by the examination probability of the position it was shown at."""
    return gain(labels) / propensities.at(positions)


def _dcg(gains: npt.NDArray[np.float64], scores: npt.NDArray[np.float64], qsizes: npt.NDArray[np.int64],
         k: int) -> npt.NDArray[np.float64]:
    """Per query: the DCG@k of the order `scores` gives to candidates carrying `gains`."""
    bounds = offsets(qsizes)
    out = np.empty(len(qsizes))
    for q in range(len(qsizes)):
        lo, hi = bounds[q], bounds[q + 1]
        top = gains[lo:hi][rank_order(scores[lo:hi])][:k]
        out[q] = float(np.sum(top / np.log2(np.arange(2, len(top) + 2))))
    return out


def compare(
    scores_new: npt.NDArray[np.float64], scores_old: npt.NDArray[np.float64], gains: npt.NDArray[np.float64],
    qsizes: npt.NDArray[np.int64], k: int = 5, seed: int = 0, estimator: str = "snips",
) -> Comparison:
    """Self-normalised IPS nDCG@k of two rankers on the same logged queries, and their paired difference."""
    new, old = _dcg(gains, scores_new, qsizes, k), _dcg(gains, scores_old, qsizes, k)
    ideal = _dcg(gains, gains, qsizes, k)
    informative = ideal > 0
    n = int(informative.sum())
    if n == 0:
        return Comparison(estimator=estimator, queries=0, new=None, old=None, difference=None, low=None, high=None)
    new, old, ideal = new[informative], old[informative], ideal[informative]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(BOOTSTRAP, n))
    diffs = (new[draws].sum(axis=1) - old[draws].sum(axis=1)) / ideal[draws].sum(axis=1)
    low, high = np.percentile(diffs, [5.0, 95.0])
    total = ideal.sum()
    return Comparison(estimator=estimator, queries=n, new=float(new.sum() / total), old=float(old.sum() / total),
                      difference=float((new.sum() - old.sum()) / total), low=float(low), high=float(high))
