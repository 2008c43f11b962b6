"""ltr_guard: the guard (ltr_pipeline.guard) every five minutes, for deployments where the service cannot write to the
registry. It checks the live version against the one before it and rolls it back when a check fails; the Variables
ltr_guard_action, ltr_guard_max_fallback_rate, ltr_guard_max_psi, ltr_guard_alpha and ltr_latency_p95_max_ms
override the settings. The recommended place is the service itself (LTR_GUARD_SECONDS, see the README); both may
run at once: the registry lets one guard act on a version.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Variable, dag, task

from ltr_pipeline import orchestration as orc


@dag(
    dag_id="ltr_guard",
    schedule="*/5 * * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0, "retry_delay": timedelta(minutes=1)},
    tags=["ltr"],
    doc_md=__doc__,
)
def ltr_guard() -> None:
    @task
    def check() -> dict[str, Any]:
        return orc.guard_check(lambda name: Variable.get(name, default=None))

    check()


ltr_guard()
