"""train_ltr_daily: the daily LTR cycle at 02:15 UTC, one task per pipeline step.

    extract -> promote -> preprocess -> train -> evaluate -> gate -+-> publish -------+-> notify
                                                                   +-> keep_previous -+

Every task calls `ltr_pipeline` and passes on only the run date; each step reads and writes
$LTR_HOME/runs/<run date>/, so a retried task redoes its own step for the same data interval and nothing more (a
retried publish of the same model reuses the version it already published). The run date is the UTC day before the
logical date: the 02:15 run of the 27th processes the 26th.
`promote` settles the interleaving of the live model and its challenger: with the Variable ltr_interleave_promotion
(or LTR_INTERLEAVE_PROMOTION) on, a challenger clients preferred is made live, audited, before the day's model is
judged against it. Thresholds come from the Airflow Variables ltr_ndcg_min, ltr_fairness_max, ltr_min_samples,
ltr_latency_p95_max_ms and ltr_max_regression, defaulting to the LTR_* settings; `ltr_ndcg_min = 0.90` forces a
rejection (the champion stays).
Settings otherwise come from the worker's environment (LTR_HOME, LTR_REGISTRY_URI, KAFKA_*, S3_*, ...).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Variable, dag, get_current_context, task

from ltr_pipeline import orchestration as orc
from ltr_pipeline import pipeline


@dag(
    dag_id="train_ltr_daily",
    schedule="15 2 * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=orc.task_defaults(orc.daily_label, timedelta(minutes=5)),
    tags=["ltr"],
    doc_md=__doc__,
)
def train_ltr_daily() -> None:
    @task
    def extract() -> str:
        label = orc.daily_label(get_current_context()["logical_date"])
        pipeline.extract(orc.run_for(label))
        return label

    @task
    def promote(label: str) -> str:
        """Settle the interleaving of the live model and its challenger (optional: ltr_interleave_promotion)."""
        orc.promote_by_interleaving(label, lambda name: Variable.get(name, default=None))
        return label

    @task
    def preprocess(label: str) -> str:
        pipeline.preprocess(orc.run_for(label))
        return label

    @task
    def train(label: str) -> str:
        pipeline.train_model(orc.run_for(label))
        return label

    @task
    def evaluate(label: str) -> str:
        pipeline.evaluate(orc.run_for(label))
        return label

    orc.decision_tasks(evaluate(train(preprocess(promote(extract())))))


train_ltr_daily()
