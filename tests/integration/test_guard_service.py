"""The guard inside a real two-worker service: a bad version is rolled back exactly once, whichever worker sees it
first, and both workers end up serving the version before it."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import orjson

from ltr_pipeline.guard import feature_reference
from ltr_pipeline.record import to_builtins
from ltr_pipeline.registry import ModelRegistry
from ltr_pipeline.storage.local import LocalStore
from tests.helpers import metric, service_process, wait_until
from tests.integration.test_service import FEATURES, _model_files


def _reference(scale: float) -> dict[str, object]:
    return to_builtins(feature_reference(np.random.default_rng(3).random((2000, 8)) * scale, FEATURES))


def _live_versions(url: str) -> dict[str, str]:
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
    return {s.labels["pid"]: s.labels["version"] for f in families for s in f.samples
            if s.name == "ltr_model_info" and s.labels["role"] == "live" and s.value == 1}


def test_two_workers_with_the_guard_roll_a_bad_version_back_exactly_once(env: dict[str, str],
                                                                         registry_dir: Path) -> None:
    registry = ModelRegistry(LocalStore(registry_dir))
    now = datetime.now(UTC)
    good = registry.publish(_model_files(1), {"reference": _reference(1.0)}, now=now - timedelta(days=1))
    # Trained on one scale of the features, served another: a training/serving skew the offline gate cannot see.
    bad = registry.publish(_model_files(2), {"reference": _reference(0.01)}, now=now - timedelta(minutes=1))
    env = {**env, "LTR_GUARD_SECONDS": "0.2", "LTR_EVENT_SINK": "file", "LTR_GUARD_MIN_ROWS": "200"}
    cmd = [sys.executable, "-m", "ltr_pipeline.cli", "serve", "--port", "{port}", "--workers", "2"]
    rng = np.random.default_rng(0)
    with service_process(env, cmd=cmd) as url:
        wait_until(lambda: set(_live_versions(url).values()) == {bad} and len(_live_versions(url)) == 2,
                   what="both workers serving the new version")

        def rolled_back() -> list[dict[str, object]]:
            body = {"candidates": [{"lawyer_id": f"l-{i}", "features": dict(zip(FEATURES, rng.random(8).tolist(),
                                                                                  strict=True))} for i in range(20)]}
            httpx.post(f"{url}/ltr/rank", content=orjson.dumps(body)).raise_for_status()
            return [a for a in registry.audit_log() if a["action"] == "rollback"]

        wait_until(rolled_back, timeout=60, what="the guard's rollback")
        wait_until(lambda: set(_live_versions(url).values()) == {good} and len(_live_versions(url)) == 2,
                   what="both workers back on the good version")
        # Both workers' guards go on checking (each one's checks counted in the merged metrics) and act no more.
        checks = metric(url, "ltr_guard_checks_total")
        wait_until(lambda: metric(url, "ltr_guard_checks_total") >= checks + 10, what="ten more guard checks")
        rollbacks = [a for a in registry.audit_log() if a["action"] == "rollback"]
        assert len(rollbacks) == 1 and metric(url, "ltr_guard_rollbacks_total", action="rolled_back") == 1
        assert rollbacks[0]["automatic"] is True and rollbacks[0]["version"] == good
        assert rollbacks[0]["bad_version"] == bad and "feature drift" in str(rollbacks[0]["reason"])
        assert list(registry.bad_versions()) == [bad]
