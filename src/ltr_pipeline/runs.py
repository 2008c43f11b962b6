"""The run folder, $LTR_HOME/runs/<run date>/ (hourly runs: runs/hourly/<YYYY-MM-DDTHH>/): its paths, and saving and
loading each step's output, so the Airflow tasks can run the steps one by one and pass nothing but the run label.

    events.parquet    the window's valid events (deduplicated)     quarantine.jsonl   what was refused, and why
    ingest.json       source, window, counts                        dataset.npz/.json  the split and its statistics
    shards.json, shares/   LTR_ENGINE=dask: the dataset as parquet files, a share of the cases each, and the split's
                           parts in them
    model.txt, ltr_weights.json, train.json                         evaluation.json    new / champion / legacy
    gate.json         every check                                    publish.json       decision, version or error
    business.json     production's Hit@3 and conversion              report.json        all of the above in one document
    report.html       the run's page                                 run.log            the run's log lines
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import numpy as np
import numpy.typing as npt
import polars as pl

from ltr_pipeline.config import Settings
from ltr_pipeline.dataset import QuerySet, Split, group_codes, group_refs, window
from ltr_pipeline.errors import DataError
from ltr_pipeline.record import Shards, dumps, load

T = TypeVar("T")
_PARTS = ("train", "valid", "holdout")
_ARRAYS = ("features", "labels", "qsizes", "query_ts", "positions", "acted")


@dataclass(frozen=True)
class Run:
    """A daily run (a UTC day), or an hourly incremental one (`hour` set: the window ends at that hour)."""

    settings: Settings
    run_date: date
    hour: datetime | None = None

    @classmethod
    def hourly(cls, settings: Settings, hour: datetime) -> Run:
        hour = hour.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return cls(settings, hour.date(), hour)

    @property
    def label(self) -> str:
        return self.hour.strftime("%Y-%m-%dT%H") if self.hour else self.run_date.isoformat()

    @property
    def kind(self) -> str:
        return "hourly" if self.hour else "daily"

    @property
    def dir(self) -> Path:
        return self.settings.runs_path / ("hourly/" + self.label if self.hour else self.label)

    def window(self) -> tuple[datetime, datetime]:
        if self.hour is None:
            return window(self.run_date, self.settings.train_days)
        return self.hour - timedelta(hours=self.settings.incremental_hours), self.hour

    @property
    def holdout(self) -> timedelta:
        if self.hour is None:
            return timedelta(days=self.settings.holdout_days)
        return timedelta(hours=self.settings.incremental_holdout_hours)

    def path(self, name: str) -> Path:
        return self.dir / name

    def save(self, name: str, record: Any) -> None:
        """A step's record as indented JSON (record.py types, or plain JSON values)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path(name).write_bytes(dumps(record))

    def load(self, name: str, kind: type[T]) -> T:
        """A step's record, typed; DataError when the step has not run."""
        try:
            return load(self.path(name), kind)
        except FileNotFoundError:
            raise DataError(f"{self.path(name)} is missing: run the earlier steps for {self.label} first") from None
        except msgspec.ValidationError as exc:
            raise DataError(f"{self.path(name)} is not what this version of ltr-pipeline writes: {exc}") from None

    def save_split(self, split: Split) -> None:
        """dataset.npz: numbers as arrays, groups as codes into their names (loading never needs pickle); and
        shards.json when the training and validation queries live in share files (LTR_ENGINE=dask)."""
        arrays: dict[str, np.ndarray] = {}
        for part in _PARTS:
            qs: QuerySet = getattr(split, part)
            arrays |= {f"{part}.{name}": getattr(qs, name) for name in _ARRAYS}
            names, codes = group_codes(pl.Series(list(qs.groups), dtype=pl.String))
            arrays[f"{part}.group_names"], arrays[f"{part}.group_codes"] = np.array(names, dtype=str), codes
            arrays[f"{part}.feature_names"] = np.array(qs.feature_names, dtype=str)
        self.dir.mkdir(parents=True, exist_ok=True)
        np.savez(self.path("dataset.npz"), **arrays)  # type: ignore[arg-type]
        if split.shards is None:
            self.path("shards.json").unlink(missing_ok=True)
        else:
            self.save("shards.json", split.shards)

    def load_split(self) -> Split:
        path = self.path("dataset.npz")
        if not path.is_file():
            raise DataError(f"{path} is missing: run the earlier steps for {self.label} first")
        with np.load(path, allow_pickle=False) as data:
            parts = {part: QuerySet(
                **{name: data[f"{part}.{name}"] for name in _ARRAYS if f"{part}.{name}" in data},
                **({} if f"{part}.acted" in data else {"acted": data[f"{part}.labels"] > 0}),  # before `acted`
                groups=_groups(data, part),
                feature_names=data[f"{part}.feature_names"].tolist(),
            ) for part in _PARTS}
        shards = self.load("shards.json", Shards) if self.path("shards.json").is_file() else None
        return Split(**parts, shards=shards)


def _groups(data: Any, part: str) -> npt.NDArray[np.object_]:
    """A part's groups from dataset.npz: codes into names; before, one fixed-width string per row."""
    if f"{part}.group_codes" not in data:
        return np.array([g or None for g in data[f"{part}.groups"].tolist()], dtype=object)
    return group_refs(data[f"{part}.group_names"].tolist(), data[f"{part}.group_codes"])
