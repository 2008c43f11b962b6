"""What the Airflow DAGs call, kept here so the DAG files stay thin and testable without Airflow.

A task receives only a run label: `YYYY-MM-DD` for a daily run, `YYYY-MM-DDTHH` for an hourly one. Settings come
from the worker's environment, read here (`settings()`) and nowhere else on the Airflow side.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ltr_pipeline import pipeline
from ltr_pipeline.config import Settings
from ltr_pipeline.gate import Thresholds
from ltr_pipeline.notify import notice_for_failure, notice_for_report, notify

# Airflow Variable -> the Thresholds field (and setting) it overrides, with the Variable's type.
THRESHOLD_VARIABLES = {
    "ltr_ndcg_min": ("ndcg_min", float),
    "ltr_fairness_max": ("fairness_max", float),
    "ltr_min_samples": ("min_samples", int),
    "ltr_latency_p95_max_ms": ("latency_p95_max_ms", float),
    "ltr_max_regression": ("max_regression", float),
}
Variable = Callable[[str], Any]  # name -> the Variable's value, None when unset
# Airflow Variable -> the guard's setting it overrides, with the Variable's type.
GUARD_VARIABLES = {
    "ltr_guard_action": ("guard_action", str),
    "ltr_guard_max_fallback_rate": ("guard_max_fallback_rate", float),
    "ltr_guard_max_psi": ("guard_max_psi", float),
    "ltr_guard_alpha": ("guard_alpha", float),
    "ltr_latency_p95_max_ms": ("latency_p95_max_ms", float),
}


def settings() -> Settings:
    """The Airflow worker's settings, from its environment."""
    return Settings()


def run_for(label: str) -> pipeline.Run:
    if "T" in label:
        return pipeline.Run.hourly(settings(), datetime.strptime(label, "%Y-%m-%dT%H").replace(tzinfo=UTC))
    return pipeline.Run(settings(), date.fromisoformat(label))


def daily_label(logical_date: datetime) -> str:
    """The daily DAG processes the UTC day before its logical date (02:15 on the 27th -> the 26th)."""
    return (logical_date.astimezone(UTC) - timedelta(days=1)).date().isoformat()


def hourly_label(logical_date: datetime) -> str:
    return logical_date.astimezone(UTC).strftime("%Y-%m-%dT%H")


def overrides(table: Mapping[str, tuple[str, Callable[[Any], Any]]], variable: Variable) -> dict[str, Any]:
    """setting -> value of each Airflow Variable in `table` that is set (cast to the setting's type)."""
    return {field: cast(value) for name, (field, cast) in table.items() if (value := variable(name)) is not None}


def thresholds(base: Settings, variable: Variable) -> Thresholds:
    """Gate thresholds: each Airflow Variable that is set overrides its setting; unset, the setting applies."""
    return Thresholds.from_settings(base, **overrides(THRESHOLD_VARIABLES, variable))


def promote_by_interleaving(label: str, variable: Variable) -> str | None:
    """The daily run's interleaving step; the Variable ltr_interleave_promotion, when set, overrides the setting.
    Returns the version made live, if any."""
    run = run_for(label)
    value = variable("ltr_interleave_promotion")
    enabled = None if value is None else str(value).strip().lower() in ("1", "true", "yes", "on")
    return pipeline.promote(run, enabled).promoted_version


def gate_branch(label: str, variable: Variable) -> str:
    run = run_for(label)
    return "publish" if pipeline.gate(run, thresholds(run.settings, variable)).passed else "keep_previous"


def publish_or_fail(label: str) -> str:
    run = run_for(label)
    outcome = pipeline.publish(run, now=run.hour)
    if outcome.decision != "published" or outcome.published_version is None:
        raise RuntimeError(f"publishing failed, the previous version stays live: {outcome.publish_error}")
    return outcome.published_version


def record_rejection(label: str) -> None:
    pipeline.publish(run_for(label))  # records the rejection; the gate did not pass, so nothing is published


def notify_outcome(label: str) -> str:
    run = run_for(label)
    report = pipeline.report(run)
    notify(run.settings, notice_for_report(report))
    return report.decision


def decision_tasks(label: Any) -> None:
    """Inside a DAG: gate (a branch) -> publish | keep_previous -> notify, for the run `label` (an XComArg).
    Both DAGs end this way."""
    from airflow.sdk import Variable, task

    @task.branch
    def gate(label: str) -> str:
        return gate_branch(label, lambda name: Variable.get(name, default=None))

    @task
    def publish(label: str) -> str:
        return publish_or_fail(label)

    @task
    def keep_previous(label: str) -> None:
        record_rejection(label)

    @task(trigger_rule="none_failed_min_one_success")
    def notify(label: str) -> str:
        return notify_outcome(label)

    gate(label) >> [publish(label), keep_previous(label)] >> notify(label)


def task_defaults(label_of: Callable[[datetime], str], retry_delay: timedelta) -> dict[str, Any]:
    """Both DAGs' default_args: LTR_DAG_RETRIES retries (0 in tests, so a failure is final at once), then a
    failure notice naming the run."""
    return {
        "retries": settings().dag_retries,
        "retry_delay": retry_delay,
        "on_failure_callback": functools.partial(notify_failure, label_of=label_of),
    }


def notify_failure(context: dict[str, Any], label_of: Callable[[datetime], str]) -> None:
    """An on_failure_callback: a task failed for good (after its retries); the live model is untouched."""
    ti = context.get("task_instance")
    logical = context.get("logical_date")
    label = label_of(logical) if logical else "?"
    task = getattr(ti, "task_id", None)
    if logical:
        pipeline.record_failure(run_for(label), task, context.get("exception") or RuntimeError("unknown error"))
    notify(settings(), notice_for_failure(label, str(context.get("exception")), task=task))


def has_live_model() -> bool:
    """A live model the hourly run may continue: one exists, and the guard has not marked it bad."""
    from ltr_pipeline.registry import ModelRegistry

    registry = ModelRegistry.from_settings(settings())
    live = registry.live_version()
    return live is not None and live not in registry.bad_versions()


def retrain_hourly(label: str) -> str:
    pipeline.retrain(run_for(label))
    return label


def guard_check(variable: Variable) -> dict[str, Any]:
    """The ltr_guard DAG's one task: a guard check of the live version, each Variable that is set overriding its
    setting. Returns the report (the task's XCom)."""
    from ltr_pipeline.guard import Guard
    from ltr_pipeline.record import to_builtins

    return dict(to_builtins(Guard(settings().model_copy(update=overrides(GUARD_VARIABLES, variable))).check()))
