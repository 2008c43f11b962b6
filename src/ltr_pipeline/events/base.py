"""What every event source returns, and the shared bookkeeping: deduplication and quarantine."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import structlog

from ltr_pipeline.events.schema import Event, InvalidEvent, parse_event

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


@dataclass
class IngestResult:
    source: str
    events: list[Event] = field(default_factory=list)
    quarantined: list[QuarantineEntry] = field(default_factory=list)
    duplicates: int = 0
    seen: int = 0  # lines or messages read, in or out of the window
    detail: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "events": len(self.events),
            "recommendations": sum(e.event_type == "recommendation" for e in self.events),
            "feedback": sum(e.event_type == "feedback" for e in self.events),
            "duplicates": self.duplicates,
            "quarantined": len(self.quarantined),
            "seen": self.seen,
        }


class WindowCollector:
    """Validates raw records, keeps those inside [start, end), drops repeated event_ids, quarantines bad ones."""

    def __init__(self, result: IngestResult, start: datetime, end: datetime, actions: Collection[str]) -> None:
        self.result, self.start, self.end, self.actions = result, start, end, actions
        self._ids: set[str] = set()

    def add(self, raw: bytes, position: dict[str, Any]) -> Event | None:
        self.result.seen += 1
        try:
            event = parse_event(raw, self.actions)
        except InvalidEvent as exc:
            self.quarantine(str(exc), position, raw)
            return None
        if not self.start <= event.ts < self.end:
            return None
        if event.event_id in self._ids:
            self.result.duplicates += 1
            return None
        self._ids.add(event.event_id)
        self.result.events.append(event)
        return event

    def quarantine(self, reason: str, position: dict[str, Any], raw: bytes = b"") -> None:
        text = raw[:QUARANTINE_RAW_CHARS].rstrip(b"\r\n").decode("utf-8", errors="replace")
        self.result.quarantined.append(QuarantineEntry(reason, self.result.source, position, text))


def write_quarantine(entries: list[QuarantineEntry], path: Path) -> None:
    """One JSON object per quarantined record, with the reason and where it came from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        for entry in entries:
            fh.write(orjson.dumps(entry.to_dict()) + b"\n")


class EventSource(ABC):
    """Reads the events whose `ts` falls in [start, end)."""

    name: str

    @abstractmethod
    def read(self, start: datetime, end: datetime, actions: Collection[str]) -> IngestResult: ...


class FallbackSource(EventSource):
    """Read from `primary`; when it is unavailable, read from `fallback` and say why in the result."""

    def __init__(self, primary: EventSource, fallback: EventSource) -> None:
        self.primary, self.fallback = primary, fallback
        self.name = f"{primary.name}|{fallback.name}"

    def read(self, start: datetime, end: datetime, actions: Collection[str]) -> IngestResult:
        from ltr_pipeline.errors import SourceUnavailable

        try:
            return self.primary.read(start, end, actions)
        except SourceUnavailable as exc:
            log.warning("source.fallback", primary=self.primary.name, fallback=self.fallback.name, reason=str(exc))
            result = self.fallback.read(start, end, actions)
            result.detail["fallback"] = {"from": self.primary.name, "reason": str(exc)}
            return result
