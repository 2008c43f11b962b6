"""Challenger, champion and legacy scored on the same holdout with the same metrics; and the challenger compared with
the champion without the logging ranker's bias, when the run has propensities."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ltr_pipeline.counterfactual.estimators import compare, ips_gains
from ltr_pipeline.dataset import QuerySet
from ltr_pipeline.fairness import rerank_scores
from ltr_pipeline.measures import fairness_gap, percentile_ms, ranking_metrics
from ltr_pipeline.record import EvalReport, Propensities, ScorerMetrics, convert
from ltr_pipeline.scoring import Scorer, measure_latency


def evaluate_scorer(
    scorer: Scorer, holdout: QuerySet, fairness_min_group: int, fair_strength: float = 0.0,
    scores: npt.NDArray[np.float64] | None = None,
) -> ScorerMetrics:
    """Metrics of what would be served: the scorer's order, re-ranked for fairness when `fair_strength` > 0
    (`scores`: those served scores, when the caller has them already)."""
    scores = served_scores(scorer, holdout, fair_strength) if scores is None else scores
    fair = fairness_gap(scores, holdout.groups, holdout.qsizes, fairness_min_group)
    timings = measure_latency(scorer, holdout.features, holdout.qsizes, groups=holdout.groups,
                              fair_strength=fair_strength)
    return convert({
        **ranking_metrics(scores, holdout.labels, holdout.qsizes),
        "algorithm": scorer.algorithm,
        "rows": holdout.rows,
        "fairness_gap": fair.gap,
        "exposure": fair.exposure,
        "group_appearances": fair.appearances,
        "latency_p50_ms": percentile_ms(timings, 50),
        "latency_p95_ms": percentile_ms(timings, 95),
        "fair_rerank_strength": fair_strength,
    }, ScorerMetrics)


def served_scores(scorer: Scorer, holdout: QuerySet, fair_strength: float) -> npt.NDArray[np.float64]:
    """The scores whose order the service would show: the scorer's, re-ranked for fairness when asked."""
    return rerank_scores(scorer.score(holdout.features), holdout.groups, holdout.qsizes, fair_strength)


def evaluate_all(
    new: Scorer, legacy: Scorer, holdout: QuerySet, fairness_min_group: int,
    champion: Scorer | None = None, champion_version: str | None = None, fair_strength: float = 0.0,
    propensities: Propensities | None = None, seed: int = 0,
) -> EvalReport:
    served = {role: served_scores(s, holdout, fair_strength) for role, s in
              (("new", new), ("legacy", legacy), ("champion", champion)) if s is not None}

    def of(role: str, scorer: Scorer) -> ScorerMetrics:
        return evaluate_scorer(scorer, holdout, fairness_min_group, fair_strength, served[role])

    debiased = None
    if champion is not None and propensities is not None:
        debiased = compare(served["new"], served["champion"],
                           ips_gains(holdout.labels, holdout.positions, propensities), holdout.qsizes, seed=seed)
    return EvalReport(new=of("new", new), legacy=of("legacy", legacy),
                      champion=of("champion", champion) if champion else None,
                      champion_version=champion_version, propensities=propensities, debiased=debiased)
