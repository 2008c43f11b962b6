"""What every event source returns (a validated table of events, and the quarantine), and the shared bookkeeping."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import polars as pl
import pyarrow.parquet as pq
import structlog

from ltr_pipeline.record import IngestCounts

if TYPE_CHECKING:
    from ltr_pipeline.config import Settings

QUARANTINE_RAW_CHARS = 2000
log = structlog.get_logger(__name__)


@dataclass(slots=True)
class QuarantineEntry:
    reason: str
    source: str
    position: dict[str, Any]  # file+line, or topic+partition+offset
    raw: str

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "source": self.source, "position": self.position, "raw": self.raw}


def quarantine_entry(reason: str, source: str, position: dict[str, Any], raw: bytes = b"") -> QuarantineEntry:
    text = raw[:QUARANTINE_RAW_CHARS].rstrip(b"\r\n").decode("utf-8", errors="replace")
    return QuarantineEntry(reason, source, position, text)


@dataclass
class IngestResult:
    """The window's valid events, without repeated event_ids: a lazy table (see events/frame.py), held in memory or
    scanned from the parquet file the source wrote them to (`read(..., into=path)`)."""

    source: str
    events: pl.LazyFrame
    quarantined: list[QuarantineEntry] = field(default_factory=list)
    duplicates: int = 0
    seen: int = 0  # lines or messages read, in or out of the window
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def frame(self) -> pl.DataFrame:
        """The events as one table in memory."""
        return self.events.collect()

    def counts(self) -> IngestCounts:
        kinds = dict(self.events.group_by("event_type").len().collect().iter_rows())
        return IngestCounts(
            events=sum(kinds.values()),
            recommendations=kinds.get("recommendation", 0),
            feedback=kinds.get("feedback", 0),
            duplicates=self.duplicates,
            quarantined=len(self.quarantined),
            seen=self.seen,
        )


def in_window(frame: pl.DataFrame, start: datetime, end: datetime) -> pl.DataFrame:
    """The events whose `ts` falls in [start, end)."""
    return frame.filter(pl.col("ts").is_between(start, end, closed="left"))


class FirstOfEach:
    """Tables of events added one by one (a file, a batch), each event_id kept the first time it comes. With `into`,
    what is kept is written there as parquet as it comes, and only the event_ids stay in memory; the caller drops
    each table once added, so the window is never held whole. `events()` when all are added."""

    def __init__(self, into: Path | None = None) -> None:
        self.into = into
        self.partial = into.with_name(f".{into.name}.partial") if into else None
        self.writer: pq.ParquetWriter | None = None
        self.frames: list[pl.DataFrame] = []
        self.ids: list[pl.Series] = []
        self.duplicates = 0

    def add(self, frame: pl.DataFrame) -> None:
        fresh = frame.filter(pl.col("event_id").is_first_distinct())
        if self.ids:
            fresh = fresh.filter(~pl.col("event_id").is_in(pl.concat(self.ids, rechunk=False).implode()))
        self.duplicates += frame.height - fresh.height
        self.ids.append(fresh.get_column("event_id"))
        if self.partial is None:
            self.frames.append(fresh)
            return
        table = fresh.to_arrow()
        if self.writer is None:
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.partial, table.schema)
        self.writer.write_table(table)

    def events(self) -> pl.LazyFrame:
        if self.into is None or self.partial is None:
            return pl.concat(self.frames, how="vertical", rechunk=False).lazy()
        if self.writer is not None:
            self.writer.close()
            self.partial.replace(self.into)  # a reader sees the whole window or none
        return pl.scan_parquet(self.into)


def first_of_each(frames: list[pl.DataFrame]) -> tuple[pl.DataFrame, int]:
    """The frames as one table, the first of each event_id kept (in file order); returns (table, duplicates)."""
    kept = FirstOfEach()
    for frame in frames:
        kept.add(frame)
    return kept.events().collect(), kept.duplicates


def write_quarantine(entries: list[QuarantineEntry], path: Path) -> None:
    """One JSON object per quarantined record, with the reason and where it came from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        for entry in entries:
            fh.write(orjson.dumps(entry.to_dict()) + b"\n")


class EventSource(ABC):
    """Reads the events whose `ts` falls in [start, end)."""

    name: str

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> EventSource:
        """The source as the settings configure it."""

    @abstractmethod
    def read(
        self, start: datetime, end: datetime, actions: Collection[str], feature_names: Sequence[str],
        into: Path | None = None,
    ) -> IngestResult:
        """`into`: write the events there as parquet as they are read (always, even none), holding none of them in
        memory; the pipeline's later steps read that file."""


class FallbackSource(EventSource):
    """Read from `primary`; when it is unavailable, read from `fallback` and say why in the result."""

    @classmethod
    def from_settings(cls, settings: Settings) -> EventSource:
        """LTR_SOURCE=auto: Kafka, the event files when the broker is unreachable."""
        from ltr_pipeline.events import source_class

        return cls(source_class("kafka").from_settings(settings), source_class("file").from_settings(settings))

    def __init__(self, primary: EventSource, fallback: EventSource) -> None:
        self.primary, self.fallback = primary, fallback
        self.name = f"{primary.name}|{fallback.name}"

    def read(
        self, start: datetime, end: datetime, actions: Collection[str], feature_names: Sequence[str],
        into: Path | None = None,
    ) -> IngestResult:
        from ltr_pipeline.errors import SourceUnavailable

        try:
            return self.primary.read(start, end, actions, feature_names, into)
        except SourceUnavailable as exc:
            log.warning("source.fallback", primary=self.primary.name, fallback=self.fallback.name, reason=str(exc))
            result = self.fallback.read(start, end, actions, feature_names, into)
            result.detail["fallback"] = {"from": self.primary.name, "reason": str(exc)}
            return result
