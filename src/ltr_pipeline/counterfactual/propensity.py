"""Examination probability per position, estimated from the logs (after regression EM, Wang et al., WSDM 2018).

Under the position-based model a candidate shown at position p is clicked with probability theta_p * gamma(x): the
client examines position p (theta_p), and finds the candidate relevant (gamma, a function of its features x). Clicks
alone cannot tell the two apart for one impression, but the same kind of candidate is shown at many positions (the
ranker changes, the other candidates change, exploration swaps neighbours), so they can be estimated together by
maximum likelihood, alternating two steps:

- gamma given theta: a small LightGBM whose objective is the clicks' own likelihood, P(click) = e sigmoid(f(x)) with
  e the row's examination probability (regression EM fits soft labels instead, and measured here its trees'
  shrinkage compounded round after round and drifted away from the truth, even when started there); cross-fitted,
  each half of the queries predicted by a model of the other half, so a row's own click never shapes its own
  relevance;
- theta given gamma: its fixed point, per position a mean of the posterior probability of examination.

Feedback without a click (a decline: the client looked and said no) is examination observed directly. An examined,
unclicked candidate is declined with probability delta, estimated alongside theta; a declined row counts as examined
for sure, and a row left alone is less likely to have been examined than one judged by clicks alone. Positions a good
ranker fills with its least relevant candidates get a few clicks a day but many declines, which pin their
examination (BENCHMARKS.md measures both).

Only ratios are identified, so the estimate is reported relative to position 1. Its interval is a bootstrap over
queries with gamma held fixed (the click noise, not the relevance model's own error). Positions deeper than
`max_position`, or seen too rarely, take the deepest estimate that has enough impressions.
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


def _examined(t: npt.NDArray[np.float64], gamma: npt.NDArray[np.float64], delta: float,
              clicked: npt.NDArray[np.bool_], declined: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """Each row's posterior probability of examination: 1 when the client acted on it (clicked, or declined it),
    else P(examined | no action) = t (1 - gamma)(1 - delta) / (1 - t gamma - t (1 - gamma) delta)."""
    quiet = t * (1 - gamma) * (1 - delta) / (1 - t * gamma - t * (1 - gamma) * delta)
    return np.where(clicked | declined, 1.0, quiet)


def _theta_step(theta: npt.NDArray[np.float64], delta: float, gamma: npt.NDArray[np.float64],
                clicked: npt.NDArray[np.bool_], declined: npt.NDArray[np.bool_], slot: npt.NDArray[np.int64],
                weights: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], float]:
    """One M step for theta (per position, the weighted mean posterior probability of examination) and for delta
    (declines per examined candidate left unclicked)."""
    examined = _examined(theta[slot], gamma, delta, clicked, declined)
    num = np.bincount(slot, weights=weights * examined, minlength=len(theta))
    den = np.bincount(slot, weights=weights, minlength=len(theta))
    unclicked = weights * examined * ~clicked
    delta = float(np.sum(weights * declined) / max(np.sum(unclicked), 1e-12))
    return np.clip(num / np.maximum(den, 1e-12), 1e-4, 1.0), min(delta, 0.99)


def estimate_propensities(
    positions: npt.NDArray[np.int64], clicked: npt.NDArray[np.bool_], features: npt.NDArray[np.float64],
    qsizes: npt.NDArray[np.int64], acted: npt.NDArray[np.bool_] | None = None, max_position: int = 20,
    threads: int = 2, seed: int = 0,
) -> Propensities | None:
    """The examination curve relative to position 1, with 95% intervals; None with fewer than MIN_CLICKS clicks.
    `acted`: rows with any feedback at all; those without a click (declines) were examined too."""
    clicked = np.asarray(clicked, dtype=bool)
    if clicked.sum() < MIN_CLICKS or len(positions) == 0:
        return None
    declined = np.zeros_like(clicked) if acted is None else np.asarray(acted, dtype=bool) & ~clicked
    counts = np.bincount(np.minimum(positions, max_position), minlength=max_position + 1)[1:]
    seen = np.flatnonzero(counts >= MIN_IMPRESSIONS)
    if len(seen) == 0 or seen[0] != 0:
        return None
    depth = int(seen[-1]) + 1  # positions 1..depth are estimated; deeper ones share the last
    slot = np.minimum(positions, depth) - 1
    theta, delta = np.full(depth, 0.5), 0.0
    ones = np.ones(len(positions))
    fold = np.repeat(np.random.default_rng(seed).random(len(qsizes)) < 0.5, qsizes)
    for _ in range(ROUNDS):
        gamma = _relevance_model(features, clicked, _click_exposure(theta[slot], delta, clicked, declined), fold,
                                 threads, seed)
        for _ in range(THETA_STEPS):  # theta and delta to their fixed point for this gamma
            theta, delta = _theta_step(theta, delta, gamma, clicked, declined, slot, ones)
    low, high = _bootstrap(theta, delta, gamma, clicked, declined, slot, qsizes, seed)
    return Propensities(
        method="click-likelihood", positions=list(range(1, depth + 1)),
        examination=(theta / theta[0]).tolist(), low=low.tolist(), high=high.tolist(),
        impressions=np.bincount(slot, minlength=depth).tolist(),
        clicks=np.bincount(slot, weights=clicked, minlength=depth).astype(int).tolist(),
        declines=int(declined.sum()),
    )


def _click_exposure(t: npt.NDArray[np.float64], delta: float, clicked: npt.NDArray[np.bool_],
                    declined: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """Per row, the factor e in P(outcome) = e gamma (clicked) or 1 - e gamma (not): the examination probability;
    1 for a decline (examined for sure); t (1 - delta) / (1 - t delta) for a row left alone, which no decline
    followed."""
    return np.where(clicked, t, np.where(declined, 1.0, t * (1 - delta) / (1 - t * delta)))


def _bootstrap(theta: npt.NDArray[np.float64], delta: float, gamma: npt.NDArray[np.float64],
               clicked: npt.NDArray[np.bool_], declined: npt.NDArray[np.bool_], slot: npt.NDArray[np.int64],
               qsizes: npt.NDArray[np.int64], seed: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """95% percentile intervals of theta / theta_1, resampling queries (Poisson weights), gamma fixed."""
    rng = np.random.default_rng(seed)
    ratios = np.empty((BOOTSTRAP, len(theta)))
    for b in range(BOOTSTRAP):
        weights = np.repeat(rng.poisson(1.0, len(qsizes)), qsizes).astype(np.float64)
        boot, d = theta.copy(), delta
        for _ in range(10):
            boot, d = _theta_step(boot, d, gamma, clicked, declined, slot, weights)
        ratios[b] = boot / boot[0]
    return np.percentile(ratios, 2.5, axis=0), np.percentile(ratios, 97.5, axis=0)
