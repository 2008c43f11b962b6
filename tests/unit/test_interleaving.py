"""Team-draft interleaving: every candidate once, both teams fairly represented, the rankings' common beginning
credited to neither, credit and verdict by hand."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from ltr_pipeline.interleaving import CHALLENGER, LIVE, SHARED, case_credit, team_draft, verdict, wilson


def test_an_interleaved_list_never_repeats_or_drops_a_candidate_and_the_teams_take_turns() -> None:
    rng = random.Random(0)
    firsts: Counter[str] = Counter()
    shared_runs = 0
    for trial in range(3000):
        n = 2 + trial % 19
        live = list(range(n))
        challenger = live.copy()
        shuffler = random.Random(trial)
        if trial % 3:  # two in three with a common beginning of some length
            start = shuffler.randrange(n - 1)
            tail = challenger[start:]
            shuffler.shuffle(tail)
            challenger[start:] = tail
        else:
            shuffler.shuffle(challenger)
        common = next((i for i in range(n) if live[i] != challenger[i]), n)
        shown, teams = team_draft(live, challenger, rng)
        assert sorted(shown) == live  # no repeat, no drop
        assert len(teams) == n and set(teams) <= {LIVE, CHALLENGER, SHARED}
        assert teams[:common] == [SHARED] * common and shown[:common] == live[:common]  # both put them there
        drafted = teams[common:]
        assert SHARED not in drafted
        for k in range(2, len(drafted) + 1, 2):  # after every round both teams have picked the same number of times
            assert Counter(drafted[:k])[LIVE] == k // 2
        if drafted:
            firsts[drafted[0]] += 1
        shared_runs += common > 0
    assert shared_runs > 1000  # the common beginnings were exercised
    assert abs(firsts[LIVE] / firsts.total() - 0.5) < 0.04  # the coin flip decides who picks first


def test_each_team_picks_its_own_best_remaining_candidate() -> None:
    shown, teams = team_draft([0, 1, 2, 3], [0, 1, 2, 3], random.Random(1))
    assert shown == [0, 1, 2, 3] and teams == [SHARED] * 4  # identical rankings: nothing to tell them apart
    shown, teams = team_draft([0, 1, 2, 3], [3, 2, 1, 0], random.Random(2))
    for place, (item, team) in enumerate(zip(shown, teams, strict=True)):
        own = [0, 1, 2, 3] if team == LIVE else [3, 2, 1, 0]
        assert item == next(c for c in own if c not in shown[:place])


def test_actions_on_the_common_beginning_credit_neither_team_and_random_clients_favour_neither() -> None:
    """A client who acts on a candidate both models put first says nothing of which is better: no win, no loss.
    Clients who act at random, whatever the teams, leave the challenger's share of decided cases at one half."""
    shown, teams = team_draft([0, 1, 2, 3, 4], [0, 1, 3, 2, 4], random.Random(3))
    assert shown[:2] == [0, 1]
    assert teams[:2] == [SHARED, SHARED]
    assert case_credit(teams, [3, 1, 0, 0, 0]) == (0, 0)
    rng, coin = random.Random(4), random.Random(5)
    wins = losses = 0
    for _ in range(20000):
        live = list(range(8))
        challenger = [0, 1, *rng.sample(range(2, 8), 6)]
        _, teams = team_draft(live, challenger, coin)
        grades = [int(rng.random() < 0.3 / (1 + p)) for p in range(8)]  # examination falls with the position
        credit_live, credit_challenger = case_credit(teams, grades)
        wins += credit_challenger > credit_live
        losses += credit_live > credit_challenger
    assert abs(wins / (wins + losses) - 0.5) < 0.02


def test_credit_and_verdict_by_hand() -> None:
    assert case_credit([LIVE, CHALLENGER, LIVE, CHALLENGER], [0, 2, 1, 0]) == (1, 2)
    credits = [(0, 1)] * 70 + [(1, 0)] * 30 + [(1, 1)] * 10
    v = verdict(credits, "v1", "v2", "2026-11-28", min_cases=50)
    assert (v.wins, v.losses, v.ties, v.cases) == (70, 30, 10, 110)
    assert v.share == pytest.approx(0.7) and (v.low, v.high) == pytest.approx(wilson(70, 100))
    assert v.low > 0.5 and v.preferred == CHALLENGER
    assert verdict([(1, 0)] * 70 + [(0, 1)] * 30, "v1", "v2").preferred == LIVE
    assert verdict([(1, 0)] * 52 + [(0, 1)] * 48, "v1", "v2").preferred == "neither"
    assert verdict([(0, 1)] * 20, "v1", "v2", min_cases=50).preferred == "insufficient data"


def test_wilson_matches_the_textbook() -> None:
    low, high = wilson(81, 263)  # Wilson (1927) via Newcombe (1998), example: 81/263
    assert low == pytest.approx(0.2553, abs=1e-4) and high == pytest.approx(0.3662, abs=1e-4)


def test_the_team_memory_answers_for_recent_cases_and_forgets_the_oldest() -> None:
    from ltr_pipeline.service.interleave import TeamMemory

    memory = TeamMemory(capacity=2)
    memory.remember("c1", ["l2", "l1"], [CHALLENGER, LIVE])
    memory.remember("c2", ["l1", "l3"], [LIVE, CHALLENGER])
    assert memory.team("c1", "l1") == LIVE and memory.team("c1", "l2") == CHALLENGER
    assert memory.team("c1", "l9") is None and memory.team("c9", "l1") is None
    memory.remember("c3", ["l4"], [LIVE])
    assert memory.team("c1", "l1") is None  # the oldest case is forgotten past the capacity
    assert memory.team("c2", "l3") == CHALLENGER and memory.team("c3", "l4") == LIVE


def test_the_challenger_is_scored_beside_the_request_or_by_it_and_its_failures_come_back_as_outcomes() -> None:
    import threading

    import numpy as np

    from ltr_pipeline.scoring import Scorer
    from ltr_pipeline.service.interleave import RivalScorer

    class Rival(Scorer):
        algorithm, backend = "ltr", "test"

        def __init__(self, fail: bool = False, gate: threading.Event | None = None) -> None:
            self.fail, self.gate, self.threads, self.started = fail, gate, list[str](), threading.Event()

        def score(self, features: np.ndarray) -> np.ndarray:
            self.threads.append(threading.current_thread().name)
            self.started.set()
            if self.gate is not None and not self.gate.wait(timeout=30):
                raise AssertionError("never let through")
            if self.fail:
                raise RuntimeError("truncated forest")
            return features.sum(axis=1)

    def scores(outcome: np.ndarray | Exception) -> list[float]:
        assert isinstance(outcome, np.ndarray), outcome
        return list(outcome.tolist())

    matrix, here = np.arange(6.0).reshape(3, 2), threading.current_thread().name
    rival = RivalScorer(parallel=True)
    rival.start()
    gate = threading.Event()
    beside = Rival(gate=gate)
    pending = rival.submit(beside, matrix)
    assert beside.started.wait(timeout=30)  # the thread scores while the request goes on (the live model's turn)
    queued = Rival()
    waiting = rival.submit(queued, matrix)  # the thread is busy: the request scores it itself, without waiting
    assert scores(waiting.result()) == [1.0, 5.0, 9.0] and queued.threads == [here]
    gate.set()
    assert scores(pending.result()) == [1.0, 5.0, 9.0] and beside.threads == ["ltr-interleave"]
    failed = Rival(fail=True, gate=gate)
    outcome = rival.submit(failed, matrix)
    assert failed.started.wait(timeout=30)
    assert isinstance(error := outcome.result(), RuntimeError) and "truncated" in str(error)
    assert failed.threads == ["ltr-interleave"]
    survivor = Rival(gate=gate)
    outcome = rival.submit(survivor, matrix)
    assert survivor.started.wait(timeout=30)  # the thread outlives a failure
    assert scores(outcome.result()) == [1.0, 5.0, 9.0] and survivor.threads == ["ltr-interleave"]
    rival.close()
    after = Rival()
    assert scores(rival.submit(after, matrix).result()) == [1.0, 5.0, 9.0] and after.threads == [here]
    alone = RivalScorer(parallel=False)  # one usable core: nothing to overlap, never a thread
    alone.start()
    assert isinstance(alone.submit(Rival(fail=True), matrix).result(), RuntimeError)
    alone.close()
