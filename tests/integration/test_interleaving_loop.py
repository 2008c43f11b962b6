"""Interleaving through the pipeline: events carrying teams -> per-day verdicts -> promotion through the registry."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import numpy as np

from ltr_pipeline import pipeline
from ltr_pipeline.config import Settings
from ltr_pipeline.events.schema import Event
from ltr_pipeline.interleaving import CHALLENGER, team_draft
from ltr_pipeline.registry import ModelRegistry
from ltr_pipeline.simulate import write_day
from tests.integration.test_service import _model_files

DAY = date(2026, 11, 20)


def _interleaved_day(day: date, live: str, challenger: str, cases: int, challenger_wins: float, seed: int
                     ) -> list[Event]:
    """Interleaved cases where clients act on a challenger-picked candidate with probability `challenger_wins`."""
    rng, coin = np.random.default_rng(seed), random.Random(seed)
    events: list[Event] = []
    start = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
    for case in range(cases):
        case_id = f"c-{day}-{case}"
        shown, teams = team_draft(list(range(6)), [5, 4, 3, 2, 1, 0], coin)
        ts = start + timedelta(seconds=case)
        for position, (item, team) in enumerate(zip(shown, teams, strict=True), start=1):
            events.append(Event(f"r-{case_id}-{position}", "recommendation", ts, case_id, f"l-{item}",
                                position=position, features=dict.fromkeys("ASTGQURC", 0.5), model_version=live,
                                algorithm="ltr", team=team, challenger_version=challenger))
        wanted = CHALLENGER if rng.random() < challenger_wins else "live"
        item = shown[teams.index(wanted)]
        events.append(Event(f"f-{case_id}", "feedback", ts + timedelta(minutes=3), case_id, f"l-{item}",
                            action="accepted"))
    return events


def test_interleaving_verdicts_promote_the_preferred_challenger_audited(settings: Settings) -> None:
    registry = ModelRegistry.from_settings(settings)
    v1 = registry.publish(_model_files(1), {}, now=datetime(2026, 11, 18, 2, 15, tzinfo=UTC))
    v2 = registry.publish(_model_files(2), {}, now=datetime(2026, 11, 19, 2, 15, tzinfo=UTC))
    registry.rollback(v1, reason="v2 waits as the challenger")
    for offset, share in enumerate((0.6, 0.62)):
        day = DAY + timedelta(days=offset)
        write_day(_interleaved_day(day, v1, v2, 300, share, offset), settings.events_path, day)
    cfg = settings.model_copy(update={"train_days": 2, "interleave_min_cases": 100})
    run = pipeline.Run(cfg, DAY + timedelta(days=1))
    pipeline.extract(run)

    off = pipeline.promote(run)  # promotion is off by default: the verdict is recorded, nothing moves
    assert off.promoted_version is None and registry.live_version() == v1
    assert off.verdict is not None and off.verdict.preferred == CHALLENGER and off.verdict.cases == 600
    days = run.load("interleaving.json", list)
    assert [d["day"] for d in days] == ["2026-11-20", "2026-11-21"] and all(d["cases"] == 300 for d in days)

    on = pipeline.promote(run, enabled=True)
    assert on.promoted_version == v2 and registry.live_version() == v2
    entry = registry.audit_log()[-1]
    assert entry["action"] == "promote" and entry["version"] == v2 and entry["previous"] == v1
    assert entry["cases"] == 600 and entry["low"] > 0.5


def test_no_preference_promotes_nothing(settings: Settings) -> None:
    registry = ModelRegistry.from_settings(settings)
    v1 = registry.publish(_model_files(1), {}, now=datetime(2026, 11, 18, 2, 15, tzinfo=UTC))
    write_day(_interleaved_day(DAY, v1, "20261119_0215", 300, 0.5, 3), settings.events_path, DAY)
    run = pipeline.Run(settings.model_copy(update={"train_days": 1}), DAY)
    pipeline.extract(run)
    outcome = pipeline.promote(run, enabled=True)
    assert outcome.verdict is not None and outcome.verdict.preferred == "neither"
    assert outcome.promoted_version is None and registry.live_version() == v1
