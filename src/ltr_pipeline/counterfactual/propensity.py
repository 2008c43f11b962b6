"""Examination probability per position, estimated from the logs (after regression EM, Wang et al., WSDM 2018).

Under the position-based model a candidate shown at position p is clicked with probability theta_p * gamma(x): the
client examines position p (theta_p), and finds the candidate relevant (gamma, a function of its features x). Clicks
alone cannot tell the two apart for one impression, but the same kind of candidate is shown at many positions (the
ranker changes, the other candidates change, exploration swaps neighbours), so they can be estimated together by
maximum likelihood, alternating two steps:

- gamma given theta: a small LightGBM whose objective is the clicks' own likelihood, P(click) = theta_p sigmoid(f(x))
  (regression EM fits soft labels instead, and measured here its trees' shrinkage compounded round after round and
  drifted away from the truth, even when started there); cross-fitted, each half of the queries predicted by a model
  of the other half, so a row's own click never shapes its own relevance;
- theta given gamma: its fixed point, per position a mean of the posterior probability of examination.

Only ratios are identified, so the estimate is reported relative to position 1. Its interval is a bootstrap over
queries with gamma held fixed (the click noise, not the relevance model's own error). Positions deeper than
`max_position`, or seen too rarely, take the deepest estimate that has enough impressions. The deepest positions of a
good ranker get few clicks (a few a day at 300 cases a day): their intervals are wide, and BENCHMARKS.md says how
wide.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ltr_pipeline.record import Propensities

MIN_CLICKS = 200  # fewer clicks in the window: no estimate ("insufficient data")
MIN_IMPRESSIONS = 100  # per position, to estimate it on its own
ROUNDS = 10  # alternations of the two steps: converged by then (BENCHMARKS.md)
THETA_STEPS = 30
BOOTSTRAP = 100


def _relevance_model(features: npt.NDArray[np.float64], clicked: npt.NDArray[np.bool_],
                     examination: npt.NDArray[np.float64], fold: npt.NDArray[np.bool_], threads: int,
                     seed: int) -> npt.NDArray[np.float64]:
    """gamma for every row, fitted to the clicks' likelihood given each row's examination probability, cross-fitted
    over the two halves of the queries."""
    import lightgbm as lgb

    def likelihood(t: npt.NDArray[np.float64]) -> Any:
        def objective(raw: npt.NDArray[np.float64], data: Any) -> tuple[npt.NDArray[np.float64], ...]:
            c = data.get_label()
            s = 1.0 / (1.0 + np.exp(-raw))
            p = np.clip(t * s, 1e-9, 1 - 1e-9)
            grad = -(c * (1 - s) - (1 - c) * t * s * (1 - s) / (1 - p))  # of the negative log-likelihood in f
            hess = np.maximum(t * s * (1 - s) ** 2 / (1 - p), 1e-9)  # its Fisher information: always positive
            return grad, hess
        return objective

    out = np.empty(len(clicked))
    for half in (fold, ~fold):
        params: dict[str, Any] = {"objective": likelihood(examination[~half]), "learning_rate": 0.15,
                                  "num_leaves": 15, "min_data_in_leaf": 50, "num_threads": threads, "seed": seed,
                                  "deterministic": True, "force_row_wise": True, "verbosity": -1}
        booster = lgb.train(params, lgb.Dataset(features[~half], label=clicked[~half].astype(np.float64)),
                            num_boost_round=60)
        raw = np.asarray(booster.predict(features[half], raw_score=True), dtype=np.float64)
        out[half] = 1.0 / (1.0 + np.exp(-raw))
    return np.clip(out, 1e-4, 1 - 1e-4)


def _theta_step(theta: npt.NDArray[np.float64], gamma: npt.NDArray[np.float64], clicked: npt.NDArray[np.bool_],
                slot: npt.NDArray[np.int64], weights: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """One M step for theta: per position, the (weighted) mean posterior probability of examination."""
    t = theta[slot]
    examined = np.where(clicked, 1.0, t * (1 - gamma) / (1 - t * gamma))
    num = np.bincount(slot, weights=weights * examined, minlength=len(theta))
    den = np.bincount(slot, weights=weights, minlength=len(theta))
    return np.clip(num / np.maximum(den, 1e-12), 1e-4, 1.0)


def estimate_propensities(
    positions: npt.NDArray[np.int64], clicked: npt.NDArray[np.bool_], features: npt.NDArray[np.float64],
    qsizes: npt.NDArray[np.int64], max_position: int = 20, threads: int = 2, seed: int = 0,
) -> Propensities | None:
    """The examination curve relative to position 1, with 95% intervals; None with fewer than MIN_CLICKS clicks."""
    clicked = np.asarray(clicked, dtype=bool)
    if clicked.sum() < MIN_CLICKS or len(positions) == 0:
        return None
    counts = np.bincount(np.minimum(positions, max_position), minlength=max_position + 1)[1:]
    seen = np.flatnonzero(counts >= MIN_IMPRESSIONS)
    if len(seen) == 0 or seen[0] != 0:
        return None
    depth = int(seen[-1]) + 1  # positions 1..depth are estimated; deeper ones share the last
    slot = np.minimum(positions, depth) - 1
    theta = np.full(depth, 0.5)
    ones = np.ones(len(positions))
    fold = np.repeat(np.random.default_rng(seed).random(len(qsizes)) < 0.5, qsizes)
    for _ in range(ROUNDS):
        gamma = _relevance_model(features, clicked, theta[slot], fold, threads, seed)
        for _ in range(THETA_STEPS):  # theta to its fixed point for this gamma
            theta = _theta_step(theta, gamma, clicked, slot, ones)
    low, high = _bootstrap(theta, gamma, clicked, slot, qsizes, seed)
    return Propensities(
        method="click-likelihood", positions=list(range(1, depth + 1)),
        examination=(theta / theta[0]).tolist(), low=low.tolist(), high=high.tolist(),
        impressions=np.bincount(slot, minlength=depth).tolist(),
        clicks=np.bincount(slot, weights=clicked, minlength=depth).astype(int).tolist(),
    )


def _bootstrap(theta: npt.NDArray[np.float64], gamma: npt.NDArray[np.float64], clicked: npt.NDArray[np.bool_],
               slot: npt.NDArray[np.int64], qsizes: npt.NDArray[np.int64], seed: int
               ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """95% percentile intervals of theta / theta_1, resampling queries (Poisson weights), gamma fixed."""
    rng = np.random.default_rng(seed)
    ratios = np.empty((BOOTSTRAP, len(theta)))
    for b in range(BOOTSTRAP):
        weights = np.repeat(rng.poisson(1.0, len(qsizes)), qsizes).astype(np.float64)
        boot = theta.copy()
        for _ in range(10):
            boot = _theta_step(boot, gamma, clicked, slot, weights)
        ratios[b] = boot / boot[0]
    return np.percentile(ratios, 2.5, axis=0), np.percentile(ratios, 97.5, axis=0)
