"""A version that keeps failing to load is retried with backoff; a new pointer or a forced reload is tried at once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ltr_pipeline.config import Settings
from ltr_pipeline.service.metrics import ServiceMetrics
from ltr_pipeline.service.reloader import Reloader
from tests.unit.test_compiled import _publish, _registry_with


def test_a_damaged_version_is_retried_after_1_2_4_polls_and_a_new_one_at_once(settings: Settings,
                                                                               tmp_path: Path) -> None:
    registry, (v1,) = _registry_with(tmp_path, 1)
    settings = settings.model_copy(update={"compiled_scorer": False, "poll_seconds": 1.0})  # backoff cap: 600 polls
    reloader = Reloader(settings, registry, ServiceMetrics())
    assert reloader.check()["outcome"] == "loaded"
    v2 = _publish(registry, 2)
    model = tmp_path / "registry" / v2 / "model.txt"
    model.write_bytes(model.read_bytes()[:1000])  # damaged after its checksum was recorded

    outcomes = [reloader.check()["outcome"] for _ in range(8)]
    assert outcomes == ["failed", "failed", "deferred", "failed", "deferred", "deferred", "deferred", "failed"]
    assert reloader.metrics.total("ltr_reloads_total", outcome="failed") == 4
    assert reloader.live.version == v1  # the last good version serves throughout
    assert reloader.last_reload["outcome"] == "failed" and "sha256" in reloader.last_reload["error"]
    assert reloader.check(force=True)["outcome"] == "failed"  # an operator's reload always tries

    v3 = _publish(registry, 3)
    assert reloader.check()["outcome"] == "loaded"  # a new pointer is not held back by the old one's backoff
    assert reloader.live.version == v3


def test_an_unreadable_pointer_is_backed_off_too(settings: Settings, tmp_path: Path) -> None:
    registry, (v1,) = _registry_with(tmp_path, 1)
    settings = settings.model_copy(update={"compiled_scorer": False, "poll_seconds": 1.0})
    reloader = Reloader(settings, registry, ServiceMetrics())
    reloader.check()
    (tmp_path / "registry" / "LATEST").write_bytes(b'{"version": "../../etc"}')
    assert [reloader.check()["outcome"] for _ in range(4)] == ["failed", "failed", "deferred", "failed"]
    assert "does not name a version" in reloader.last_reload["error"] and reloader.live.version == v1


def test_a_challenger_that_fails_to_load_is_retried_after_1_2_4_polls(settings: Settings, tmp_path: Path) -> None:
    registry, (v1,) = _registry_with(tmp_path, 1)
    challenger = "20261126_0300"  # not published yet
    settings = settings.model_copy(update={"compiled_scorer": False, "poll_seconds": 1.0,
                                           "challenger_version": challenger})
    reloader = Reloader(settings, registry, ServiceMetrics())
    loaded = []
    for poll in range(1, 9):
        if poll == 5:  # published between the 4th try (poll 4) and the next one (poll 8)
            assert _publish(registry, 2, datetime(2026, 11, 26, 3, 0, tzinfo=UTC)) == challenger
            registry.rollback(v1)
        reloader.check()
        loaded.append(reloader.challenger is not None)
    assert loaded == [False] * 7 + [True]  # tried at polls 1, 2, 4 and 8, not at 5-7
    assert reloader.challenger.version == challenger and reloader.live.version == v1  # type: ignore[union-attr]


def test_a_forced_reload_tries_a_failing_challenger_at_once(settings: Settings, tmp_path: Path) -> None:
    registry, (v1,) = _registry_with(tmp_path, 1)
    challenger = "20261126_0300"
    settings = settings.model_copy(update={"compiled_scorer": False, "poll_seconds": 1.0,
                                           "challenger_version": challenger})
    reloader = Reloader(settings, registry, ServiceMetrics())
    reloader.check()
    reloader.check()  # two failures: the next poll would be skipped
    _publish(registry, 2, datetime(2026, 11, 26, 3, 0, tzinfo=UTC))
    registry.rollback(v1)
    reloader.check(force=True)  # an operator's reload
    assert reloader.challenger is not None and reloader.challenger.version == challenger
