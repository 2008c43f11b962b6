"""Exploration, propensity estimation and the debiased comparison: checked against what the simulator knows."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from ltr_pipeline.counterfactual.estimators import compare, ips_gains
from ltr_pipeline.counterfactual.explore import explore
from ltr_pipeline.counterfactual.propensity import estimate_propensities
from ltr_pipeline.record import Propensities


def test_exploration_swaps_one_adjacent_pair_with_the_stated_probability() -> None:
    rng = random.Random(1)
    order = list(range(10))
    shown = [explore(order, 0.25, rng) for _ in range(8000)]
    explored = [s for s in shown if s[1]]
    assert 0.22 < len(explored) / len(shown) < 0.28
    assert all(s[0] == order and s[2] == pytest.approx(0.75) for s in shown if not s[1])
    pairs: Counter[int] = Counter()
    for got, _, probability in explored:
        assert probability == pytest.approx(0.25 / 9)
        moved = [i for i in range(10) if got[i] != i]
        assert len(moved) == 2 and moved[1] == moved[0] + 1 and sorted(got) == order
        pairs[moved[0]] += 1
    assert len(pairs) == 9 and min(pairs.values()) > len(explored) / 9 * 0.7  # every pair, about evenly
    assert explore(order, 0.0, rng) == (order, False, 1.0)
    assert explore([3], 1.0, rng) == ([3], False, 1.0)


def _logs(seed: int, queries: int, curve: np.ndarray) -> tuple[np.ndarray, ...]:
    """Clicks from a position-based model over rankings that put relevant candidates first (as a good ranker does)."""
    rng = np.random.default_rng(seed)
    k = len(curve)
    x = rng.random((queries * k, 3))
    relevance = 0.1 + 0.8 / (1 + np.exp(-(4 * x[:, 0] + 2 * x[:, 1] - 3)))
    positions = np.empty(queries * k, dtype=np.int64)
    for q in range(queries):
        lo = q * k
        noisy = relevance[lo:lo + k] + rng.normal(0, 0.2, k)  # a ranker that is good, not perfect
        positions[lo:lo + k][np.argsort(-noisy)] = np.arange(1, k + 1)
    clicked = rng.random(len(x)) < curve[positions - 1] * relevance
    return positions, clicked, x, np.full(queries, k, dtype=np.int64)


def test_propensities_recover_the_examination_curve() -> None:
    curve = 1 / np.arange(1, 11) ** 0.7
    positions, clicked, x, qsizes = _logs(0, 8000, curve)
    naive = np.bincount(positions, weights=clicked)[1:] / np.bincount(positions)[1:]
    found = estimate_propensities(positions, clicked, x, qsizes, max_position=10, threads=1)
    assert found is not None and found.positions == list(range(1, 11))
    estimate = np.asarray(found.examination)
    np.testing.assert_allclose(estimate, curve, rtol=0.1)
    assert abs(naive[-1] / naive[0] - curve[-1]) > 3 * abs(estimate[-1] - curve[-1])  # better than click rates
    assert all(lo <= e <= hi for lo, e, hi in zip(found.low, found.examination, found.high, strict=True))
    assert found.high[-1] - found.low[-1] < 0.15


def test_too_few_clicks_give_no_propensities() -> None:
    positions, clicked, x, qsizes = _logs(1, 30, 1 / np.arange(1, 11))
    assert estimate_propensities(positions, clicked, x, qsizes) is None


PROPENSITIES = Propensities(method="given", positions=[1, 2, 3], examination=[1.0, 0.5, 0.25], low=[1, 0.5, 0.25],
                            high=[1, 0.5, 0.25], impressions=[1, 1, 1], clicks=[1, 1, 1])


def test_ips_gains_and_the_paired_comparison_by_hand() -> None:
    labels = np.array([0, 1, 2, 0, 0, 3])
    positions = np.array([1, 2, 3, 1, 2, 3])
    gains = ips_gains(labels, positions, PROPENSITIES)
    np.testing.assert_allclose(gains, [0, 2, 12, 0, 0, 28])  # (2^y - 1) / theta
    qsizes = np.array([3, 3])
    logged = np.array([3.0, 2, 1, 3, 2, 1])  # the logging ranker's order
    better = np.array([1.0, 2, 3, 1, 2, 3])  # puts the clicked ones first
    result = compare(better, logged, gains, qsizes, k=2)
    d = 1 / np.log2(3)
    ideal = (12 + 2 * d) + 28
    assert result.queries == 2
    assert result.new == pytest.approx((12 + 2 * d + 28) / ideal)
    assert result.old == pytest.approx((0 + 2 * d + 0) / ideal)
    assert result.new is not None and result.old is not None and result.difference is not None
    assert result.difference == pytest.approx(result.new - result.old)
    assert result.low is not None and result.high is not None and result.low <= result.difference <= result.high
    assert compare(better, logged, np.zeros(6), qsizes).queries == 0  # nothing graded: nothing to compare


def test_the_debiased_comparison_finds_the_truly_better_ranker_where_logged_clicks_favour_the_logger() -> None:
    rng = np.random.default_rng(5)
    k, queries = 10, 4000
    curve = 1 / np.arange(1, k + 1)
    truth = rng.random(queries * k)
    logger = truth + rng.normal(0, 0.6, len(truth))  # the champion that ranked the logs
    challenger = truth + rng.normal(0, 0.4, len(truth))  # truly better
    positions = np.empty(len(truth), dtype=np.int64)
    for q in range(queries):
        lo = q * k
        positions[lo:lo + k][np.argsort(-logger[lo:lo + k])] = np.arange(1, k + 1)
    labels = (rng.random(len(truth)) < curve[positions - 1] * truth).astype(np.int64)
    qsizes = np.full(queries, k)
    from ltr_pipeline.measures import NDCG_AT_5, ranking_metrics

    logged_new = ranking_metrics(challenger, labels, qsizes)[NDCG_AT_5]
    logged_old = ranking_metrics(logger, labels, qsizes)[NDCG_AT_5]
    assert logged_new is not None and logged_old is not None and logged_new < logged_old  # logs favour the logger
    props = Propensities(method="true", positions=list(range(1, k + 1)), examination=curve.tolist(),
                         low=curve.tolist(), high=curve.tolist(), impressions=[1] * k, clicks=[1] * k)
    result = compare(challenger, logger, ips_gains(labels, positions, props), qsizes)
    assert result.low is not None and result.low > 0  # debiased: the challenger is better, and surely so
