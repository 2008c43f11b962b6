from __future__ import annotations

from typing import Any

from ltr_pipeline.evaluate import EvalReport
from ltr_pipeline.gate import FAIL, INSUFFICIENT, PASS, Thresholds, evaluate_gate


def _metrics(ndcg: float | None = 0.8, gap: float | None = 0.01, p95: float = 1.0) -> dict[str, Any]:
    return {"ndcg@5": ndcg, "fairness_gap": gap, "latency_p95_ms": p95}


def _verdicts(result: Any) -> dict[str, str]:
    return {c.name: c.verdict for c in result.checks}


def test_all_checks_pass() -> None:
    result = evaluate_gate(EvalReport(_metrics(), _metrics()), 500, Thresholds(), has_groups=True)
    assert result.passed
    assert set(_verdicts(result).values()) == {PASS}
    assert result.reasons == []


def test_each_threshold_fails_on_its_own() -> None:
    cases = {
        "ndcg@5": (_metrics(ndcg=0.64), 500),
        "fairness_gap": (_metrics(gap=0.051), 500),
        "latency_p95_ms": (_metrics(p95=15.0), 500),  # strictly below 15 ms
        "samples": (_metrics(), 99),
    }
    for name, (metrics, samples) in cases.items():
        result = evaluate_gate(EvalReport(metrics, _metrics()), samples, Thresholds(), has_groups=True)
        assert not result.passed, name
        assert _verdicts(result)[name] == FAIL
        assert [r.split()[0] for r in result.reasons] == [name]


def test_boundaries_are_inclusive_where_the_seed_says_so() -> None:
    result = evaluate_gate(EvalReport(_metrics(ndcg=0.65, gap=0.05), _metrics()), 100, Thresholds(), True)
    assert result.passed


def test_regression_against_champion() -> None:
    report = EvalReport(_metrics(ndcg=0.80), _metrics(), champion=_metrics(ndcg=0.815), champion_version="v")
    result = evaluate_gate(report, 500, Thresholds(max_regression=0.01), True)
    assert _verdicts(result)["ndcg@5_vs_champion"] == FAIL
    report.champion = _metrics(ndcg=0.805)
    assert evaluate_gate(report, 500, Thresholds(max_regression=0.01), True).passed


def test_missing_fairness_data_blocks_only_when_required() -> None:
    report = EvalReport(_metrics(gap=None), _metrics())
    grouped = evaluate_gate(report, 500, Thresholds(), has_groups=True)
    assert not grouped.passed and _verdicts(grouped)["fairness_gap"] == INSUFFICIENT
    ungrouped = evaluate_gate(report, 500, Thresholds(), has_groups=False)
    assert ungrouped.passed and _verdicts(ungrouped)["fairness_gap"] == INSUFFICIENT
    forced = evaluate_gate(report, 500, Thresholds(fairness_required=True), has_groups=False)
    assert not forced.passed


def test_forcing_a_rejection_the_documented_way() -> None:
    result = evaluate_gate(EvalReport(_metrics(ndcg=0.85), _metrics()), 500, Thresholds(ndcg_min=0.90), True)
    assert not result.passed
    assert "ndcg@5 fail" in result.reasons[0]
