"""Every metric checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from ltr_pipeline.metrics import dcg_at_k, fairness_gap, ndcg_at_k, ranking_metrics

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
