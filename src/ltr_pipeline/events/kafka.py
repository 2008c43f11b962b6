"""The Kafka source: copy the topic into a per-day archive, then read the window from the archive.

Ingesting days [first, last] (all UTC):
1. every partition is positioned with `offsets_for_times(first 00:00)` and `assign()` (no group join);
2. messages are read until the partition's end or the first message stamped later than the last day's end plus
   `LTR_KAFKA_LATENESS_SECONDS`; each goes to the folder of the day its timestamp falls on (producers here stamp a
   message with its event's `ts`), unvalidated: validation happens when the archive is read, like any event file;
3. `archive/<day>/kafka-p<partition>.jsonl` is written (temporary file, fsync, rename) with a sidecar of the Kafka
   offset of every line, then `_SUCCESS`;
4. only then are the group's offsets committed (`KAFKA_GROUP_ID`): they show consumer lag, never what to read.

Re-ingesting a day rewrites its files from the same offsets: idempotent. A message stamped with a day before the range
(it arrived late, after its day was ingested) goes to that day's `late-<ingest day>-p<partition>.jsonl`, so every later
training window that covers its day includes it; the window's events are deduplicated by `event_id` when read.
Oversized messages are quarantined at once; the rest of the contract is checked when the archive is read, and a
quarantined line is reported with its topic, partition and offset.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from array import array
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson
import structlog

from ltr_pipeline.config import Settings
from ltr_pipeline.errors import ConfigError, SourceUnavailable
from ltr_pipeline.events.base import EventSource, IngestResult, QuarantineEntry
from ltr_pipeline.events.file import FileEventSource
from ltr_pipeline.events.schema import FUTURE_SLACK, MAX_EVENT_BYTES
from ltr_pipeline.fileutil import write_atomic

try:
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigError("the Kafka source needs confluent-kafka: pip install 'ltr-pipeline[kafka]'") from exc

log = structlog.get_logger(__name__)
DAY_MS = 86_400_000
SUCCESS = "_SUCCESS"
_ARCHIVE_FILE = re.compile(r"^(kafka|late-\d{4}-\d{2}-\d{2})-p(\d+)\.jsonl$")


def kafka_conf(settings: Settings, **extra: Any) -> dict[str, Any]:
    # librdkafka's own messages go to the structured log instead of raw lines on stderr
    return {"bootstrap.servers": settings.kafka_bootstrap_servers, "logger": logging.getLogger("librdkafka"),
            **settings.kafka_config, **extra}


def ensure_topic(settings: Settings) -> None:
    """Create the topic with LTR_KAFKA_PARTITIONS partitions if the broker does not have it yet."""
    admin = AdminClient(kafka_conf(settings))
    try:
        topics = admin.list_topics(timeout=settings.kafka_timeout_seconds).topics
    except KafkaException as exc:
        raise SourceUnavailable(f"Kafka at {settings.kafka_bootstrap_servers} is unreachable: {exc}") from exc
    if settings.kafka_topic in topics:
        return
    futures = admin.create_topics([NewTopic(settings.kafka_topic, settings.kafka_partitions, 1)])
    for future in futures.values():
        try:
            future.result(settings.kafka_timeout_seconds)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise SourceUnavailable(f"cannot create topic {settings.kafka_topic}: {exc}") from exc


def _epoch_day(ts_ms: int) -> date:
    return date.fromordinal(date(1970, 1, 1).toordinal() + ts_ms // DAY_MS)


def _day_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


class _ArchiveWriter:
    """Streams archive files to temporary files on a background thread, so disk writes overlap consuming."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-writer")
        self.files: dict[tuple[str, date], tuple[BinaryIO, Path, array[int]]] = {}
        self.pending: list[Future[int]] = []

    def add(self, name: str, day: date, lines: list[bytes], offsets: array[int]) -> None:
        entry = self.files.get((name, day))
        if entry is None:
            folder = self.root / day.isoformat()
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
            entry = self.files[(name, day)] = (os.fdopen(fd, "wb"), Path(tmp), array("q"))
        entry[2].extend(offsets)
        lines.append(b"")  # so the join ends with a newline without copying the chunk again
        chunk = b"\n".join(lines)
        if chunk.count(b"\n") != len(lines) - 1:  # a raw newline in JSON is only whitespace: one event per line
            chunk = b"\n".join(v.replace(b"\n", b" ").replace(b"\r", b" ") for v in lines)
        self.pending.append(self.pool.submit(entry[0].write, chunk))

    def finish(self) -> set[Path]:
        """Wait for every write, fsync, and move each file and its offsets sidecar into place."""
        written: set[Path] = set()
        for future in self.pending:
            future.result()
        for (name, day), (fh, tmp, offsets) in self.files.items():
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            final = self.root / day.isoformat() / name
            os.replace(tmp, final)
            write_atomic(final.with_suffix(".offsets"), offsets.tobytes())
            written |= {final, final.with_suffix(".offsets")}
        self.pool.shutdown()
        return written

    def abort(self) -> None:
        self.pool.shutdown(cancel_futures=True)
        for fh, tmp, _ in self.files.values():
            fh.close()
            tmp.unlink(missing_ok=True)


Bucket = tuple[str, date, list[bytes], "array[int]"]  # (archive file name, day, lines, their offsets)


PARTITION_EOF = -191  # librdkafka's RD_KAFKA_RESP_ERR__PARTITION_EOF


def partition_ended(error: Any) -> bool:
    """Whether a consumer error is librdkafka's end-of-partition notice (`enable.partition.eof`).

    confluent-kafka names that code only privately (`KafkaError._PARTITION_EOF`); this is the one place that reads
    it, falling back to librdkafka's own number, and a test fails with a clear message if a release removes it."""
    return bool(error.code() == getattr(KafkaError, "_PARTITION_EOF", PARTITION_EOF))


@dataclass
class _Ingest:
    """One ingest of days [first, last]: where it reads up to, and what it has gathered so far."""

    first: date
    last: date
    start_ms: int
    end_ms: int
    stop_ms: int  # the window's end plus the lateness allowed
    future_ms: int = field(default_factory=lambda: int((time.time() + FUTURE_SLACK.total_seconds()) * 1000))
    active: set[int] = field(default_factory=set)  # partitions still being read
    buckets: dict[tuple[int | str, int], Bucket] = field(default_factory=dict)  # (partition or file, epoch day)
    last_offset: dict[int, int] = field(default_factory=dict)
    known: dict[tuple[date, int], set[int]] = field(default_factory=dict)  # offsets already archived, per day
    quarantined: list[QuarantineEntry] = field(default_factory=list)
    read: int = 0
    late: int = 0
    future: int = 0

    def bucket(self, key: tuple[int | str, int], name: str, ts_ms: int) -> Bucket:
        found = self.buckets.get(key)
        if found is None:
            found = self.buckets[key] = (name, _epoch_day(ts_ms), [], array("q"))
        return found


class KafkaArchiver:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.kafka_topic
        self.root = settings.archive_path

    def archived(self, day: date) -> bool:
        return (self.root / day.isoformat() / SUCCESS).is_file()

    def _consumer(self) -> Any:
        try:
            consumer = Consumer(kafka_conf(
                self.settings, **{"group.id": self.settings.kafka_group_id, "enable.auto.commit": False,
                                  "enable.partition.eof": True, "auto.offset.reset": "earliest"}
            ))
        except KafkaException as exc:
            raise ConfigError(f"invalid Kafka consumer settings (check LTR_KAFKA_CONFIG): {exc}") from exc
        try:
            meta = consumer.list_topics(self.topic, timeout=self.settings.kafka_timeout_seconds)
        except KafkaException as exc:
            consumer.close()
            raise SourceUnavailable(
                f"Kafka at {self.settings.kafka_bootstrap_servers} is unreachable: {exc}"
            ) from exc
        topic = meta.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            consumer.close()
            raise SourceUnavailable(f"topic {self.topic!r} does not exist on {self.settings.kafka_bootstrap_servers}")
        return consumer, sorted(topic.partitions)

    def ingest(
        self, first: date, last: date, progress: Callable[[int], None] | None = None
    ) -> tuple[dict[str, Any], list[QuarantineEntry]]:
        """Archive the messages of days [first, last]. Returns (stats, quarantined oversized messages)."""
        consumer, partitions = self._consumer()
        start_ms, end_ms = _day_ms(first), _day_ms(last + timedelta(days=1))
        ingest = _Ingest(first, last, start_ms, end_ms, end_ms + int(self.settings.kafka_lateness_seconds * 1000))
        timeout = self.settings.kafka_timeout_seconds
        writer = _ArchiveWriter(self.root)
        try:
            starts = consumer.offsets_for_times(
                [TopicPartition(self.topic, p, start_ms) for p in partitions], timeout=timeout
            )
            ingest.active = {tp.partition for tp in starts if tp.offset >= 0}
            consumer.assign([tp for tp in starts if tp.offset >= 0])
            idle_since = time.monotonic()
            while ingest.active:
                batch = consumer.consume(num_messages=10_000, timeout=0.2)
                if not batch:
                    if time.monotonic() - idle_since > timeout:
                        raise SourceUnavailable(
                            f"Kafka stopped answering mid-ingest of {first}..{last} (partitions still open: "
                            f"{sorted(ingest.active)}); nothing was written or committed: run the date again"
                        )
                    continue
                idle_since = time.monotonic()
                if self._take_whole(batch, ingest):
                    ingest.read += len(batch)
                    batch = []  # the common case is done: every message of the batch archived at C speed
                for msg in batch:  # the general loop: errors, partition ends, late, oversized, several days
                    self._route(msg, ingest, consumer)
                for bucket in ingest.buckets.values():
                    writer.add(*bucket)
                ingest.buckets.clear()
                if progress:
                    progress(ingest.read)
            self._replace_days(first, last, partitions, writer)
            if ingest.last_offset:
                consumer.commit(offsets=[TopicPartition(self.topic, p, o + 1) for p, o in ingest.last_offset.items()],
                                asynchronous=False)
        except BaseException:
            writer.abort()
            raise
        finally:
            consumer.close()
        stats = {"topic": self.topic, "partitions": partitions, "days": [first.isoformat(), last.isoformat()],
                 "messages": ingest.read, "late": ingest.late, "beyond_range": ingest.future,
                 "committed": {str(p): o for p, o in sorted(ingest.last_offset.items())}}
        log.info("kafka.ingested", **stats)
        return stats, ingest.quarantined

    def _route(self, msg: Any, ingest: _Ingest, consumer: Any) -> None:
        """One message of the general loop: to its day's bucket, the late file, the quarantine, or nowhere."""
        partition = msg.partition()
        if msg.error() is not None:  # rare: partition ends and broker hiccups
            if partition_ended(msg.error()):
                ingest.active.discard(partition)
            else:
                log.warning("kafka.consume_error", error=str(msg.error()))
            return
        if partition not in ingest.active:
            return
        ts = msg.timestamp()[1]
        if ts > ingest.future_ms:  # a producer's clock or a hostile stamp: not a sign that the partition is done
            ingest.last_offset[partition] = msg.offset()
            ingest.read += 1
            ingest.quarantined.append(QuarantineEntry(
                "Kafka timestamp more than a day in the future", "kafka",
                {"topic": self.topic, "partition": partition, "offset": msg.offset()},
                (msg.value() or b"")[:2000].decode("utf-8", errors="replace")))
            return
        if ts >= ingest.stop_ms:
            ingest.active.discard(partition)
            consumer.pause([TopicPartition(self.topic, partition)])
            return
        offset = msg.offset()
        ingest.last_offset[partition] = offset
        ingest.read += 1
        value = msg.value() or b""
        if ingest.start_ms <= ts < ingest.end_ms and len(value) <= MAX_EVENT_BYTES:
            bucket = ingest.bucket((partition, ts // DAY_MS), f"kafka-p{partition}.jsonl", ts)
        elif ts >= ingest.end_ms:
            ingest.future += 1  # belongs to a day after the range: the next ingest takes it
            return
        elif len(value) > MAX_EVENT_BYTES or ts < 0:
            reason = f"event larger than {MAX_EVENT_BYTES} bytes" if ts >= 0 else "no timestamp"
            ingest.quarantined.append(QuarantineEntry(
                reason, "kafka", {"topic": self.topic, "partition": partition, "offset": offset},
                value[:2000].decode("utf-8", errors="replace"),
            ))
            return
        else:  # stamped before the range: late for a day already ingested, unless archived there
            if offset in self._known_offsets(_epoch_day(ts), partition, ingest.last, ingest.known):
                return
            ingest.late += 1
            name = f"late-{ingest.last.isoformat()}-p{partition}.jsonl"
            bucket = ingest.bucket((name, ts // DAY_MS), name, ts)
        bucket[2].append(value)
        bucket[3].append(offset)

    @staticmethod
    def _take_whole(batch: list[Any], ingest: _Ingest) -> bool:
        """Archive a batch in bulk when it is the common case: no error, every partition still open, every message
        inside the range on one day and of a size the contract allows. False (nothing taken) otherwise."""
        if any([m.error() is not None for m in batch]):
            return False
        stamps = np.fromiter((m.timestamp()[1] for m in batch), dtype=np.int64, count=len(batch))
        day = int(stamps[0]) // DAY_MS
        if stamps.min() < max(ingest.start_ms, day * DAY_MS) or \
                stamps.max() >= min(ingest.end_ms, (day + 1) * DAY_MS, ingest.stop_ms):
            return False
        partitions = np.fromiter((m.partition() for m in batch), dtype=np.int64, count=len(batch))
        values = [m.value() or b"" for m in batch]
        present = np.unique(partitions).tolist()
        if not ingest.active.issuperset(present) or max(map(len, values)) > MAX_EVENT_BYTES:
            return False
        offsets = np.fromiter((m.offset() for m in batch), dtype=np.int64, count=len(batch))
        for partition in present:
            rows = np.flatnonzero(partitions == partition)
            bucket = ingest.bucket((partition, day), f"kafka-p{partition}.jsonl", day * DAY_MS)
            bucket[2].extend(itemgetter(*rows.tolist())(values) if len(rows) > 1 else [values[rows[0]]])
            bucket[3].extend(offsets[rows].tolist())
            ingest.last_offset[partition] = int(offsets[rows[-1]])
        return True

    def _replace_days(self, first: date, last: date, partitions: Iterable[int], writer: _ArchiveWriter) -> None:
        written = writer.finish()  # each file replaced whole, by rename
        day = first
        while day <= last:  # a partition file of the range this ingest did not rewrite is stale
            for partition in partitions:
                for suffix in (".jsonl", ".offsets"):
                    path = self.root / day.isoformat() / f"kafka-p{partition}{suffix}"
                    if path not in written:
                        path.unlink(missing_ok=True)
            day += timedelta(days=1)
        day = first
        while day <= last:
            write_atomic(self.root / day.isoformat() / SUCCESS,
                          orjson.dumps({"ingested_at": datetime.now(UTC).isoformat(), "topic": self.topic}))
            day += timedelta(days=1)

    def _known_offsets(
        self, day: date, partition: int, last: date, cache: dict[tuple[date, int], set[int]]
    ) -> set[int]:
        """Offsets of `partition` already archived under `day`, except by this ingest's own late file."""
        if (day, partition) not in cache:
            own = f"late-{last.isoformat()}-p{partition}.offsets"
            offsets: array[int] = array("q")
            for path in (self.root / day.isoformat()).glob(f"*-p{partition}.offsets"):
                if path.name != own:
                    offsets.frombytes(path.read_bytes())
            cache[(day, partition)] = set(offsets)
        return cache[(day, partition)]

    def locate(self, entry: QuarantineEntry) -> None:
        """Add topic, partition and offset to a quarantine entry that points at an archive line."""
        path = Path(str(entry.position.get("file", "")))
        match = _ARCHIVE_FILE.match(path.name)
        line = entry.position.get("line")
        if not match or not isinstance(line, int):
            return
        offsets = array("q")
        offsets.frombytes(path.with_suffix(".offsets").read_bytes())
        if 0 < line <= len(offsets):
            entry.position.update(topic=self.topic, partition=int(match.group(2)), offset=offsets[line - 1])
            entry.source = "kafka"


class KafkaEventSource(EventSource):
    """Ingest what the archive lacks (always the window's last day), then read the window from the archive."""

    name = "kafka"

    def __init__(self, settings: Settings, progress: Callable[[int], None] | None = None) -> None:
        self.archiver = KafkaArchiver(settings)
        self.progress = progress

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaEventSource:
        return cls(settings)

    def read(
        self, start: datetime, end: datetime, actions: Collection[str], feature_names: Sequence[str],
        into: Path | None = None,
    ) -> IngestResult:
        days = [start.date() + timedelta(days=i) for i in range((end - start).days)]
        missing = [d for d in days[:-1] if not self.archiver.archived(d)] + days[-1:]
        stats, oversized = self.archiver.ingest(missing[0], days[-1], self.progress)
        result = FileEventSource(self.archiver.root).read(start, end, actions, feature_names, into)
        for entry in result.quarantined:
            self.archiver.locate(entry)
        result.quarantined[:0] = oversized
        result.source = self.name
        result.detail = {"kafka": stats, "archive": str(self.archiver.root)}
        return result


def read_recent(settings: Settings, start: datetime, end: datetime) -> list[Any]:
    """The valid events of the topic stamped in [start, end), read with a consumer of their own that commits nothing
    (the guard's view of what the service sent; the daily ingest and its offsets are untouched). Each partition is
    read from its first message at `start` to its end as the broker reports it now; invalid messages are skipped."""
    from ltr_pipeline.events.schema import InvalidEvent, parse_event

    consumer = Consumer(kafka_conf(settings, **{"group.id": f"{settings.kafka_group_id}-guard",
                                                "enable.auto.commit": False, "enable.partition.eof": True}))
    timeout = settings.kafka_timeout_seconds
    try:
        try:
            meta = consumer.list_topics(settings.kafka_topic, timeout=timeout)
        except KafkaException as exc:
            raise SourceUnavailable(f"Kafka at {settings.kafka_bootstrap_servers} is unreachable: {exc}") from exc
        topic = meta.topics.get(settings.kafka_topic)
        if topic is None or topic.error is not None:
            return []
        start_ms = int(start.timestamp() * 1000)
        starts = consumer.offsets_for_times(
            [TopicPartition(settings.kafka_topic, p, start_ms) for p in sorted(topic.partitions)], timeout=timeout)
        open_partitions = {tp.partition for tp in starts if tp.offset >= 0}
        consumer.assign([tp for tp in starts if tp.offset >= 0])
        events: list[Any] = []
        idle_since = time.monotonic()
        while open_partitions:
            batch = consumer.consume(num_messages=10_000, timeout=0.2)
            if not batch:
                if time.monotonic() - idle_since > timeout:
                    raise SourceUnavailable(f"Kafka stopped answering while the guard read {settings.kafka_topic}")
                continue
            idle_since = time.monotonic()
            for msg in batch:
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        open_partitions.discard(msg.partition())
                    continue
                try:
                    event = parse_event(msg.value() or b"", settings.label_grades.keys())
                except InvalidEvent:
                    continue  # the daily ingest quarantines it
                if start <= event.ts < end:
                    events.append(event)
        return events
    finally:
        consumer.close()
