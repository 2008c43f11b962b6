"""train_ltr_hourly: the seed's optional hot retrain. Every hour, continue the live model (LightGBM init_model) on the
newest events and put the result through the same gate as the daily run.

    has_live_model -> retrain -> gate -+-> publish -------+-> notify
                                       +-> keep_previous -+

The window is the LTR_INCREMENTAL_HOURS (24) hours before the logical hour, of which the last
LTR_INCREMENTAL_HOLDOUT_HOURS (3) are held out; LTR_INCREMENTAL_ROUNDS (50) trees are added at most. With no live
model there is nothing to continue and the run is skipped. Outputs go to $LTR_HOME/runs/hourly/<YYYY-MM-DDTHH>/.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, get_current_context, task

from ltr_pipeline import orchestration as orc


@dag(
    dag_id="train_ltr_hourly",
    schedule="5 * * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=orc.task_defaults(orc.hourly_label, timedelta(minutes=2)),
    tags=["ltr"],
    doc_md=__doc__,
)
def train_ltr_hourly() -> None:
    @task.short_circuit
    def has_live_model() -> bool:
        return orc.has_live_model()

    @task
    def retrain() -> str:
        return orc.retrain_hourly(orc.hourly_label(get_current_context()["logical_date"]))

    label = retrain()
    has_live_model() >> label
    orc.decision_tasks(label)


train_ltr_hourly()
