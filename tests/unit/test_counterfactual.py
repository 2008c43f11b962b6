"""Exploration, propensity estimation and the debiased comparison: checked against what the simulator knows."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ltr_pipeline.config import Settings
from ltr_pipeline.counterfactual.estimators import compare, ips_gains
from ltr_pipeline.counterfactual.explore import explore
from ltr_pipeline.counterfactual.propensity import estimate_propensities
from ltr_pipeline.dataset import QuerySet
from ltr_pipeline.record import Propensities
from ltr_pipeline.scoring import LgbmScorer
from ltr_pipeline.train import train


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


def _logs(seed: int, queries: int, curve: np.ndarray, decline: float = 0.0) -> tuple[np.ndarray, ...]:
    """Clicks from a position-based model over rankings that put relevant candidates first (as a good ranker does);
    examined candidates left unclicked are declined with probability `decline`."""
    rng = np.random.default_rng(seed)
    k = len(curve)
    x = rng.random((queries * k, 3))
    relevance = 0.1 + 0.8 / (1 + np.exp(-(4 * x[:, 0] + 2 * x[:, 1] - 3)))
    positions = np.empty(queries * k, dtype=np.int64)
    for q in range(queries):
        lo = q * k
        noisy = relevance[lo:lo + k] + rng.normal(0, 0.2, k)  # a ranker that is good, not perfect
        positions[lo:lo + k][np.argsort(-noisy)] = np.arange(1, k + 1)
    examined = rng.random(len(x)) < curve[positions - 1]
    clicked = examined & (rng.random(len(x)) < relevance)
    declined = examined & ~clicked & (rng.random(len(x)) < decline)
    return positions, clicked, x, np.full(queries, k, dtype=np.int64), clicked | declined


def test_propensities_recover_the_examination_curve() -> None:
    curve = 1 / np.arange(1, 11) ** 0.7
    positions, clicked, x, qsizes, _ = _logs(0, 8000, curve)
    naive = np.bincount(positions, weights=clicked)[1:] / np.bincount(positions)[1:]
    found = estimate_propensities(positions, clicked, x, qsizes, max_position=10, threads=1)
    assert found is not None and found.positions == list(range(1, 11))
    estimate = np.asarray(found.examination)
    np.testing.assert_allclose(estimate, curve, rtol=0.1)
    assert abs(naive[-1] / naive[0] - curve[-1]) > 3 * abs(estimate[-1] - curve[-1])  # better than click rates
    assert all(lo <= e <= hi for lo, e, hi in zip(found.low, found.examination, found.high, strict=True))
    assert found.high[-1] - found.low[-1] < 0.15


def test_declines_pin_the_examination_of_positions_that_get_few_clicks() -> None:
    """A good ranker leaves few clicks at depth; a decline says the client examined the candidate all the same."""
    curve = 1 / np.arange(1, 11) ** 0.7
    positions, clicked, x, qsizes, acted = _logs(0, 4000, curve, decline=0.3)
    alone = estimate_propensities(positions, clicked, x, qsizes, max_position=10, threads=1)
    both = estimate_propensities(positions, clicked, x, qsizes, acted=acted, max_position=10, threads=1)
    assert alone is not None and both is not None and both.declines == int((acted & ~clicked).sum()) > 0
    error = {name: np.abs(np.asarray(p.examination) / curve - 1) for name, p in (("alone", alone), ("both", both))}
    assert error["both"][5:].mean() < 0.6 * error["alone"][5:].mean()  # positions 6-10
    assert error["both"].max() < 0.12


def test_too_few_clicks_give_no_propensities() -> None:
    positions, clicked, x, qsizes, _ = _logs(1, 30, 1 / np.arange(1, 11))
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


def test_exposure_training_learns_the_gain_once_examined_not_the_logged_click_rate(tmp_path: Path) -> None:
    """LTR_DEBIAS=exposure: a Poisson model with log(examination) as offset predicts what a candidate would bring if
    examined. Fitted without the offset, the same model learns the position-depressed click rate instead."""
    curve = 1 / np.arange(1, 11) ** 0.7
    positions, clicked, x, qsizes, acted = _logs(3, 3000, curve)
    relevance = 0.1 + 0.8 / (1 + np.exp(-(4 * x[:, 0] + 2 * x[:, 1] - 3)))  # as _logs draws it
    qs = QuerySet(x, clicked.astype(np.int64), qsizes, np.arange(len(qsizes)), [None] * len(x), positions,
                  ["x0", "x1", "x2"], acted)
    cut = int(len(qsizes) * 0.85)
    train_set, valid_set = qs.take(np.arange(cut)), qs.take(np.arange(cut, len(qsizes)))
    settings = Settings(home=tmp_path, debias="exposure", num_threads=1)
    flat = Propensities(method="none", positions=[1], examination=[1.0], low=[1.0], high=[1.0], impressions=[1],
                        clicks=[1])
    true = Propensities(method="true", positions=list(range(1, 11)), examination=curve.tolist(),
                        low=curve.tolist(), high=curve.tolist(), impressions=[1] * 10, clicks=[1] * 10)
    model = train(train_set, valid_set, settings, propensities=true)
    assert model.params["debias"] == "exposure" and model.params["objective"] == "poisson"
    assert (model.params["num_leaves"], model.params["min_data_in_leaf"]) == (15, 50)  # its own defaults...
    chosen = train(train_set, valid_set, settings.model_copy(update={"num_leaves": 7}), propensities=true)
    assert (chosen.params["num_leaves"], chosen.params["min_data_in_leaf"]) == (7, 50)  # ...unless set
    calibration = {}
    for name, props in (("offset", true), ("no offset", flat)):
        predicted = LgbmScorer(train(train_set, valid_set, settings, propensities=props).model_text,
                               qs.feature_names).score(x)
        calibration[name] = predicted.mean() / relevance.mean()
    assert abs(calibration["offset"] - 1) < 0.1  # the gain once examined
    assert calibration["no offset"] < 0.75  # the click rate, depressed by the positions the logger chose
