"""Reloads, compiles and shadow scoring run at idle CPU priority, the request path at normal priority (Linux)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ltr_pipeline.config import Settings
from ltr_pipeline.errors import ModelLoadError
from ltr_pipeline.scoring import WeightedSumScorer
from ltr_pipeline.service.metrics import ServiceMetrics
from ltr_pipeline.service.reloader import LiveModel, Reloader
from ltr_pipeline.service.shadow import ShadowScorer
from tests.helpers import wait_until
from tests.unit.test_compiled import FEATURES, _registry_with

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_IDLE is Linux's")


def test_reload_polls_and_compiles_run_at_idle_priority(settings: Settings, tmp_path: Path) -> None:
    registry, (v1,) = _registry_with(tmp_path, 1)
    policies: dict[str, int] = {}

    def compiler(text: str, cache: Path) -> tuple[Path, Path]:
        policies["compile"] = os.sched_getscheduler(0)
        raise ModelLoadError("the policy is all this test needs")

    assert Settings.model_fields["background_priority"].default == "idle"
    idle = settings.model_copy(update={"poll_seconds": 0.01, "background_priority": "idle"})
    reloader = Reloader(idle, registry, ServiceMetrics(), compiler=compiler)
    check = reloader.check

    async def poll_once() -> None:
        polled = asyncio.Event()
        loop = asyncio.get_running_loop()

        def recording_check(force: bool = False) -> dict[str, Any]:
            policies["poll"] = os.sched_getscheduler(0)
            loop.call_soon_threadsafe(polled.set)
            return check(force)

        reloader.check = recording_check  # type: ignore[method-assign]
        poller = asyncio.create_task(reloader.poll_forever())
        await asyncio.wait_for(polled.wait(), 30)
        poller.cancel()

    asyncio.run(poll_once())
    wait_until(lambda: reloader.metrics.total("ltr_compiles_total", outcome="failed") == 1, what="the compile")
    assert reloader.live.version == v1
    assert policies == {"poll": os.SCHED_IDLE, "compile": os.SCHED_IDLE}
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller's thread (the request path) is untouched


class PolicyRecorder(WeightedSumScorer):
    policy: int | None = None

    def score(self, features: np.ndarray) -> np.ndarray:
        PolicyRecorder.policy = os.sched_getscheduler(0)
        return super().score(features)


def test_shadow_scoring_runs_at_idle_priority() -> None:
    PolicyRecorder.policy = None
    shadow = ShadowScorer(ServiceMetrics())
    scorer = PolicyRecorder(dict.fromkeys(FEATURES, 1.0), FEATURES)
    matrix = np.random.default_rng(0).random((6, len(FEATURES)))
    shadow.start()
    shadow.submit("c-1", LiveModel("v-challenger", scorer, scorer), "v-live", matrix, matrix[:, 0])
    shadow.close()  # drains the queue first (for up to 10 s: a busy machine may need longer)
    assert wait_until(lambda: PolicyRecorder.policy, what="the shadow score") == os.SCHED_IDLE
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


def test_normal_background_priority_leaves_the_threads_alone() -> None:
    PolicyRecorder.policy = None
    shadow = ShadowScorer(ServiceMetrics(), "normal")
    scorer = PolicyRecorder(dict.fromkeys(FEATURES, 1.0), FEATURES)
    shadow.start()
    shadow.submit("c-1", LiveModel("v-challenger", scorer, scorer), "v-live", np.ones((3, len(FEATURES))), np.ones(3))
    shadow.close()
    assert wait_until(lambda: PolicyRecorder.policy is not None, what="the shadow score")
    assert PolicyRecorder.policy == os.SCHED_OTHER


def test_importing_the_package_shortens_openmps_spin_unless_set() -> None:
    """libgomp's default spin made training 5-15x slower beside CPU hogs (bench/busy_training.py)."""
    show = "import ltr_pipeline, os; print(os.environ['GOMP_SPINCOUNT'])"
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    assert subprocess.run([sys.executable, "-c", show], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "1000"
    assert subprocess.run([sys.executable, "-c", show], env=env | {"GOMP_SPINCOUNT": "50"}, capture_output=True,
                          text=True, check=True).stdout.strip() == "50"
