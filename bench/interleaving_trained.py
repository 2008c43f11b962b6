"""Interleaving on pairs of independently trained models, with and without the shared places, against an A/B split.

    python -m bench.interleaving_trained [--click-model pbm|cascade] [--cases 60000] [--weak 1500,4000]

bench.interleaving's pairs are blends of the same two scorers, so every place where they differ is one where the
oracle and the legacy sum disagree. Here the pairs differ in many unrelated places, as two trained models do: the
better model is LightGBM trained on 20,000 cases' true grades (bench.truth's oracle), the worse the same trained on
--weak cases. The same new cases go through two interleavings of the pair, each with its own clients' clicks: the
product's team-draft (the rankings' common beginning shared, credited to neither team), and the team-draft as it was
before that (every place drafted, `plain_draft` below), and through an A/B split on Hit@3. Cases needed as in
bench.interleaving: the verdict's own Wilson test by exact binomial sums; A/B by the normal approximation.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Sequence

import numpy as np

from bench.interleaving import Arms, _grades, instrument, needed_ab, needed_interleaving
from bench.truth import NAMES, Truth
from ltr_pipeline.config import Settings
from ltr_pipeline.interleaving import CHALLENGER, LIVE, case_credit, team_draft
from ltr_pipeline.measures import rank_order
from ltr_pipeline.simulate import _draw_case

Draft = Callable[[Sequence[int], Sequence[int], random.Random], tuple[list[int], list[str]]]


def plain_draft(live: Sequence[int], challenger: Sequence[int], rng: random.Random) -> tuple[list[int], list[str]]:
    """The baseline: team-draft with every place drafted, the common beginning too (the product before 909ddf9)."""
    shown: list[int] = []
    teams: list[str] = []
    at = {LIVE: 0, CHALLENGER: 0}
    picks = {LIVE: 0, CHALLENGER: 0}
    while len(shown) < len(live):
        even = picks[LIVE] == picks[CHALLENGER]
        team = LIVE if picks[LIVE] < picks[CHALLENGER] or (even and rng.random() < 0.5) else CHALLENGER
        ranking = live if team == LIVE else challenger
        while ranking[at[team]] in shown:
            at[team] += 1
        shown.append(ranking[at[team]])
        teams.append(team)
        picks[team] += 1
    return shown, teams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--click-model", default="pbm", choices=["pbm", "cascade", "trust"])
    parser.add_argument("--cases", type=int, default=60_000)
    parser.add_argument("--weak", default="1500,4000", type=lambda s: [int(n) for n in s.split(",")],
                        help="cases the worse model of each pair trains on")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    sim, market, truth, better = instrument(args.click_model, args.seed)
    k, top = sim.candidates, truth.ndcg5(better)
    print(f"# click model {sim.click_model.name}; better model {top:.4f}; {args.cases} cases a pair", flush=True)
    for weak_cases in args.weak:
        worse = Truth.draw(market, weak_cases, args.seed + 2, sim.candidates).oracle(Settings())
        rng = np.random.default_rng([args.seed, 5])
        draws = [_draw_case(market, rng, k) for _ in range(args.cases)]
        matrix = np.vstack([np.column_stack([f[n] for n in NAMES]) for _, f, _ in draws])
        score_a, score_b = worse.score(matrix), better.score(matrix)
        drafts: dict[str, tuple[Draft, random.Random, Arms]] = {
            "shared": (team_draft, random.Random(1), Arms(cases=args.cases)),
            "plain": (plain_draft, random.Random(1), Arms(cases=args.cases))}
        hits = [0, 0]
        for case, (_, _, u) in enumerate(draws):
            lo = case * k
            orders = rank_order(score_a[lo:lo + k]).tolist(), rank_order(score_b[lo:lo + k]).tolist()
            for draft, coin, arms in drafts.values():
                shown, teams = draft(*orders, coin)
                live, challenger = case_credit(teams, _grades(sim.click_model.act(rng, u[shown], 1.0), k))
                arms.wins += challenger > live
                arms.losses += live > challenger
            for arm, order in enumerate(orders):
                hits[arm] += any(g > 0 for g in _grades(sim.click_model.act(rng, u[np.asarray(order)], 1.0), k)[:3])
        ab = needed_ab((hits[0], hits[1]), args.cases)
        line = f"gap {top - truth.ndcg5(worse):.4f}: A/B on Hit@3 needs {ab:,.0f}"
        for name, (_, _, arms) in drafts.items():
            share = arms.wins / (arms.wins + arms.losses)
            needed = needed_interleaving(arms) if share > 0.5 else float("inf")
            line += (f"; {name}: share {share:.3f} of {(arms.wins + arms.losses) / args.cases:.0%} decided, "
                     f"needs {needed:,.0f} ({ab / needed:.1f}x fewer)")
        print(line, flush=True)


if __name__ == "__main__":
    main()
