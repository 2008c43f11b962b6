"""The file source: every *.jsonl and *.jsonl.gz under a folder, selected by `ts`.

Each file goes through the columnar fast path when polars can parse it whole, and line by line otherwise (a line that
is not JSON, a blank line, a truncated .gz): both check the same contract and quarantine with file and line.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from ltr_pipeline.errors import SourceUnavailable
from ltr_pipeline.events.base import EventSource, IngestResult, QuarantineEntry, quarantine_entry, select_window
from ltr_pipeline.events.frame import empty_frame, events_to_frame, read_fast
from ltr_pipeline.events.schema import Event, InvalidEvent, parse_event

if TYPE_CHECKING:
    from ltr_pipeline.config import Settings

log = structlog.get_logger(__name__)


def event_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz")))


def _read_bytes(path: Path) -> tuple[bytes, str | None]:
    """The file's bytes (decompressed), and what went wrong if it is damaged (the bytes read before it)."""
    raw = path.read_bytes()
    if not path.name.endswith(".gz"):
        return raw, None
    chunks: list[bytes] = []
    while raw:  # one gzip member after another, keeping whatever decompresses before any damage
        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunks.append(member.decompress(raw))
        except zlib.error as exc:
            return b"".join(chunks), str(exc)
        if not member.eof:
            return b"".join(chunks), "compressed file ended before the end-of-stream marker"
        raw = member.unused_data
    return b"".join(chunks), None


class FileEventSource(EventSource):
    name = "file"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def from_settings(cls, settings: Settings) -> FileEventSource:
        return cls(settings.events_path)

    def read(
        self, start: datetime, end: datetime, actions: Collection[str], feature_names: Sequence[str]
    ) -> IngestResult:
        if not self.root.is_dir():
            raise SourceUnavailable(
                f"event folder {self.root} does not exist: run `ltr simulate` or set LTR_EVENTS_DIR"
            )
        quarantined: list[QuarantineEntry] = []
        frames = [empty_frame(feature_names)]
        seen = 0
        files = event_files(self.root)
        for path in files:
            data, damage = _read_bytes(path)
            fast = None if damage else read_fast(data, feature_names, actions)
            if fast is not None:
                valid, refused = fast
                frames.append(valid)
                seen += valid.height + len(refused)
                quarantined += [quarantine_entry(reason, self.name, {"file": str(path), "line": line}, raw)
                                for reason, line, raw in refused]
                continue
            events: list[Event] = []
            lines = data.split(b"\n")
            if lines and not lines[-1]:
                lines.pop()
            for line_no, line in enumerate(lines, start=1):
                if not line.strip() or (damage and line_no == len(lines)):  # a cut-off last line is not an event
                    continue
                seen += 1
                try:
                    events.append(parse_event(line, actions))
                except InvalidEvent as exc:
                    quarantined.append(quarantine_entry(str(exc), self.name, {"file": str(path), "line": line_no},
                                                        line))
            frames.append(events_to_frame(events, feature_names))
            if damage:
                # A truncated or corrupt file keeps what was read before the damage.
                quarantined.append(quarantine_entry(f"unreadable file after line {len(lines)}: {damage}", self.name,
                                                    {"file": str(path)}))
                log.warning("events.file_unreadable", file=str(path), after_line=len(lines), error=damage)
        frame, duplicates = select_window(frames, start, end)
        return IngestResult(self.name, frame, quarantined, duplicates, seen,
                            {"root": str(self.root), "files": len(files)})
