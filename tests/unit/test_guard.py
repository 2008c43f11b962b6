"""The guard: its measures (PSI, the mSPRT, a histogram's p95) and its decisions on a local registry and real event
files: a skewed, a failing or a disengaging version is rolled back once, a healthy one is left alone."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest

from ltr_pipeline.config import Settings
from ltr_pipeline.events.schema import Event
from ltr_pipeline.guard import Guard, bad_days, feature_reference, histogram_p95, msprt, psi
from ltr_pipeline.record import to_builtins
from ltr_pipeline.registry import ModelRegistry
from ltr_pipeline.simulate import write_day
from ltr_pipeline.storage.local import LocalStore

NAMES = ("A", "S", "T", "G", "Q", "U", "R", "C")
T0 = datetime(2026, 11, 20, 2, 15, tzinfo=UTC)  # the first version goes live
T1 = T0 + timedelta(days=3)  # the second one


def test_psi_is_small_for_the_same_distribution_and_large_for_a_rescaled_one() -> None:
    rng = np.random.default_rng(0)
    train = rng.random((5000, 1))
    train[::20, 0] = np.nan
    ref = feature_reference(train, ["x"])["x"]
    assert sum(ref.shares) == pytest.approx(1) and ref.missing == pytest.approx(0.05)
    same = rng.random(2000)
    same[::20] = np.nan
    assert psi(ref, same) < 0.02
    assert psi(ref, same * 100) > 2  # a feature scaled differently in serving than in training
    assert psi(ref, np.full(500, np.nan)) > 2  # a feature the clients stopped sending


def test_msprt_grows_with_evidence_of_a_difference_only() -> None:
    assert msprt(300, 500, 600, 1000) < 1  # equal rates
    assert msprt(100, 500, 600, 1000) > 1e6  # 0.2 against 0.6
    assert msprt(50, 100, 600, 1000) < msprt(250, 500, 600, 1000)  # the same drop, more cases: more evidence
    assert msprt(0, 0, 600, 1000) == 0.0


def test_histogram_p95_reads_the_bucket_holding_the_95th_percentile() -> None:
    bounds = [0.001, 0.01, 0.1, float("inf")]
    assert histogram_p95(bounds, [90, 96, 100, 100]) == 0.01
    assert histogram_p95(bounds, [0, 0, 0, 0]) is None
    assert histogram_p95(bounds, [0, 0, 0, 5]) == float("inf")


def _model(seed: int) -> dict[str, bytes]:
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    x = rng.random((200, len(NAMES)))
    booster = lgb.train({"objective": "lambdarank", "verbosity": -1, "min_data_in_leaf": 5, "seed": seed},
                        lgb.Dataset(x, (x[:, 0] * 3).astype(int), group=[10] * 20), num_boost_round=3)
    return {"model.txt": booster.model_to_string().encode(),
            "ltr_weights.json": orjson.dumps(dict.fromkeys(NAMES, 1 / len(NAMES)))}


def _reference(scale: float = 1.0) -> dict[str, object]:
    train = np.random.default_rng(1).random((3000, len(NAMES))) * scale
    return to_builtins(feature_reference(train, NAMES))


def _day(version: str, start: datetime, cases: int, engaged: float, seed: int, legacy: bool = False
         ) -> list[Event]:
    """`cases` cases of 10 candidates ranked by `version`, one per 2 minutes from `start`; a share `engaged` of
    them with a click on the top candidate a minute later."""
    rng = np.random.default_rng(seed)
    events = []
    for case in range(cases):
        ts = start + timedelta(minutes=2 * case)
        case_id = f"c-{version}-{start:%d}-{case}"
        for pos in range(1, 11):
            events.append(Event(f"r-{case_id}-{pos}", "recommendation", ts, case_id, f"l-{pos}", position=pos,
                                features=dict(zip(NAMES, rng.random(len(NAMES)).tolist(), strict=True)),
                                model_version=version, algorithm="legacy" if legacy else "ltr"))
        if rng.random() < engaged:
            events.append(Event(f"f-{case_id}", "feedback", ts + timedelta(minutes=1), case_id, "l-1",
                                action="clicked"))
    return events


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, registry_uri=str(tmp_path / "registry"), guard_min_cases=50, guard_min_rows=300,
                    guard_feedback_seconds=600)


def _setup(settings: Settings, second_scale: float = 1.0) -> tuple[ModelRegistry, str, str]:
    """Two versions: the first live for three days with healthy traffic, the second just published."""
    registry = ModelRegistry(LocalStore(settings.registry))
    first = registry.publish(_model(1), {"reference": _reference()}, now=T0)
    for d in range(3):
        day = T0 + timedelta(days=d)
        write_day(_day(first, day, 200, 0.6, seed=d), settings.events_path, day.date())
    second = registry.publish(_model(2), {"reference": _reference(second_scale)}, now=T1)
    return registry, first, second


def _serve(settings: Settings, version: str, cases: int, engaged: float = 0.6, legacy: bool = False) -> datetime:
    """The second version's traffic from when it went live; returns the time of a check after it."""
    write_day(_day(version, T1, cases, engaged, seed=99, legacy=legacy), settings.events_path, T1.date())
    return T1 + timedelta(minutes=2 * cases + 30)


def test_a_healthy_version_is_left_alone(settings: Settings) -> None:
    registry, first, second = _setup(settings)
    report = Guard(settings, registry).check(_serve(settings, second, 300))
    assert report.previous == first and report.cases == 300
    assert {c.name: c.verdict for c in report.checks} == {
        "fallback rate": "pass", "latency p95 (ms)": "insufficient data", "feature drift (PSI)": "pass",
        "engagement (mSPRT)": "pass"}
    assert report.action == "none" and registry.live_version() == second and registry.bad_versions() == {}


def test_a_skewed_version_is_rolled_back_once_and_audited_as_automatic(settings: Settings) -> None:
    registry, first, second = _setup(settings, second_scale=0.01)  # trained on a feature scale clients do not send
    now = _serve(settings, second, 40)
    notified: list[object] = []
    report = Guard(settings, registry, notify=notified.append).check(now)
    assert [c.name for c in report.failed] == ["feature drift (PSI)"]
    assert report.action == "rolled_back" and report.rolled_back_to == first
    assert registry.live_version() == first and notified == [report]
    rollback = [a for a in registry.audit_log() if a["action"] == "rollback"]
    assert len(rollback) == 1 and rollback[0]["automatic"] is True and rollback[0]["bad_version"] == second
    assert "feature drift" in rollback[0]["reason"] and rollback[0]["at"] == now.isoformat()
    assert registry.bad_versions()[second]["rolled_back_to"] == first
    assert bad_days(registry.bad_versions()) == {now.date(): 1}
    # The guard now watches the restored version, compared with nothing bad; it stays.
    again = Guard(settings, registry).check(now + timedelta(minutes=5))
    assert again.version == first and again.previous is None and again.action == "none"


def test_a_version_whose_scores_fall_back_is_rolled_back(settings: Settings) -> None:
    registry, first, second = _setup(settings)
    report = Guard(settings, registry).check(_serve(settings, second, 60, legacy=True))
    assert [c.name for c in report.failed] == ["fallback rate"] and registry.live_version() == first


def test_a_collapse_of_engagement_is_caught_by_the_sequential_test(settings: Settings) -> None:
    registry, first, second = _setup(settings)
    report = Guard(settings, registry).check(_serve(settings, second, 150, engaged=0.2))
    assert [c.name for c in report.failed] == ["engagement (mSPRT)"]
    assert report.rolled_back_to == first


def test_alert_mode_marks_and_notifies_without_rolling_back(settings: Settings) -> None:
    settings = settings.model_copy(update={"guard_action": "alert"})
    registry, _, second = _setup(settings, second_scale=0.01)
    report = Guard(settings, registry, notify=lambda _: None).check(_serve(settings, second, 40))
    assert report.action == "flagged" and registry.live_version() == second
    assert registry.bad_versions()[second]["action"] == "flagged"
    assert Guard(settings, registry).check().action == "already handled"


def test_guards_racing_on_one_bad_version_roll_it_back_once(settings: Settings) -> None:
    registry, first, second = _setup(settings, second_scale=0.01)
    now = _serve(settings, second, 40)
    guards = [Guard(settings, ModelRegistry(LocalStore(settings.registry)), notify=lambda _: None)
              for _ in range(4)]
    start = threading.Barrier(len(guards))
    actions: list[str] = []

    def run(guard: Guard) -> None:
        start.wait()
        actions.append(guard.check(now).action)

    threads = [threading.Thread(target=run, args=(g,)) for g in guards]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert actions.count("rolled_back") == 1, actions
    assert len([a for a in registry.audit_log() if a["action"] == "rollback"]) == 1
    assert registry.live_version() == first
