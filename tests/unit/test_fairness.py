from __future__ import annotations

import math

import numpy as np
import pytest

from ltr_pipeline.fairness import ExposureBalancer, rerank_scores
from ltr_pipeline.measures import fairness_gap


def test_strength_zero_is_the_model_order() -> None:
    assert ExposureBalancer(0.0).order([1, 3, 2], ["F", "M", "F"]).tolist() == [1, 2, 0]


def test_the_group_behind_is_lifted_by_hand() -> None:
    for strength, expected in ((1.0, [1, 0]), (0.2, [0, 1])):
        balancer = ExposureBalancer(strength)
        assert balancer.order([2, 1], ["M", "F"]).tolist() == [0, 1]  # no history yet: the model's order
        assert balancer.exposure == pytest.approx({"M": 1.0, "F": 1 / math.log2(3)})
        # Mean exposure M 1, F 0.631: F is 36.9% behind. Spread 0.1, so F gains strength * 10 * 0.1 * 0.369:
        # 0.369 at strength 1 (1.9 -> 2.269 beats 2), 0.074 at strength 0.2 (1.974 does not).
        assert balancer.order([2, 1.9], ["M", "F"]).tolist() == expected


def test_ungrouped_candidates_are_never_lifted() -> None:
    balancer = ExposureBalancer(1.0)
    balancer.order([2, 1], ["M", None])
    assert balancer.order([2, 1.99], ["M", None]).tolist() == [0, 1]
    assert balancer.appearances == {"M": 2.0}


def test_replaying_biased_queries_closes_the_gap() -> None:
    rng = np.random.default_rng(3)
    groups = (["M"] * 5 + ["F"] * 5) * 200
    scores = np.array([rng.random() + (0.3 if g == "M" else 0.0) for g in groups])  # the model favours M
    qsizes = [10] * 200
    before = fairness_gap(scores, groups, qsizes, 30).gap
    after = fairness_gap(rerank_scores(scores, groups, qsizes, 1.0), groups, qsizes, 30).gap
    assert before is not None and after is not None
    assert before > 0.15 and after < 0.02
    np.testing.assert_array_equal(rerank_scores(scores, groups, qsizes, 0.0), scores)
