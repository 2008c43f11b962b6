"""Examination probability per position, estimated from the logs by regression EM (Wang et al., WSDM 2018).

Under the position-based model a candidate shown at position p is clicked with probability theta_p * gamma(x): the
client examines position p (theta_p), and finds the candidate relevant (gamma, a function of its features x). Clicks
alone cannot tell the two apart for one impression, but the same kind of candidate is shown at many positions (the
ranker changes, the other candidates change, exploration swaps neighbours), so EM can: the E step splits every
non-click into "not examined" and "examined but not relevant", the M step re-estimates theta per position as a mean
and gamma as a small LightGBM fitted on the soft relevance labels.

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
EM_ROUNDS = 12
THETA_STEPS = 30
BOOTSTRAP = 100


def _relevance_model(features: npt.NDArray[np.float64], target: npt.NDArray[np.float64], threads: int,
                     seed: int) -> npt.NDArray[np.float64]:
    import lightgbm as lgb

    params: dict[str, Any] = {"objective": "cross_entropy", "learning_rate": 0.15, "num_leaves": 15,
                              "min_data_in_leaf": 50, "num_threads": threads, "seed": seed, "deterministic": True,
                              "force_row_wise": True, "verbosity": -1}
    booster = lgb.train(params, lgb.Dataset(features, label=target), num_boost_round=40)
    return np.clip(booster.predict(features), 1e-4, 1 - 1e-4)


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
    gamma = np.full(len(positions), float(clicked.mean()) / 0.5)
    ones = np.ones(len(positions))
    for _ in range(EM_ROUNDS):
        t = theta[slot]
        relevant = np.where(clicked, 1.0, (1 - t) * gamma / (1 - t * gamma))
        gamma = _relevance_model(features, relevant, threads, seed)
        for _ in range(THETA_STEPS):  # theta to its fixed point for this gamma: EM converges in far fewer rounds
            theta = _theta_step(theta, gamma, clicked, slot, ones)
    low, high = _bootstrap(theta, gamma, clicked, slot, qsizes, seed)
    return Propensities(
        method="regression-em", positions=list(range(1, depth + 1)),
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
