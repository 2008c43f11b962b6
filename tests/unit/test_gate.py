from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from ltr_pipeline.config import Settings
from ltr_pipeline.gate import FAIL, INSUFFICIENT, PASS, Thresholds, evaluate_gate
from ltr_pipeline.record import Comparison, EvalReport, ScorerMetrics


def _metrics(ndcg: float | None = 0.8, gap: float | None = 0.01, p95: float = 1.0) -> ScorerMetrics:
    return ScorerMetrics(algorithm="ltr", rows=10, ndcg_at_5=ndcg, fairness_gap=gap, latency_p95_ms=p95)


@pytest.fixture
def defaults(settings: Settings) -> Any:
    """Thresholds with the settings' defaults (the seed's), overridable per test."""
    return lambda **overrides: Thresholds.from_settings(settings, **overrides)


def _verdicts(result: Any) -> dict[str, str]:
    return {c.name: c.verdict for c in result.checks}


def test_all_checks_pass(defaults: Any) -> None:
    result = evaluate_gate(EvalReport(new=_metrics(), legacy=_metrics()), 500, defaults(), has_groups=True)
    assert result.passed
    assert set(_verdicts(result).values()) == {PASS}
    assert result.reasons == []


def test_each_threshold_fails_on_its_own(defaults: Any) -> None:
    cases = {
        "ndcg@5": (_metrics(ndcg=0.64), 500),
        "fairness_gap": (_metrics(gap=0.051), 500),
        "latency_p95_ms": (_metrics(p95=15.0), 500),  # strictly below 15 ms
        "samples": (_metrics(), 99),
    }
    for name, (metrics, samples) in cases.items():
        result = evaluate_gate(EvalReport(new=metrics, legacy=_metrics()), samples, defaults(), has_groups=True)
        assert not result.passed, name
        assert _verdicts(result)[name] == FAIL
        assert [r.split()[0] for r in result.reasons] == [name]


def test_boundaries_are_inclusive_where_the_seed_says_so(defaults: Any) -> None:
    result = evaluate_gate(EvalReport(new=_metrics(ndcg=0.65, gap=0.05), legacy=_metrics()), 100, defaults(), True)
    assert result.passed


def test_regression_against_champion(defaults: Any) -> None:
    report = EvalReport(new=_metrics(ndcg=0.80), legacy=_metrics(), champion=_metrics(ndcg=0.815), champion_version="v")
    result = evaluate_gate(report, 500, defaults(max_regression=0.01), True)
    assert _verdicts(result)["ndcg@5_vs_champion"] == FAIL
    report = replace(report, champion=_metrics(ndcg=0.805))
    assert evaluate_gate(report, 500, defaults(max_regression=0.01), True).passed


def test_missing_fairness_data_blocks_only_when_required(defaults: Any) -> None:
    report = EvalReport(new=_metrics(gap=None), legacy=_metrics())
    grouped = evaluate_gate(report, 500, defaults(), has_groups=True)
    assert not grouped.passed and _verdicts(grouped)["fairness_gap"] == INSUFFICIENT
    ungrouped = evaluate_gate(report, 500, defaults(), has_groups=False)
    assert ungrouped.passed and _verdicts(ungrouped)["fairness_gap"] == INSUFFICIENT
    forced = evaluate_gate(report, 500, defaults(fairness_required=True), has_groups=False)
    assert not forced.passed


def test_forcing_a_rejection_the_documented_way(defaults: Any) -> None:
    result = evaluate_gate(EvalReport(new=_metrics(ndcg=0.85), legacy=_metrics()), 500, defaults(ndcg_min=0.90), True)
    assert not result.passed
    assert "ndcg@5 fail" in result.reasons[0]


def test_the_debiased_comparison_decides_when_it_has_enough_data(defaults: Any) -> None:
    champion = _metrics(ndcg=0.80)
    logged_worse = _metrics(ndcg=0.78)  # the logs favour the champion, which ranked them

    def report(low: float, high: float, queries: int = 200) -> EvalReport:
        debiased = Comparison(estimator="snips", queries=queries, new=0.7, old=0.69, difference=(low + high) / 2,
                              low=low, high=high)
        return EvalReport(new=logged_worse, legacy=_metrics(), champion=champion, champion_version="v",
                          debiased=debiased)

    better = evaluate_gate(report(-0.004, 0.012), 500, defaults(max_regression=0.0), True)
    assert better.passed  # the logged check fails but only informs: the debiased one decides
    verdicts = {c.name: (c.verdict, c.blocking) for c in better.checks}
    assert verdicts["ndcg@5_vs_champion"] == (FAIL, False)
    assert verdicts["ndcg@5_vs_champion_debiased"] == (PASS, False)

    worse = evaluate_gate(report(-0.03, -0.011), 500, defaults(max_regression=0.01), True)
    assert not worse.passed and [r.split()[0] for r in worse.reasons] == ["ndcg@5_vs_champion_debiased"]

    thin = evaluate_gate(report(-0.03, -0.011, queries=10), 500, defaults(max_regression=0.0), True)
    verdicts = {c.name: (c.verdict, c.blocking) for c in thin.checks}
    assert verdicts["ndcg@5_vs_champion_debiased"] == (INSUFFICIENT, False)  # says so, like fairness
    assert verdicts["ndcg@5_vs_champion"] == (FAIL, True)  # and the logged comparison decides
