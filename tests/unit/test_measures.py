"""Every metric checked against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import kendalltau  # installed with LightGBM: an independent implementation to agree with

from ltr_pipeline.measures import (
    dcg_at_k,
    dcg_by_query,
    fairness_gap,
    kendall_tau,
    ndcg_at_k,
    overlap_at_k,
    per_query,
    ranking_metrics,
)

L3 = math.log2(3)
L5 = math.log2(5)


def test_dcg_uses_exponential_gain_and_log2_discount() -> None:
    # ranks 1..3 with labels 3, 2, 0: 7/1 + 3/log2(3) + 0
    assert dcg_at_k([3, 2, 0], 3) == pytest.approx(7 + 3 / L3)


def test_ndcg_against_hand_computation() -> None:
    ranked = [3, 2, 0, 1]
    dcg = 7 + 3 / L3 + 0 + 1 / L5  # 9.32347
    ideal = 7 + 3 / L3 + 1 / 2 + 0  # 9.39279
    assert ndcg_at_k(ranked, 4) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(ranked, 4) == pytest.approx(0.992620, abs=1e-6)
    assert ndcg_at_k(ranked, 2) == pytest.approx(1.0)  # the top two are already ideal
    assert ndcg_at_k([0, 0, 1], 5) == pytest.approx((1 / 2) / 1.0)


def test_query_without_positive_is_none_and_excluded_from_mean() -> None:
    assert ndcg_at_k([0, 0, 0], 5) is None
    # query 1: perfect order; query 2: no positive; query 3: the positive at rank 2
    scores = [3, 2, 1, 5, 4, 9, 8]
    labels = [2, 1, 0, 0, 0, 0, 1]
    m = ranking_metrics(scores, labels, [3, 2, 2], ks=(1, 5))
    assert m["queries"] == 3
    assert m["queries_without_positive"] == 1
    assert m["ndcg@1"] == pytest.approx((1.0 + 0.0) / 2)
    assert m["ndcg@5"] == pytest.approx((1.0 + 1 / L3) / 2)
    assert m["hit@3"] == pytest.approx(1.0)
    assert m["mrr"] == pytest.approx((1.0 + 0.5) / 2)


def test_ties_keep_input_order() -> None:
    m = ranking_metrics([1, 1, 1], [0, 1, 0], [3], ks=(1,))
    assert m["ndcg@1"] == 0.0
    assert m["mrr"] == pytest.approx(0.5)


def test_hit_at_3_misses_a_positive_at_rank_4() -> None:
    m = ranking_metrics([4, 3, 2, 1], [0, 0, 0, 1], [4])
    assert m["hit@3"] == 0.0
    assert m["mrr"] == pytest.approx(0.25)


def test_fairness_gap_by_hand() -> None:
    # query 1 ranked F, M, M; query 2 ranked M, M, F. Weights 1, 1/log2(3), 1/2.
    scores = [3, 2, 1, 3, 2, 1]
    groups = ["F", "M", "M", "M", "M", "F"]
    fair = fairness_gap(scores, groups, [3, 3], min_appearances=2)
    e_f = (1 + 0.5) / 2
    e_m = (1 / L3 + 0.5 + 1 + 1 / L3) / 4
    assert fair.exposure == pytest.approx({"F": e_f, "M": e_m})
    assert fair.gap == pytest.approx(e_f - e_m)
    assert fair.gap == pytest.approx(0.059535, abs=1e-6)
    assert fair.appearances == {"F": 2, "M": 4}


def test_fairness_ignores_ranks_past_five_and_ungrouped_candidates() -> None:
    scores = list(range(7, 0, -1))
    groups = ["A", None, "A", "A", "A", "B", "B"]  # B only at ranks 6 and 7: exposure 0
    fair = fairness_gap(scores, groups, [7], min_appearances=1)
    assert fair.exposure["B"] == 0.0
    assert fair.exposure["A"] == pytest.approx((1 + 0.5 + 1 / L5 + 1 / math.log2(6)) / 4)
    assert "None" not in fair.exposure and None not in fair.exposure


def test_fairness_with_one_comparable_group_is_insufficient() -> None:
    fair = fairness_gap([2, 1], ["F", "M"], [2], min_appearances=2)
    assert fair.gap is None
    assert fair.compared == []


def test_overlap_at_5_by_hand() -> None:
    live = [9, 8, 7, 6, 5, 4, 3]  # top 5: candidates 0..4
    challenger = [9, 8, 0, 6, 5, 4, 7]  # top 5: 0, 1, 6, 3, 4 -> shares 0, 1, 3, 4
    assert overlap_at_k(live, challenger, 5) == pytest.approx(4 / 5)
    assert overlap_at_k(live, live, 5) == 1.0
    assert overlap_at_k([1, 2], [2, 1], 5) == 1.0  # fewer than 5 candidates: all of them are the top


def test_kendall_tau_by_hand() -> None:
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # one swapped pair of 6: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    # tau-b with a tie on one side: pairs (a): 6 untied; (b) [1,1,2,3]: 5 untied; concordant 5 -> 5 / sqrt(30)
    assert kendall_tau([1, 2, 3, 4], [1, 1, 2, 3]) == pytest.approx(5 / np.sqrt(30))
    assert kendall_tau([3.0], [1.0]) == 1.0
    assert np.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 6, 30), rng.integers(0, 6, 30)  # plenty of ties
        assert kendall_tau(a, b) == pytest.approx(kendalltau(a, b).statistic)


def test_vectorised_dcg_gives_the_per_query_ndcg() -> None:
    rng = np.random.default_rng(3)
    qsizes = rng.integers(1, 12, 300)
    labels = rng.integers(0, 4, int(qsizes.sum())) * (rng.random(int(qsizes.sum())) < 0.4)
    scores = np.round(rng.random(len(labels)), 1)  # many ties: broken in row order, as rank_order does
    dcg, ideal = dcg_by_query(scores, labels, qsizes, 5), dcg_by_query(labels, labels, qsizes, 5)
    assert np.allclose(dcg[ideal > 0] / ideal[ideal > 0], per_query(scores, labels, qsizes)["ndcg@5"])
