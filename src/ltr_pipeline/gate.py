"""The quality gate: an evaluation and thresholds in, a verdict per check out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ltr_pipeline.config import Settings
from ltr_pipeline.evaluate import EvalReport

PASS, FAIL, INSUFFICIENT = "pass", "fail", "insufficient data"


@dataclass(frozen=True)
class Thresholds:
    ndcg_min: float = 0.65
    fairness_max: float = 0.05
    latency_p95_max_ms: float = 15.0
    min_samples: int = 100
    max_regression: float = 0.01
    fairness_required: bool | None = None  # None: required when the data carries groups

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Thresholds:
        values = {name: getattr(settings, name) for name in cls.__dataclass_fields__}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    threshold: float
    comparison: str  # how value must relate to threshold, for people: ">=", "<=", "<"
    verdict: str  # pass | fail | insufficient data
    blocking: bool  # whether this verdict stops publishing


@dataclass(frozen=True)
class GateResult:
    passed: bool
    checks: list[Check] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [
            f"{c.name} {c.verdict}: {'n/a' if c.value is None else round(c.value, 4)} (needs {c.comparison} "
            f"{c.threshold})"
            for c in self.checks if c.blocking
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [asdict(c) for c in self.checks], "reasons": self.reasons}


def _check(name: str, value: float | None, threshold: float, comparison: str, required: bool = True) -> Check:
    if value is None:
        return Check(name, None, threshold, comparison, INSUFFICIENT, required)
    ok = {">=": value >= threshold, "<=": value <= threshold, "<": value < threshold}[comparison]
    return Check(name, float(value), threshold, comparison, PASS if ok else FAIL, not ok)


def evaluate_gate(report: EvalReport, samples: int, thresholds: Thresholds, has_groups: bool) -> GateResult:
    new = report.new
    fairness_required = has_groups if thresholds.fairness_required is None else thresholds.fairness_required
    checks = [
        _check("ndcg@5", new["ndcg@5"], thresholds.ndcg_min, ">="),
        _check("fairness_gap", new["fairness_gap"], thresholds.fairness_max, "<=", required=fairness_required),
        _check("latency_p95_ms", new["latency_p95_ms"], thresholds.latency_p95_max_ms, "<"),
        _check("samples", samples, thresholds.min_samples, ">="),
    ]
    if report.champion is not None and report.champion["ndcg@5"] is not None and new["ndcg@5"] is not None:
        floor = report.champion["ndcg@5"] - thresholds.max_regression
        checks.append(_check("ndcg@5_vs_champion", new["ndcg@5"], round(floor, 6), ">="))
    return GateResult(passed=not any(c.blocking for c in checks), checks=checks)
