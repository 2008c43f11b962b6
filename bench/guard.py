"""The guard's engagement test (guard.msprt) by Monte Carlo: how often it raises a false alarm on a healthy version,
and how many cases it takes to catch a real drop, checked every CHECK_EVERY cases as the soak does.

    python -m bench.guard [--trials 20000] [--baseline 900] [--cases 300] [--alpha 0.001]

A trial: the previous version's baseline (`--baseline` cases, as three days of 300 do), then a new version whose
cases arrive one by one; the guard checks after every 25 and fails when the mixture ratio reaches 1/alpha with
engagement down. Healthy: the same engagement rate (or 0.01 lower, a difference too small to matter in a day).
A false alarm over a 30-day soak is 1 - (1 - rate per version)^30, each day a new version.
"""

from __future__ import annotations

import argparse

import numpy as np

from ltr_pipeline.guard import msprt

CHECK_EVERY = 25


def trial_outcomes(rng: np.random.Generator, trials: int, baseline: int, cases: int, p_old: float, p_new: float,
                   alpha: float) -> np.ndarray:
    """For each trial, the number of cases after which the test fired (0: it never did)."""
    old_hits = rng.binomial(baseline, p_old, trials)
    new = rng.random((trials, cases)) < p_new
    hits = np.cumsum(new, axis=1)
    fired = np.zeros(trials, dtype=np.int64)
    for n in range(CHECK_EVERY, cases + 1, CHECK_EVERY):
        for t in np.flatnonzero(fired == 0):
            h = int(hits[t, n - 1])
            if h / n < old_hits[t] / baseline and msprt(h, n, int(old_hits[t]), baseline) >= 1 / alpha:
                fired[t] = n
    return fired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20000)
    parser.add_argument("--baseline", type=int, default=900)
    parser.add_argument("--cases", type=int, default=300, help="cases of the new version (one simulated day)")
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"# {args.trials} trials, baseline {args.baseline} cases, checks every {CHECK_EVERY} of {args.cases} "
          f"cases, alpha {args.alpha}")
    print(f"{'p_old':>6} {'p_new':>6} {'fired in a day':>15} {'any in 30 days':>15} {'median cases to fire':>21}")
    for p_old in (0.3, 0.6, 0.9):
        for drop in (0.0, 0.01, 0.05, 0.1, 0.2, p_old / 2):
            fired = trial_outcomes(rng, args.trials, args.baseline, args.cases, p_old, p_old - drop, args.alpha)
            rate = float(np.mean(fired > 0))
            month = f"{1 - (1 - rate) ** 30:.4f}" if drop <= 0.01 else "-"  # a false alarm only when healthy
            median = f"{np.median(fired[fired > 0]):.0f}" if rate > 0 else "-"
            print(f"{p_old:6.2f} {p_old - drop:6.3f} {rate:15.4f} {month:>15} {median:>21}")


if __name__ == "__main__":
    main()
