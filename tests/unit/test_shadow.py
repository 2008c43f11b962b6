"""A/B arms and the shadow comparer, in process (the service tests drive them over HTTP)."""

from __future__ import annotations

import numpy as np

from ltr_pipeline.config import Settings
from ltr_pipeline.scoring import WeightedSumScorer
from ltr_pipeline.service.metrics import ServiceMetrics
from ltr_pipeline.service.reloader import LiveModel
from ltr_pipeline.service.shadow import QUEUE_SIZE, ShadowScorer, ab_variant
from tests.helpers import wait_until

NAMES = ["a", "b"]


def test_ab_arm_is_sticky_by_case_and_close_to_the_share() -> None:
    arms = [ab_variant(f"case-{i}", 0.2) for i in range(20000)]
    assert arms == [ab_variant(f"case-{i}", 0.2) for i in range(20000)]
    assert 0.18 < arms.count("challenger") / len(arms) < 0.22
    assert {ab_variant(f"case-{i}", 0.0) for i in range(100)} == {"live"}
    assert {ab_variant(f"case-{i}", 1.0) for i in range(100)} == {"challenger"}


def _challenger(weights: dict[str, float]) -> LiveModel:
    scorer = WeightedSumScorer(weights, NAMES)
    return LiveModel("v-challenger", scorer, scorer)


def test_shadow_records_agreement_and_drops_rather_than_blocks() -> None:
    metrics = ServiceMetrics()
    shadow = ShadowScorer(metrics, Settings().background_priority)  # the suite's (tests/conftest.py)
    matrix = np.array([[i / 10, 1 - i / 10] for i in range(10)])
    live_scores = matrix[:, 0]  # best: the last rows
    reversed_challenger = _challenger({"a": 0.0, "b": 1.0})  # ranks them the other way round
    for _ in range(QUEUE_SIZE + 5):  # not started yet: the queue fills, the rest are dropped at once
        shadow.submit("c-1", reversed_challenger, "v-live", matrix, live_scores)
    assert metrics.total("ltr_shadow_requests_total", outcome="dropped") == 5
    shadow.start()
    shadow.close()  # drains the queue first (for up to 10 s: a busy machine may need longer)
    wait_until(lambda: metrics.total("ltr_shadow_requests_total", outcome="scored") == QUEUE_SIZE,
               what="the queue drained")
    assert metrics.total("ltr_shadow_kendall_tau_bucket", le="-0.5") == QUEUE_SIZE  # tau -1 every time
    assert metrics.total("ltr_shadow_overlap_at_5_sum") == 0
