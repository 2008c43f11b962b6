"""Interleaving against an A/B split, in the simulator: how many cases each needs to pick the truly better model.

    python -m bench.interleaving [--gaps 0.005,0.01,0.02] [--click-model pbm|cascade] [--cases 100000]

Pairs of rankers with a known truth gap in nDCG@5 (bench.truth's measure): both are blends of the legacy sum and an
oracle trained on the true grades, the better one closer to the oracle, each blend found by bisection on the truth
set. The same simulated cases go through three arms, each with its own clients' clicks:
- interleaved: a team-draft of the two rankings (their common beginning shared, credited to neither); a case is a
  win for the team whose candidates got more graded actions, a loss, or a tie (interleaving.py);
- A/B: the case is shown in one model's order; its conversion (a signed contract) and its Hit@3 (a positive action
  in the top 3) are counted for that model.

From the per-case rates measured over --cases cases follow the cases needed for a two-sided test at 95% confidence to
pick the better model with 95% power: for interleaving, the verdict's own test (the Wilson interval of the
challenger's share of decided cases wholly above one half), by exact binomial sums; for A/B, two proportions with
half the cases in each arm, by the normal approximation (its counts are large). Then
--trials repeated experiments of exactly the interleaving's needed size check how often it picks the better model,
and how often the worse one, at 95% confidence. Everything runs in one process, in the same simulator run.
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
from dataclasses import dataclass

import numpy as np

from bench.truth import NAMES, Blend, Truth, click_model
from ltr_pipeline.config import Settings
from ltr_pipeline.interleaving import CHALLENGER, LIVE, case_credit, judge, team_draft, wilson
from ltr_pipeline.logs import configure_logging
from ltr_pipeline.measures import rank_order
from ltr_pipeline.scoring import Scorer, WeightedSumScorer, default_weights
from ltr_pipeline.simulate import Marketplace, SimConfig, _draw_case, make_marketplace

Z975, Z95 = 1.959963984540054, 1.6448536269514722
GRADES = {"clicked": 1, "accepted": 2, "contracted": 3}


@dataclass
class Arms:
    wins: int = 0
    losses: int = 0
    ties: int = 0
    conversions: tuple[int, int] = (0, 0)  # (champion, challenger) in the A/B arm, over `cases` each
    hits: tuple[int, int] = (0, 0)
    cases: int = 0


def _find_blend(truth: Truth, legacy: Scorer, oracle: Scorer, target: float) -> tuple[Blend, float]:
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        if truth.ndcg5(Blend(legacy, oracle, mid)) < target:
            lo = mid
        else:
            hi = mid
    blend = Blend(legacy, oracle, (lo + hi) / 2)
    return blend, truth.ndcg5(blend)


def _grades(acts, k: int) -> list[int]:
    return [GRADES.get(acts.action(p) or "", 0) for p in range(k)]


def simulate(sim: SimConfig, a: Scorer, b: Scorer, cases: int, seed: int) -> Arms:
    """The three arms over the same `cases` new cases, each arm with its own clicks."""
    market = make_marketplace(sim)
    rng, coin = np.random.default_rng([seed, 99]), random.Random(seed)
    k = sim.candidates
    feats, utilities = [], []
    for _ in range(cases):
        _, f, u = _draw_case(market, rng, k)
        feats.append(np.column_stack([f[n] for n in NAMES]))
        utilities.append(u)
    matrix = np.vstack(feats)
    score_a, score_b = a.score(matrix), b.score(matrix)
    out = Arms(cases=cases)
    conv, hits = [0, 0], [0, 0]
    for case in range(cases):
        lo, u = case * k, utilities[case]
        order_a, order_b = rank_order(score_a[lo:lo + k]), rank_order(score_b[lo:lo + k])
        shown, teams = team_draft(order_a.tolist(), order_b.tolist(), coin)
        acts = sim.click_model.act(rng, u[shown], 1.0)
        live, challenger = case_credit(teams, _grades(acts, k))
        out.wins += challenger > live
        out.losses += live > challenger
        out.ties += live == challenger and live > 0
        for arm, order in enumerate((order_a, order_b)):
            acts = sim.click_model.act(rng, u[order], 1.0)
            grades = _grades(acts, k)
            conv[arm] += any(g == 3 for g in grades)
            hits[arm] += any(g > 0 for g in grades[:3])
    out.conversions, out.hits = (conv[0], conv[1]), (hits[0], hits[1])
    return out


def needed_interleaving(arms: Arms, power: float = 0.95) -> float:
    """Cases for the verdict's own test (the Wilson 95% interval of the challenger's share of decided cases wholly
    above one half) to pick the better model with `power`, given the measured share of cases decided and the
    challenger's share of them: exact binomial sums, the smallest such size found by bisection."""
    decided_rate, q = (arms.wins + arms.losses) / arms.cases, arms.wins / (arms.wins + arms.losses)
    normal = ((Z975 * 0.5 + Z95 * math.sqrt(q * (1 - q))) / (q - 0.5)) ** 2 / decided_rate  # a first guess
    lo, hi = 1, max(2, math.ceil(normal))
    while _power(hi, decided_rate, q) < power:
        lo, hi = hi, hi * 2
    while hi - lo > max(1, hi // 1000):
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _power(mid, decided_rate, q) >= power else (mid, hi)
    return float(hi)


def _log_pmf(k: np.ndarray, n: int, p: float) -> np.ndarray:
    """log P(Binomial(n, p) = k)."""
    lf = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])
    return lf[n] - lf[k] - lf[n - k] + k * math.log(p) + (n - k) * math.log1p(-p)


def _power(cases: int, decided_rate: float, q: float) -> float:
    """P(the Wilson interval of wins/decided lies above 1/2) when each of `cases` is decided with `decided_rate` and
    won with `q` once decided."""
    spread = 9 * math.sqrt(cases * decided_rate * (1 - decided_rate)) + 1
    ds = np.arange(max(1, int(cases * decided_rate - spread)), min(cases, int(cases * decided_rate + spread)) + 1)
    total = 0.0
    for d, p_d in zip(ds.tolist(), np.exp(_log_pmf(ds, cases, decided_rate)).tolist(), strict=True):
        least = _fewest_wins(d)
        if least <= d:
            total += p_d * float(np.exp(_log_pmf(np.arange(least, d + 1), d, q)).sum())
    return total


def _fewest_wins(decided: int) -> int:
    """The fewest wins out of `decided` whose Wilson interval lies wholly above one half (decided + 1: none)."""

    def above(wins: int) -> bool:
        return wilson(wins, decided)[0] > 0.5

    return bisect.bisect_left(range(decided + 1), True, key=above)


def needed_ab(counts: tuple[int, int], cases: int) -> float:
    """Cases (both arms together) for a two-sided 95% test of two proportions, with 95% power."""
    pa, pb = counts[0] / cases, counts[1] / cases
    if pa == pb:
        return math.inf
    return 2 * (Z975 + Z95) ** 2 * (pa * (1 - pa) + pb * (1 - pb)) / (pa - pb) ** 2


def trials(sim: SimConfig, a: Scorer, b: Scorer, cases: int, runs: int, seed: int) -> tuple[int, int]:
    """(better picked, worse picked) at 95% confidence over `runs` interleaving experiments of `cases` cases."""
    right = wrong = 0
    for t in range(runs):
        arms = simulate_interleaving_only(sim, a, b, cases, seed + 1000 + t)
        v = judge(arms[0], arms[1], 0, "a", "b")
        right += v.preferred == CHALLENGER
        wrong += v.preferred == LIVE
    return right, wrong


def simulate_interleaving_only(sim: SimConfig, a: Scorer, b: Scorer, cases: int, seed: int) -> tuple[int, int]:
    market = make_marketplace(sim)
    rng, coin = np.random.default_rng([seed, 98]), random.Random(seed)
    k = sim.candidates
    draws = [_draw_case(market, rng, k) for _ in range(cases)]
    matrix = np.vstack([np.column_stack([f[n] for n in NAMES]) for _, f, _ in draws])
    score_a, score_b = a.score(matrix), b.score(matrix)
    wins = losses = 0
    for case, (_, _, u) in enumerate(draws):
        lo = case * k
        shown, teams = team_draft(rank_order(score_a[lo:lo + k]).tolist(), rank_order(score_b[lo:lo + k]).tolist(),
                                  coin)
        live, challenger = case_credit(teams, _grades(sim.click_model.act(rng, u[shown], 1.0), k))
        wins += challenger > live
        losses += live > challenger
    return wins, losses


def instrument(click: str, seed: int) -> tuple[SimConfig, Marketplace, Truth, Scorer]:
    """The simulator with `click` clients, its marketplace, 4,000 truth cases to measure on, and the oracle (20,000
    other cases)."""
    configure_logging(stream=None)
    sim = SimConfig(seed=seed, click_model=click_model(click, 0.5))
    market = make_marketplace(sim)
    truth = Truth.draw(market, 4000, seed, sim.candidates)
    return sim, market, truth, Truth.draw(market, 20000, seed + 1, sim.candidates).oracle(Settings())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gaps", default="0.005,0.01,0.02", type=lambda s: [float(g) for g in s.split(",")])
    parser.add_argument("--click-model", default="pbm", choices=["pbm", "cascade", "trust"])
    parser.add_argument("--cases", type=int, default=100_000, help="cases simulated per pair to measure the rates")
    parser.add_argument("--trials", type=int, default=100, help="repeated interleaving experiments per pair")
    parser.add_argument("--base", type=float, default=0.03, help="the champion's truth gap to the oracle")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    sim, _, truth, oracle = instrument(args.click_model, args.seed)
    legacy = WeightedSumScorer(default_weights(NAMES), NAMES)
    top = truth.ndcg5(oracle)
    print(f"# click model {sim.click_model.name}; truth-nDCG@5: legacy {truth.ndcg5(legacy):.4f}, oracle {top:.4f}; "
          f"{args.cases} cases per pair, {args.trials} trials", flush=True)
    print(f"{'gap':>6} {'champion':>9} {'challenger':>10} {'interleaving':>12} {'A/B conversion':>15} "
          f"{'A/B Hit@3':>10} {'ratio':>7} {'picked better':>13} {'picked worse':>12}", flush=True)
    for gap in args.gaps:
        champion, t_a = _find_blend(truth, legacy, oracle, top - args.base)
        challenger, t_b = _find_blend(truth, legacy, oracle, t_a + gap)
        arms = simulate(sim, champion, challenger, args.cases, args.seed)
        n_il = needed_interleaving(arms)
        n_conv, n_hit = needed_ab(arms.conversions, arms.cases), needed_ab(arms.hits, arms.cases)
        right, wrong = trials(sim, champion, challenger, math.ceil(n_il), args.trials, args.seed)
        print(f"{t_b - t_a:6.4f} {t_a:9.4f} {t_b:10.4f} {n_il:12,.0f} {n_conv:15,.0f} {n_hit:10,.0f} "
              f"{min(n_conv, n_hit) / n_il:7.1f} {right:>6}/{args.trials:<6} {wrong:>5}/{args.trials:<6}", flush=True)


if __name__ == "__main__":
    main()
