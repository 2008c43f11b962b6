"""Every setting of the pipeline and the service, declared once.

Settings come from the environment (and a `.env` file in the working directory); CLI flags override them.
Names use the `LTR_` prefix, except the seed's own `KAFKA_*`, `S3_*` and `AWS_*` variables, which keep theirs.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ltr_pipeline.scoring import LEGACY_WEIGHTS

DEFAULT_FEATURES = ",".join(LEGACY_WEIGHTS)  # the seed's features, in the legacy algorithm's order

DEFAULT_LABEL_GRADES: dict[str, int] = {
    "declined": 0,
    "viewed": 1,
    "clicked": 1,
    "contacted": 2,
    "accepted": 2,
    "contracted": 3,
}


def _seed_env(name: str) -> AliasChoices:
    """Accept the seed's unprefixed name and the prefixed one."""
    return AliasChoices(name, f"LTR_{name}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LTR_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # --- where things live -------------------------------------------------------------------------------
    home: Path = Field(Path("ltr_home"), description="Root folder for events, runs, logs and the local registry.")
    events_dir: Path | None = Field(None, description="Event files (*.jsonl, *.jsonl.gz); default $LTR_HOME/events.")
    registry_uri: str | None = Field(
        None, description="Model registry: a path or s3://bucket/prefix; default $LTR_HOME/registry/ltr."
    )
    registry_mirror_uri: str | None = Field(
        None, description="A second registry every write is copied to (e.g. local disk beside S3); the primary "
        "LTR_REGISTRY_URI stays the source of truth."
    )
    log_dir: Path | None = Field(None, description="Log folder; default $LTR_HOME/logs.")

    # --- events and labels ------------------------------------------------------------------------------
    source: Literal["auto", "kafka", "file"] = Field(
        "file", description="Where the daily run reads events: kafka, file, or auto (Kafka, files when it is down)."
    )
    archive_dir: Path | None = Field(
        None, description="Where events ingested from Kafka are kept, one folder per day; default $LTR_HOME/archive."
    )
    event_sink: Literal["auto", "none", "file", "kafka"] = Field(
        "auto", description="Where the service sends the events it produces; auto: kafka when LTR_SOURCE reads "
        "Kafka, else the event files the daily run reads (so the loop feeds itself out of the box)."
    )
    spool_dir: Path | None = Field(
        None, description="Events the broker could not take wait here until it returns; default $LTR_HOME/spool."
    )
    max_event_file_bytes: int = Field(
        256 * 1024 * 1024, ge=1024, description="Most bytes decompressed from one .jsonl.gz event file (a small "
        ".gz can hold gigabytes); the rest of a larger one is quarantined as one entry."
    )
    features: str = Field(DEFAULT_FEATURES, description="Ranking feature names, comma separated, in model order.")
    label_grades: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_LABEL_GRADES),
        description="JSON object feedback action -> relevance grade; an impression's label is its highest grade.",
    )

    # --- dataset and training ---------------------------------------------------------------------------
    train_days: int = Field(30, ge=1, description="Days of events in the training window, ending at the run date.")
    holdout_days: int = Field(1, ge=1, description="Last days of the window held out for evaluation.")
    valid_fraction: float = Field(
        0.15, ge=0, lt=1,
        description="Latest share of the training queries used for early stopping; 0: no early stopping, "
        "LTR_NUM_BOOST_ROUND rounds on all of them.",
    )
    num_boost_round: int = Field(300, ge=1, description="Maximum LightGBM boosting rounds.")
    early_stopping_rounds: int = Field(30, ge=1, description="Stop when validation nDCG@5 stalls this long.")
    learning_rate: float = Field(0.05, gt=0, description="LightGBM learning rate.")
    num_leaves: int = Field(31, ge=2, description="LightGBM num_leaves.")
    min_data_in_leaf: int = Field(20, ge=1, description="LightGBM min_data_in_leaf.")
    num_threads: int = Field(2, ge=1, description="Threads LightGBM trains with.")
    engine: Literal["local", "dask"] = Field(
        "local", description="Where the daily training runs: local (this process) or dask (LightGBM's Dask "
        "interface on a Dask cluster; README, \"Beyond one machine\")."
    )
    dask_scheduler_address: str | None = Field(
        None, validation_alias=_seed_env("DASK_SCHEDULER_ADDRESS"),
        description="LTR_ENGINE=dask: the scheduler of an existing cluster, e.g. tcp://scheduler:8786; unset: a "
        "LocalCluster of LTR_DASK_WORKERS worker processes is started for the run.",
    )
    dask_workers: int = Field(2, ge=1, description="LTR_ENGINE=dask without a scheduler: local worker processes.")
    share_events: int = Field(
        150_000, ge=1, description="The dataset is built a share of the cases at a time, about this many events each: "
        "the memory a run needs grows with it (BENCHMARKS.md, \"Bounded memory\"); with LTR_ENGINE=dask, a share is "
        "a worker's task and a file.",
    )
    incremental_hours: int = Field(
        24, ge=2, description="Hourly retrain: hours of newest events it continues the live model on."
    )
    incremental_holdout_hours: int = Field(3, ge=1, description="Hourly retrain: the last hours held out.")
    incremental_rounds: int = Field(50, ge=1, description="Hourly retrain: boosting rounds added to the live model.")
    seed: int = Field(42, description="Seed for training and simulation.")
    tune_trials: int = Field(
        0, ge=0, description="Budgeted tuning: parameter sets tried besides the defaults, judged on the validation "
        "slice only (0: off)."
    )
    tune_seconds: float = Field(300.0, gt=0, description="Tuning stops starting new trials after this long.")
    debias: Literal["none", "position", "ips", "exposure"] = Field(
        "exposure", description="How training corrects for position bias: none; position (LightGBM's position-aware "
        "lambdarank, learning a bias per position); ips (lambdarank on each impression's gain divided by its "
        "position's estimated examination probability); exposure (a pointwise Poisson model of the expected gain "
        "once examined, the examination probability as its offset). Measured in BENCHMARKS.md."
    )
    propensity_max_position: int = Field(
        20, ge=1, description="Positions up to this are given their own examination estimate; deeper ones share it."
    )
    lgbm_params: dict[str, Any] = Field(
        default_factory=dict, description="Extra LightGBM parameters as JSON, applied last (e.g. bagging_fraction)."
    )

    # --- quality gate -----------------------------------------------------------------------------------
    ndcg_min: float = Field(0.65, description="Gate: minimum holdout nDCG@5.")
    fairness_max: float = Field(0.05, description="Gate: maximum exposure gap between groups.")
    latency_p95_max_ms: float = Field(15.0, description="Gate: scoring latency p95 must be below this (ms).")
    min_samples: int = Field(100, description="Gate: minimum labelled training impressions.")
    max_regression: float = Field(
        0.01, description="Gate: nDCG@5 may trail the champion's by at most this (debiased: the one-sided 95% upper "
        "bound of the difference must not be below minus this)."
    )
    counterfactual_min_queries: int = Field(
        30, ge=1, description="Gate: holdout cases with a graded action needed for the debiased comparison with the "
        "champion; with fewer it reads 'insufficient data' and the logged comparison decides."
    )
    fairness_min_group: int = Field(30, description="Groups with fewer holdout appearances are not compared.")
    fair_rerank_strength: float = Field(
        0.0, ge=0.0, le=1.0,
        description="Fairness-aware re-ranking in evaluation and the service: 0 off, 1 every group its share of "
        "every prefix (see ltr_pipeline.fairness).",
    )
    fairness_required: bool | None = Field(
        None,
        description="Whether 'insufficient data' for fairness blocks publishing; default: true when events carry "
        "groups, false otherwise.",
    )

    # --- service ------------------------------------------------------------------------------------------
    poll_seconds: float = Field(300.0, gt=0, description="How often the service polls the registry for a new model.")
    admin_token: SecretStr | None = Field(None, description="Bearer token for admin endpoints; unset disables them.")
    dashboard_cache_seconds: float = Field(
        10.0, ge=0, description="/ltr/dashboard is rendered at most once in this many seconds, whatever the number "
        "of clients (0: on every request, one at a time)."
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body the service reads; a larger one is refused with 413, "
        "from its Content-Length or as soon as the stream passes it."
    )
    host: str = Field("127.0.0.1", description="Service bind address.")
    port: int = Field(8080, description="Service port.")
    workers: int = Field(1, ge=1, description="uvicorn worker processes; metrics are shared through "
                         "Prometheus multiprocess mode when more than one.")
    compiled_scorer: bool = Field(
        True, description="Compile each live model with lleaves off the request path (when installed) and serve "
        "with it once ready; the LightGBM booster serves meanwhile (see compile_wait_seconds)."
    )
    background_priority: Literal["idle", "normal"] = Field(
        "idle", description="CPU priority of the service's background work (reloads, compiles, shadow scoring): "
        "idle (SCHED_IDLE: it only gets CPU time no request wants; measured in bench/reload_under_load.py) or "
        "normal. Idle work waits while other processes keep every core busy; the test suite uses normal."
    )
    compile_wait_seconds: float = Field(
        60.0, ge=0, description="While a compiled model serves, how long a new version may wait for its own "
        "compiled scorer: it goes live as soon as that is ready (seconds to compile, milliseconds from the cache), "
        "so no request is answered at the booster's speed; with its booster if the compile fails or outlasts this. "
        "An admin reload never waits. 0: the new version's booster goes live at once, until its compiled scorer is "
        "ready."
    )
    compile_cache_dir: Path | None = Field(None, description="Compiled models cache (default: <home>/compiled).")
    challenger_version: str | None = Field(
        None, description="A registry version scored beside the live model (shadow) or served to a share of cases "
        "(A/B)."
    )
    explore_fraction: float = Field(
        0.05, ge=0.0, le=1.0, description="Share of rankings shown with one adjacent pair swapped at random "
        "(exploration: it lets the pipeline tell position from relevance); each recommendation event records whether "
        "it was explored and the probability of the order shown. Its cost is measured in BENCHMARKS.md."
    )
    interleave_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of rankings shown as a team-draft interleaving of the live model and "
        "the challenger (LTR_CHALLENGER_VERSION); each event records the team of its position."
    )
    interleave_min_cases: int = Field(
        100, ge=1, description="Interleaved cases with a graded action a verdict needs (fewer: 'insufficient data')."
    )
    interleave_promotion: bool = Field(
        False, description="Whether a challenger that clients prefer in interleaving (95% interval above one half) "
        "is made live by the daily run (Airflow Variable ltr_interleave_promotion); audited as 'promote'."
    )
    shadow_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of requests the challenger also scores, off the response path "
        "(requests with the header x-shadow-ltr: 1 always are)."
    )
    ab_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of cases the challenger ranks instead of the live model (sticky by "
        "case_id)."
    )

    # --- guard (guard.py): the live model against the version before it --------------------------------
    guard_seconds: float = Field(
        0.0, ge=0, description="How often each service worker runs the guard (0: not in the service; `ltr guard` "
        "runs it on its own)."
    )
    guard_action: Literal["rollback", "alert"] = Field(
        "rollback", description="What the guard does with a version that fails a check: roll back to the previous "
        "good version, or only mark it bad and notify."
    )
    guard_max_fallback_rate: float = Field(
        0.01, ge=0, le=1, description="Guard: most cases of the live version the legacy sum may answer (errors, "
        "non-finite scores)."
    )
    guard_max_psi: float = Field(
        0.25, gt=0, description="Guard: largest population stability index of a feature in the requests against the "
        "version's training rows (0.25: a major shift by the usual reading)."
    )
    guard_alpha: float = Field(
        0.001, gt=0, lt=1, description="Guard: the engagement test's false-alarm bound over a healthy version's "
        "whole life (it fails when the mSPRT ratio reaches 1/alpha with engagement down)."
    )
    guard_min_cases: int = Field(
        50, ge=1, description="Guard: cases the live version must have ranked (and, for engagement, the previous "
        "one) before the fallback and engagement checks decide."
    )
    guard_min_rows: int = Field(
        300, ge=1, description="Guard: shown candidates needed before the feature drift check decides."
    )
    guard_feedback_seconds: float = Field(
        5400.0, ge=0, description="Guard: cases younger than this are left out of the engagement check (their "
        "feedback may still come)."
    )
    guard_baseline_days: float = Field(
        3.0, gt=0, description="Guard: days before the live version went live whose cases of the previous version "
        "are its baseline."
    )

    dag_retries: int = Field(2, ge=0, description="Retries of each Airflow task before it fails for good.")

    # --- notifications -----------------------------------------------------------------------------------
    notify_webhook_url: SecretStr | None = Field(
        None, description="Slack-compatible webhook (JSON POST with a 'text' field) told of every run's outcome."
    )
    notify_email_to: str | None = Field(None, description="Comma-separated addresses told of every run's outcome.")
    smtp_host: str = Field("localhost", description="SMTP server for e-mail notifications.")
    smtp_port: int = Field(25, description="SMTP port.")
    smtp_user: str | None = Field(None, description="SMTP login, if the server needs one.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_from: str = Field("ltr-pipeline@localhost", description="Sender of notification e-mails.")
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS.")
    notify_timeout_seconds: float = Field(10.0, gt=0, description="Timeout for each notification.")

    # --- the seed's own variables -----------------------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        "localhost:9092", validation_alias=_seed_env("KAFKA_BOOTSTRAP_SERVERS"), description="Kafka brokers."
    )
    kafka_topic: str = Field("match_events", validation_alias=_seed_env("KAFKA_TOPIC"), description="Event topic.")
    kafka_group_id: str = Field(
        "ltr_etl_consumer", validation_alias=_seed_env("KAFKA_GROUP_ID"), description="Consumer group of the ETL."
    )
    kafka_partitions: int = Field(3, ge=1, description="Partitions when the topic has to be created.")
    kafka_timeout_seconds: float = Field(
        10.0, gt=0, description="How long to wait for the broker before it counts as unreachable."
    )
    kafka_lateness_seconds: float = Field(
        3600.0, ge=0, description="How far past the window's end to keep reading for events that arrive late."
    )
    kafka_message_timeout_ms: int = Field(
        30000, ge=100, description="How long the service's producer retries an event before spooling it."
    )
    kafka_config: dict[str, str] = Field(
        default_factory=dict, description="Extra librdkafka settings as JSON (e.g. security.protocol, sasl.*)."
    )
    spool_retry_seconds: float = Field(5.0, gt=0, description="How often spooled events are offered to the broker.")
    s3_bucket: str | None = Field(None, validation_alias=_seed_env("S3_BUCKET"), description="Registry bucket.")
    s3_prefix: str = Field("ltr", validation_alias=_seed_env("S3_PREFIX"), description="Registry key prefix.")
    s3_endpoint: str | None = Field(
        None, validation_alias=_seed_env("S3_ENDPOINT"), description="S3 endpoint URL, e.g. a MinIO."
    )
    s3_region: str = Field(
        "us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION", "LTR_S3_REGION"),
        description="S3 region."
    )
    s3_timeout_seconds: float = Field(10.0, gt=0, description="S3 connect and read timeout.")
    s3_max_attempts: int = Field(3, ge=1, description="S3 attempts per request (retries with backoff).")
    aws_access_key_id: SecretStr | None = Field(
        None, validation_alias=AliasChoices("AWS_ACCESS_KEY_ID"), description="S3 access key."
    )
    aws_secret_access_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("AWS_SECRET_ACCESS_KEY"), description="S3 secret key."
    )

    @field_validator("label_grades", "kafka_config", "lgbm_params", mode="before")
    @classmethod
    def _grades_from_json(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value

    @cached_property
    def feature_names(self) -> list[str]:
        names = [f.strip() for f in self.features.split(",") if f.strip()]
        if not names or len(set(names)) != len(names):
            from ltr_pipeline.errors import ConfigError

            raise ConfigError(f"LTR_FEATURES must list distinct names, got {self.features!r}")
        return names

    @property
    def events_path(self) -> Path:
        return self.events_dir or self.home / "events"

    @property
    def registry(self) -> str:
        if self.registry_uri:
            return self.registry_uri
        if self.s3_bucket:
            return f"s3://{self.s3_bucket}/{self.s3_prefix.strip('/')}"
        return str(self.home / "registry" / "ltr")

    @property
    def archive_path(self) -> Path:
        return self.archive_dir or self.home / "archive"

    @property
    def spool_path(self) -> Path:
        return self.spool_dir or self.home / "spool"

    @property
    def sink(self) -> str:
        if self.event_sink == "auto":
            return "kafka" if self.source in ("kafka", "auto") else "file"
        return self.event_sink

    @property
    def logs_path(self) -> Path:
        return self.log_dir or self.home / "logs"

    @property
    def runs_path(self) -> Path:
        return self.home / "runs"

    @property
    def compile_cache_path(self) -> Path:
        return self.compile_cache_dir or self.home / "compiled"
