"""Where served events go: nowhere, event files, or the Kafka topic (the loop that feeds the next run).

A request only puts a small closure on a queue; a background thread turns it into events and writes them, so
emitting never slows or fails a ranking request. The Kafka sink hands events to librdkafka; any event the broker does
not acknowledge within LTR_KAFKA_MESSAGE_TIMEOUT_MS (broker down, queue full, shutdown) is appended to a spool file
and offered again every LTR_SPOOL_RETRY_SECONDS until the broker takes it. Nothing is lost; a retried event may
reach the topic twice, and readers drop the copy by `event_id`.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import structlog

from ltr_pipeline.config import Settings
from ltr_pipeline.events.schema import Event, parse_ts

log = structlog.get_logger(__name__)
Record = Callable[[str, int], None]  # (outcome, count): sent | spooled | resent | dropped


def _ignore(_: str, __: int) -> None:
    return None


class EventSink:
    """The interface; this base writes nothing (LTR_EVENT_SINK=none)."""

    name = "none"

    def submit(self, build: Callable[[], list[Event]]) -> None:
        """Queue events for writing; `build` runs later, off the caller's thread."""

    def start(self) -> None:
        """Start the background writer."""

    def close(self) -> None:
        """Write or spool everything still queued."""

    def spooled(self) -> int:
        return 0


class BackgroundSink(EventSink, ABC):
    def __init__(self, record: Record = _ignore) -> None:
        self.record = record
        self._queue: queue.SimpleQueue[Callable[[], list[Event]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-sink", daemon=True)

    def submit(self, build: Callable[[], list[Event]]) -> None:
        self._queue.put(build)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                self.tick()
                continue
            if item is None:
                return
            try:
                self.write(item())
            except Exception as exc:  # a bad event must not kill the writer
                log.error("sink.write_failed", sink=self.name, error=str(exc))
            self.tick()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30)

    @abstractmethod
    def write(self, events: list[Event]) -> None: ...

    def tick(self) -> None:
        """Periodic work between writes."""


class FileSink(BackgroundSink):
    """Appends served events to <root>/<event day>/served-<pid>.jsonl, which the file source reads."""

    name = "file"

    def __init__(self, root: Path, record: Record = _ignore) -> None:
        self.root = Path(root)
        super().__init__(record)

    def write(self, events: list[Event]) -> None:
        by_day: dict[str, list[bytes]] = {}
        for event in events:
            by_day.setdefault(event.ts.date().isoformat(), []).append(event.to_json())
        for day, lines in by_day.items():
            path = self.root / day / f"served-{os.getpid()}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as fh:
                fh.write(b"\n".join(lines) + b"\n")
        self.record("sent", len(events))


class KafkaSink(BackgroundSink):
    name = "kafka"

    def __init__(self, settings: Settings, record: Record = _ignore) -> None:
        from confluent_kafka import Producer

        from ltr_pipeline.events.kafka import kafka_conf

        super().__init__(record)
        self.settings = settings
        self.topic = settings.kafka_topic
        self.spool_dir = settings.spool_path
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.spool_file = self.spool_dir / "events.jsonl"
        self._spool_lock = threading.Lock()
        self._pending: dict[Path, int] = {}  # resend batch file -> deliveries still awaited
        self._next_retry = 0.0
        self._outcomes: list[tuple[Path | None, bytes | None]] = []  # (resend batch, value if it failed)
        # No idempotent producer: after a timeout it can be fenced for good (Tansu does), and event_id already
        # makes a resent duplicate harmless downstream.
        self.producer = Producer(kafka_conf(settings, **{
            "acks": "all", "linger.ms": 5, "message.timeout.ms": settings.kafka_message_timeout_ms,
        }))
        for leftover in sorted(self.spool_dir.glob("sending-*.jsonl")):  # a crash mid-resend
            self._spool(leftover.read_bytes().splitlines())
            leftover.unlink()

    # --- sending ---------------------------------------------------------------------------------------

    def _produce(self, value: bytes, key: str, ts_ms: int, batch: Path | None = None) -> None:
        for _ in range(50):  # librdkafka's queue is full: let it drain a little (this is the writer thread)
            try:
                self.producer.produce(self.topic, value=value, key=key.encode(), timestamp=ts_ms,
                                      on_delivery=functools.partial(self._delivered, batch))
                return
            except BufferError:
                self.producer.poll(0.1)
        self._outcomes.append((batch, value))  # still full after 5 s: the broker is not keeping up

    def write(self, events: list[Event]) -> None:
        for event in events:
            self._produce(event.to_json(), event.case_id, int(event.ts.timestamp() * 1000))
        self._poll(0)

    def _delivered(self, batch: Path | None, err: Any, msg: Any) -> None:
        self._outcomes.append((batch, None if err is None else msg.value()))

    def _poll(self, timeout: float, flush: bool = False) -> None:
        """Serve delivery callbacks, spool what failed (one write), then retire finished resend batches."""
        self.producer.flush(timeout) if flush else self.producer.poll(timeout)
        outcomes, self._outcomes = self._outcomes, []
        self._spool([value for _, value in outcomes if value is not None])
        for batch, value in outcomes:
            if value is None:
                self.record("resent" if batch else "sent", 1)
            if batch is not None:
                self._pending[batch] -= 1
                if self._pending[batch] == 0:  # every line delivered or back in the spool
                    del self._pending[batch]
                    batch.unlink(missing_ok=True)

    # --- the spool -------------------------------------------------------------------------------------

    def _spool(self, values: Iterable[bytes]) -> None:
        values = [v for v in values if v]
        if not values:
            return
        with self._spool_lock, self.spool_file.open("ab") as fh:
            fh.write(b"\n".join(values) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.record("spooled", len(values))
        log.warning("sink.spooled", count=len(values), spool=str(self.spool_file))

    def spooled(self) -> int:
        with self._spool_lock:
            files = [self.spool_file, *self._pending]
            return sum(p.read_bytes().count(b"\n") for p in files if p.exists())

    def tick(self) -> None:
        self._poll(0)
        now = time.monotonic()
        if now < self._next_retry or self._pending or not self.spool_file.exists():
            return
        self._next_retry = now + self.settings.spool_retry_seconds
        try:
            self.producer.list_topics(self.topic, timeout=1.0)
        except Exception:
            return  # broker still away: keep the spool as it is
        with self._spool_lock:
            batch = self.spool_dir / f"sending-{time.time_ns()}.jsonl"
            self.spool_file.rename(batch)
        lines = [line for line in batch.read_bytes().splitlines() if line]
        if not lines:
            batch.unlink()
            return
        self._pending[batch] = len(lines)
        log.info("sink.resending", count=len(lines))
        for line in lines:
            try:
                obj = orjson.loads(line)
                key, ts_ms = str(obj["case_id"]), int(parse_ts(obj["ts"]).timestamp() * 1000)
            except Exception:
                key, ts_ms = "", int(time.time() * 1000)  # readers quarantine it; it is never lost here
            self._produce(line, key, ts_ms, batch)
        self._poll(0)

    def close(self) -> None:
        super().close()
        self._poll(min(5.0, self.settings.kafka_message_timeout_ms / 1000), flush=True)
        self.producer.purge()  # whatever is still undelivered is spooled by its delivery callback
        self._poll(1.0, flush=True)


def make_sink(settings: Settings, record: Record = _ignore) -> EventSink:
    kind = settings.sink
    if kind == "kafka":
        return KafkaSink(settings, record)
    if kind == "file":
        return FileSink(settings.events_path, record)
    return EventSink()
