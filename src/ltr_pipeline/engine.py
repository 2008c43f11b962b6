"""Where the daily model is trained, by LTR_ENGINE: in this process (`local`) or on a Dask cluster (`dask`,
dask_engine.py). Either gives the same LightGBM text model, so the gate, the registry and the service never know."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from ltr_pipeline.backends import backend_class
from ltr_pipeline.config import Settings
from ltr_pipeline.dataset import Split
from ltr_pipeline.record import Propensities
from ltr_pipeline.train import TrainedModel, tune

ENGINES = {"local": "ltr_pipeline.engine:LocalEngine", "dask": "ltr_pipeline.dask_engine:DaskEngine"}


class Engine(ABC):
    @abstractmethod
    def fit(self, split: Split, settings: Settings, propensities: Propensities | None, workdir: Path) -> TrainedModel:
        """The day's model from `split.train`, early-stopped (and tuned, with LTR_TUNE_TRIALS) on `split.valid`;
        `workdir` (the run's folder) may hold what the engine writes on the way."""


class LocalEngine(Engine):
    def fit(self, split: Split, settings: Settings, propensities: Propensities | None, workdir: Path) -> TrainedModel:
        return tune(split.train, split.valid, settings, propensities)


def make_engine(settings: Settings) -> Engine:
    engine: Engine = backend_class(ENGINES, settings.engine, "LTR_ENGINE")()
    return engine
