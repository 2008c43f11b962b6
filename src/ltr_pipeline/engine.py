"""Where the daily model is trained, by LTR_ENGINE: in this process (`local`) or on a Dask cluster (`dask`,
dask_engine.py). Either gives the same LightGBM text model, so the gate, the registry and the service never know."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from ltr_pipeline.backends import backend_class
from ltr_pipeline.config import Settings
from ltr_pipeline.dataset import Split, build_queries, share_count, split_by_time
from ltr_pipeline.errors import ConfigError
from ltr_pipeline.record import DatasetStats, Propensities
from ltr_pipeline.train import TrainedModel, tune

ENGINES = {"local": "ltr_pipeline.engine:LocalEngine", "dask": "ltr_pipeline.dask_engine:DaskEngine"}


class Engine(ABC):
    @abstractmethod
    def build(self, events: Path, settings: Settings, window_end: datetime, holdout: timedelta, workdir: Path
              ) -> tuple[Split, DatasetStats]:
        """The dataset of the events parquet file `events` (the run's events.parquet), split by time
        (dataset.split_by_time), and its statistics; `workdir` (the run's folder) may hold what the engine writes."""

    @abstractmethod
    def fit(self, split: Split, settings: Settings, propensities: Propensities | None, workdir: Path) -> TrainedModel:
        """The day's model from `split.train`, early-stopped (and tuned, with LTR_TUNE_TRIALS) on `split.valid`;
        `workdir` (the run's folder) may hold what the engine writes on the way."""


class LocalEngine(Engine):
    def build(self, events: Path, settings: Settings, window_end: datetime, holdout: timedelta, workdir: Path
              ) -> tuple[Split, DatasetStats]:
        lazy = pl.scan_parquet(events)
        queries, stats = build_queries(lazy, settings.feature_names, settings.label_grades,
                                       share_count(lazy, settings.share_events))
        return split_by_time(queries, window_end, holdout, settings.valid_fraction), stats

    def fit(self, split: Split, settings: Settings, propensities: Propensities | None, workdir: Path) -> TrainedModel:
        if split.shards is not None:
            raise ConfigError("this run's dataset was built with LTR_ENGINE=dask, in shares the local engine does "
                              "not read: train it with LTR_ENGINE=dask, or preprocess it again with local")
        return tune(split.train, split.valid, settings, propensities)


def make_engine(settings: Settings) -> Engine:
    engine: Engine = backend_class(ENGINES, settings.engine, "LTR_ENGINE")()
    return engine
