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
    """The window's valid events as a table (see events/frame.py), without repeated event_ids."""

    source: str
    frame: pl.DataFrame
    quarantined: list[QuarantineEntry] = field(default_factory=list)
    duplicates: int = 0
    seen: int = 0  # lines or messages read, in or out of the window
    detail: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> IngestCounts:
        kinds = self.frame.get_column("event_type")
        return IngestCounts(
            events=self.frame.height,
            recommendations=int((kinds == "recommendation").sum()),
            feedback=int((kinds == "feedback").sum()),
            duplicates=self.duplicates,
            quarantined=len(self.quarantined),
            seen=self.seen,
        )


def in_window(frame: pl.DataFrame, start: datetime, end: datetime) -> pl.DataFrame:
    """The events whose `ts` falls in [start, end)."""
    return frame.filter(pl.col("ts").is_between(start, end, closed="left"))


def first_of_each(frames: list[pl.DataFrame]) -> tuple[pl.DataFrame, int]:
    """The frames as one table, the first of each event_id kept (in file order); returns (table, duplicates)."""
    events = pl.concat(frames, how="vertical")
    unique = events.filter(pl.col("event_id").is_first_distinct())
    return unique, events.height - unique.height


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
        self, start: datetime, end: datetime, actions: Collection[str], feature_names: Sequence[str]
    ) -> IngestResult: ...


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
        self, start: datetime, end: datetime, actions: Collection[str], feature_names: Sequence[str]
    ) -> IngestResult:
        from ltr_pipeline.errors import SourceUnavailable

        try:
            return self.primary.read(start, end, actions, feature_names)
        except SourceUnavailable as exc:
            log.warning("source.fallback", primary=self.primary.name, fallback=self.fallback.name, reason=str(exc))
            result = self.fallback.read(start, end, actions, feature_names)
            result.detail["fallback"] = {"from": self.primary.name, "reason": str(exc)}
            return result
