"""The file source: every *.jsonl and *.jsonl.gz under a folder, selected by `ts`.

Each file goes through the columnar fast path when polars can parse it whole, and line by line otherwise (a line that
is not JSON, a blank line, a truncated .gz): both check the same contract and quarantine with file and line.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import structlog

from ltr_pipeline.errors import SourceUnavailable
from ltr_pipeline.events.base import (
    EventSource,
    FirstOfEach,
    IngestResult,
    QuarantineEntry,
    in_window,
    quarantine_entry,
)
from ltr_pipeline.events.frame import empty_frame, events_to_frame, read_fast
from ltr_pipeline.events.schema import Event, InvalidEvent, parse_event

if TYPE_CHECKING:
    from ltr_pipeline.config import Settings

log = structlog.get_logger(__name__)


def event_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz")))


def _read_bytes(path: Path, cap: int | None) -> tuple[bytes, str | None]:
    """The file's bytes; a .gz decompressed as a stream, up to `cap` bytes (None: no cap), since a small .gz can
    hold gigabytes. With what went wrong when it is damaged or larger (the bytes read before that are kept)."""
    with path.open("rb") as fh:
        if not path.name.endswith(".gz"):
            return fh.read(), None
        cap = cap or sys.maxsize
        out = bytearray()
        member, fed, pending = zlib.decompressobj(16 + zlib.MAX_WBITS), False, b""
        while True:  # one gzip member after another
            if not pending:
                pending = fh.read(1 << 20)
                if not pending:
                    return bytes(out), "compressed file ended before the end-of-stream marker" if fed else None
            try:
                out += member.decompress(pending, min(cap + 1 - len(out), 1 << 26))
            except zlib.error as exc:  # damage, or junk after the last member
                return bytes(out), str(exc)
            fed, pending = True, member.unconsumed_tail
            if len(out) > cap:
                return bytes(out[:cap]), f"decompresses to more than {cap} bytes (LTR_MAX_EVENT_FILE_BYTES)"
            if member.eof:
                member, fed, pending = zlib.decompressobj(16 + zlib.MAX_WBITS), False, member.unused_data


LINE_BATCH = 50_000  # events held as Python objects at once on the line-by-line path


def _read_lines(data: bytes, feature_names: Sequence[str], actions: Collection[str], now: datetime | None = None
                ) -> tuple[pl.DataFrame, list[tuple[str, int, bytes]]]:
    """The line-by-line path, for what `read_fast` cannot read whole (blank lines, a line that is not JSON): the
    same (valid rows, refused lines), turned into a table every LINE_BATCH events so memory stays bounded."""
    frames = [empty_frame(feature_names)]
    events: list[Event] = []
    refused: list[tuple[str, int, bytes]] = []
    for line_no, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():  # blank, or the end of the last line
            continue
        try:
            events.append(parse_event(line, actions, now))
        except InvalidEvent as exc:
            refused.append((str(exc), line_no, line))
        if len(events) == LINE_BATCH:
            frames.append(events_to_frame(events, feature_names))
            events = []
    frames.append(events_to_frame(events, feature_names))
    return pl.concat(frames, how="vertical"), refused


class FileEventSource(EventSource):
    name = "file"

    def __init__(self, root: Path, max_file_bytes: int | None = None) -> None:
        """`max_file_bytes`: the most decompressed from one .gz file (None: no cap)."""
        self.root = Path(root)
        self.max_file_bytes = max_file_bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> FileEventSource:
        return cls(settings.events_path, settings.max_event_file_bytes)

    def read(
        self, start: datetime, end: datetime, actions: Collection[str], feature_names: Sequence[str],
        into: Path | None = None,
    ) -> IngestResult:
        if not self.root.is_dir():
            raise SourceUnavailable(
                f"event folder {self.root} does not exist: run `ltr simulate` or set LTR_EVENTS_DIR"
            )
        quarantined: list[QuarantineEntry] = []
        kept = FirstOfEach(into)
        kept.add(empty_frame(feature_names))
        seen, now = 0, datetime.now(UTC)  # one moment for every file and both paths
        files = event_files(self.root)
        for path in files:
            data, damage = _read_bytes(path, self.max_file_bytes)
            if damage:  # what was read before the damage, complete lines only: a cut-off line is not an event
                data = data[: data.rfind(b"\n") + 1]
            valid, refused = read_fast(data, feature_names, actions, now) or \
                _read_lines(data, feature_names, actions, now)
            kept.add(in_window(valid, start, end))  # out of the window: dropped file by file, never held
            seen += valid.height + len(refused)
            quarantined += [quarantine_entry(reason, self.name, {"file": str(path), "line": line}, raw)
                            for reason, line, raw in refused]
            if damage:
                lines = data.count(b"\n")
                quarantined.append(quarantine_entry(f"unreadable file after line {lines}: {damage}", self.name,
                                                    {"file": str(path)}))
                log.warning("events.file_unreadable", file=str(path), after_line=lines, error=damage)
        return IngestResult(self.name, kept.events(), quarantined, kept.duplicates, seen,
                            {"root": str(self.root), "files": len(files)})
