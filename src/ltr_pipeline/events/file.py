"""The file source: every *.jsonl and *.jsonl.gz under a folder, selected by `ts`."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Collection, Iterator
from datetime import datetime
from pathlib import Path

import structlog

from ltr_pipeline.errors import SourceUnavailable
from ltr_pipeline.events.base import EventSource, IngestResult, WindowCollector

log = structlog.get_logger(__name__)


def event_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz")))


def _lines(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        yield from fh


class FileEventSource(EventSource):
    name = "file"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def read(self, start: datetime, end: datetime, actions: Collection[str]) -> IngestResult:
        if not self.root.is_dir():
            raise SourceUnavailable(
                f"event folder {self.root} does not exist: run `ltr simulate` or set LTR_EVENTS_DIR"
            )
        result = IngestResult(source=self.name, detail={"root": str(self.root)})
        collector = WindowCollector(result, start, end, actions)
        files = event_files(self.root)
        for path in files:
            line_no = 0
            try:
                for line_no, line in enumerate(_lines(path), start=1):
                    if line.strip():
                        collector.add(line, {"file": str(path), "line": line_no})
            except (EOFError, OSError, zlib.error) as exc:
                # A truncated or corrupt file keeps what was read before the damage.
                collector.quarantine(f"unreadable file after line {line_no}: {exc}", {"file": str(path)})
                log.warning("events.file_unreadable", file=str(path), after_line=line_no, error=str(exc))
        result.detail["files"] = len(files)
        return result
