"""Team-draft interleaving (Radlinski, Kurup and Joachims, CIKM 2008) and its credit: pure functions.

Interleaving shows one list made from two rankings. Where both rankings begin with the same candidates, in the same
order, those places are shown first and belong to neither team ("shared"): both models put them there, so an action
on them says nothing about which is better, and crediting them to a team by coin flip only adds noise (under cascade
clients, whose actions cluster at the top, most of it). After that, each round, the team with fewer picks so far (a
coin flip when even) adds its best candidate not yet shown; every position remembers the team that picked it.
Clients act on one list, so both rankings meet the same clients, the same candidates and the same position bias, and
a case's graded actions credit the team that contributed each candidate. A case is a win for the team with more
credit, a tie otherwise; the verdict is the challenger's share of the cases that were not ties, with a Wilson 95%
interval, and the challenger (or the live model) is preferred once that interval lies wholly above (or below) one
half.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence

from ltr_pipeline.events.schema import TEAMS
from ltr_pipeline.record import InterleavingVerdict

LIVE, CHALLENGER, SHARED = TEAMS  # the team names, as the event contract declares them
Z95 = 1.959963984540054


def team_draft(live: Sequence[int], challenger: Sequence[int], rng: random.Random) -> tuple[list[int], list[str]]:
    """One list from two rankings of the same candidates (indices, best first): (order shown, team of each place)."""
    n = len(live)
    at_live = 0
    while at_live < n and live[at_live] == challenger[at_live]:  # the rankings' common beginning: nobody's credit
        at_live += 1
    shown = list(live[:at_live])
    teams = [SHARED] * at_live
    taken = bytearray(max(max(live, default=0), max(challenger, default=0)) + 1)
    for item in shown:
        taken[item] = 1
    at_challenger = at_live
    picks_live = picks_challenger = 0
    while len(shown) < n:  # on the service's hot path: plain locals, a coin only when the teams are even
        if picks_live < picks_challenger or (picks_live == picks_challenger and rng.random() < 0.5):
            while taken[live[at_live]]:
                at_live += 1
            item = live[at_live]
            teams.append(LIVE)
            picks_live += 1
        else:
            while taken[challenger[at_challenger]]:
                at_challenger += 1
            item = challenger[at_challenger]
            teams.append(CHALLENGER)
            picks_challenger += 1
        shown.append(item)
        taken[item] = 1
    return shown, teams


def case_credit(teams: Sequence[str | None], grades: Sequence[float]) -> tuple[float, float]:
    """(live credit, challenger credit) of one case: the grades of the candidates each team contributed (the shared
    places credit neither)."""
    live = sum(g for t, g in zip(teams, grades, strict=True) if t == LIVE)
    challenger = sum(g for t, g in zip(teams, grades, strict=True) if t == CHALLENGER)
    return live, challenger


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def verdict(credits: Iterable[tuple[float, float]], live_version: str | None, challenger_version: str | None,
            day: str | None = None, min_cases: int = 1) -> InterleavingVerdict:
    """Wins, losses and ties of the challenger over the cases' (live, challenger) credits, and what they say."""
    wins = losses = ties = 0
    for live, challenger in credits:
        if challenger > live:
            wins += 1
        elif live > challenger:
            losses += 1
        else:
            ties += 1
    return judge(wins, losses, ties, live_version, challenger_version, day, min_cases)


def judge(wins: int, losses: int, ties: int, live_version: str | None, challenger_version: str | None,
          day: str | None = None, min_cases: int = 1) -> InterleavingVerdict:
    """What the challenger's wins, losses and ties say: its share of the decided cases, with a Wilson 95% interval."""
    decided = wins + losses
    low, high = wilson(wins, decided)
    if decided < min_cases:
        preferred = "insufficient data"
    elif low > 0.5:
        preferred = CHALLENGER
    elif high < 0.5:
        preferred = LIVE
    else:
        preferred = "neither"
    return InterleavingVerdict(
        day=day, live_version=live_version, challenger_version=challenger_version, cases=decided + ties,
        wins=wins, losses=losses, ties=ties, share=wins / decided if decided else None, low=low, high=high,
        preferred=preferred,
    )


def combine(verdicts: Sequence[InterleavingVerdict], min_cases: int = 1) -> InterleavingVerdict:
    """One verdict over several days of the same pair: their cases pooled."""
    first = verdicts[0]
    return judge(sum(v.wins for v in verdicts), sum(v.losses for v in verdicts), sum(v.ties for v in verdicts),
                 first.live_version, first.challenger_version, None, min_cases)
