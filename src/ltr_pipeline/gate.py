"""The quality gate: an evaluation and thresholds in, a verdict per check out."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ltr_pipeline.config import Settings
from ltr_pipeline.measures import NDCG_AT_5
from ltr_pipeline.record import Check, EvalReport, GateResult

PASS, FAIL, INSUFFICIENT = "pass", "fail", "insufficient data"
# The checks' names, as gate.json and the reports show them.
NDCG_CHECK, FAIRNESS_CHECK, LATENCY_CHECK, SAMPLES_CHECK = NDCG_AT_5, "fairness_gap", "latency_p95_ms", "samples"
VS_CHAMPION_CHECK = f"{NDCG_AT_5}_vs_champion"  # logged: biased towards the champion, which ranked the holdout
DEBIASED_CHECK = f"{NDCG_AT_5}_vs_champion_debiased"  # the one-sided 95% upper bound of (new - champion), debiased


@dataclass(frozen=True)
class Thresholds:
    """What the gate demands; the defaults are the settings' (LTR_NDCG_MIN, ...), declared there only."""

    ndcg_min: float
    fairness_max: float
    latency_p95_max_ms: float
    min_samples: int
    max_regression: float
    counterfactual_min_queries: int
    fairness_required: bool | None  # None: required when the data carries groups

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Thresholds:
        """The settings' thresholds; an override that is None leaves the setting in place."""
        values = {f.name: getattr(settings, f.name) for f in fields(cls)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _reasons(checks: list[Check]) -> list[str]:
    return [
        f"{c.name} {c.verdict}: {'n/a' if c.value is None else round(c.value, 4)} (needs {c.comparison} "
        f"{c.threshold})"
        for c in checks if c.blocking
    ]


def _check(name: str, value: float | None, threshold: float, comparison: str, required: bool = True,
           decides: bool = True) -> Check:
    """A verdict. It blocks publishing when it fails and `decides` (else it is shown for information), or when data is
    insufficient and the check is `required`."""
    if value is None:
        return Check(name=name, value=None, threshold=threshold, comparison=comparison, verdict=INSUFFICIENT,
                     blocking=required)
    ok = {">=": value >= threshold, "<=": value <= threshold, "<": value < threshold}[comparison]
    return Check(name=name, value=float(value), threshold=threshold, comparison=comparison,
                 verdict=PASS if ok else FAIL, blocking=decides and not ok)


def _vs_champion(report: EvalReport, thresholds: Thresholds) -> list[Check]:
    """The no-regression checks. Debiased, when the holdout has enough graded cases: the challenger is refused when
    even the one-sided 95% upper bound of (new - champion) is below -max_regression. The logged comparison is
    shown beside it, and decides only when the debiased one has too little data."""
    new, champion = report.new, report.champion
    if champion is None or champion.ndcg_at_5 is None or new.ndcg_at_5 is None:
        return []
    debiased = report.debiased
    enough = debiased is not None and debiased.high is not None and \
        debiased.queries >= thresholds.counterfactual_min_queries
    upper = debiased.high if enough and debiased is not None else None
    floor = champion.ndcg_at_5 - thresholds.max_regression
    return [
        _check(DEBIASED_CHECK, upper, -thresholds.max_regression, ">=", required=False),
        _check(VS_CHAMPION_CHECK, new.ndcg_at_5, round(floor, 6), ">=", decides=not enough),
    ]


def evaluate_gate(report: EvalReport, samples: int, thresholds: Thresholds, has_groups: bool) -> GateResult:
    new = report.new
    fairness_required = has_groups if thresholds.fairness_required is None else thresholds.fairness_required
    checks = [
        _check(NDCG_CHECK, new.ndcg_at_5, thresholds.ndcg_min, ">="),
        _check(FAIRNESS_CHECK, new.fairness_gap, thresholds.fairness_max, "<=", required=fairness_required),
        _check(LATENCY_CHECK, new.latency_p95_ms, thresholds.latency_p95_max_ms, "<"),
        _check(SAMPLES_CHECK, samples, thresholds.min_samples, ">="),
        *_vs_champion(report, thresholds),
    ]
    return GateResult(passed=not any(c.blocking for c in checks), checks=checks, reasons=_reasons(checks))
